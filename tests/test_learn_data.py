"""Training-data formatting (alignx.learn.data) and held-out splits (alignx.learn.split). No model."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from alignx.learn import data, split
from alignx.preferences import get_profile
from alignx.schema import PairItem, Persona, Record, UGCItem, load_records

from conftest import FIXTURES, PSOUPS


def _vec(value: float, dim: int) -> tuple[float, ...]:
    v = [0.5] * 90
    v[dim] = value
    return tuple(v)


def _record(k_ugc: int, k_pair: int, tag: str, demo: str | None = None) -> Record:
    """Items carry a direction with a 1 in a dimension unique to the item, and texts naming it."""
    ugc = [UGCItem(f"{tag}-u{i}", f"c{i}", _vec(1.0, i)) for i in range(k_ugc)]
    pairs = [PairItem(f"{tag}-p{i}", f"y{i}", f"n{i}", _vec(1.0, 10 + i)) for i in range(k_pair)]
    return Record(prompt=f"{tag}-prompt", chosen="c", rejected="r",
                  persona=Persona(ugc=ugc, pairs=pairs, demographics=demo))


class _FixedRng(random.Random):
    """randint returns scripted values (to force the both-zero rule); everything else is seeded."""

    def __init__(self, ints):
        super().__init__(0)
        self.ints = list(ints)

    def randint(self, a, b):
        return self.ints.pop(0)


# ----------------------------------------------------------------------------- counts


def test_sample_counts_in_range_and_capped_by_list_length():
    rng = random.Random(1)
    seen = Counter()
    for _ in range(500):
        k_ugc, k_pair = data.sample_counts(6, 2, rng)
        assert 0 <= k_ugc <= 4 and 0 <= k_pair <= 2
        assert (k_ugc, k_pair) != (0, 0)
        seen[k_ugc] += 1
    assert set(seen) == {0, 1, 2, 3, 4}  # every count 0-4 occurs


def test_both_zero_rule_uses_min_4_len_of_each():
    assert data.sample_counts(6, 2, _FixedRng([0, 0])) == (4, 2)
    assert data.sample_counts(0, 3, _FixedRng([0, 0])) == (0, 3)
    assert data.sample_counts(6, 2, _FixedRng([0, 3])) == (0, 2)


def test_sample_history_both_zero_rule_end_to_end():
    rec = _record(5, 3, "a")
    draw = data.sample_history(rec.persona, _FixedRng([0, 0]), demo_prob=0, demo_only_prob=0)
    assert len(draw.ugc) == 4 and len(draw.pairs) == 3


# ----------------------------------------------------------------------------- same items, no leakage


def test_ica_text_and_pba_profile_come_from_the_same_draw():
    rec = _record(4, 4, "a")
    for seed in range(20):
        rng = random.Random(seed)
        draw = data.sample_history(rec.persona, random.Random(seed), demo_prob=0, demo_only_prob=0)
        ica = data.format_row(rec, "ica", random.Random(seed), index=0, style="official-train",
                              demo_prob=0, demo_only_prob=0)
        pba = data.format_row(rec, "pba", rng, index=0, style="official-train", demo_prob=0, demo_only_prob=0)
        shown = [it for it in rec.persona.ugc + rec.persona.pairs if f"\n{it.prompt}\n" in ica["prompt"]]
        assert sorted(it.prompt for it in shown) == sorted(it.prompt for it in [*draw.ugc, *draw.pairs])
        assert (ica["n_ugc"], ica["n_pair"]) == (pba["n_ugc"], pba["n_pair"]) == (len(draw.ugc), len(draw.pairs))
        expected = get_profile([it.direction for it in shown])
        assert f"\n{expected}\n" in pba["prompt"]


def test_no_leakage_of_previous_record_items():
    # Official bug §13.2: a count of 0 reused the previous record's sampled items for the profile.
    records = [_record(4, 4, "first"), _record(0, 2, "second"), _record(3, 0, "third")]
    for seed in range(30):
        for method in ("ica", "pba"):
            rows = data.format_records(records, method, seed=seed, style="official-train", demo_only_prob=0)
            for row, rec in zip(rows, records):
                other_tags = {r.prompt.split("-")[0] for r in records} - {rec.prompt.split("-")[0]}
                assert not any(f"{t}-" in row["prompt"].split("***Task***")[1].replace(rec.prompt, "")
                               for t in other_tags)
        pba = data.format_records(records, "pba", seed=seed, style="official-train", demo_only_prob=0)
        # record 2 has only UGC items (dims 0-2): its profile can never name a PAIR dim (10+)
        assert "High Extraversion" not in pba[2]["prompt"] or records[2].persona.ugc[0].direction[3] == 1


def test_pba_falls_back_to_record_profile_without_directions():
    recs = load_records(FIXTURES / "psoups_sample.json")
    rows = data.format_records(recs, "pba", seed=0, style="official-train")
    for row, rec in zip(rows, recs):
        assert f"\n{rec.profile}\n" in row["prompt"]
        assert 1 <= row["n_pair"] <= 4 and row["n_ugc"] == 0


def test_seeded_reproducibility_and_seed_sensitivity():
    recs = load_records(FIXTURES / "alignx_sample.json") * 5
    a = data.build_training_rows(recs, "ica", seed=7, style="official-train")
    b = data.build_training_rows(recs, "ica", seed=7, style="official-train")
    c = data.build_training_rows(recs, "ica", seed=8, style="official-train")
    assert a == b
    assert a != c


def test_demographics_mixing_rule():
    rec = _record(4, 4, "a", demo="A young teacher who likes jokes.")
    rng = random.Random(0)
    draws = [data.sample_history(rec.persona, rng, demo_prob=0.5, demo_only_prob=0.1) for _ in range(2000)]
    only = [d for d in draws if d.demo_only]
    assert all(not d.ugc and not d.pairs and d.demographics for d in only)
    assert 0.07 < len(only) / 2000 < 0.13
    mixed = [d for d in draws if not d.demo_only]
    assert 0.45 < sum(d.demographics is not None for d in mixed) / len(mixed) < 0.55
    # a record without demographics never gets any
    assert all(data.sample_history(_record(2, 2, "b").persona, rng).demographics is None for _ in range(50))
    # a DEMO-only PBA row falls back to the profile of all the persona's items
    row = data.format_row(rec, "pba", random.Random(0), index=0, style="official-train", demo_only_prob=1.0)
    assert f"\n{rec.persona.profile()}\n" in row["prompt"]


# ----------------------------------------------------------------------------- swaps and augmentation


def test_swap_helpers_use_the_opposite_persona():
    recs = load_records(FIXTURES / "psoups_tiny.json")
    swapped = data.swapped_records(recs, seed=3)
    for orig, sw in zip(recs, swapped):
        assert sw.ground_truth_persona != orig.ground_truth_persona
        assert (sw.prompt, sw.chosen, sw.rejected) == (orig.prompt, orig.chosen, orig.rejected)
    assert data.swapped_records(recs, seed=3) == swapped
    rows = data.persona_swap_rows(recs, "pba", seed=0, style="official-train")
    for row, rec in zip(rows, recs):
        assert (row["chosen"], row["rejected"]) == (rec.rejected, rec.chosen)
        assert rec.profile not in row["prompt"]
    contrast = data.contrast_rows(recs, "ica", seed=0, style="official-train")
    assert len(contrast) == 4 and all(r["kind"] == "contrast" for r in contrast)
    assert {(r["chosen"], r["rejected"]) for r in contrast} >= {("Banana, nature's smile!", "Banana. Obviously.")}


# ----------------------------------------------------------------------------- split


def _fake_psoups(n_per: int = 30) -> list[Record]:
    return [Record(prompt=f"p{i}", chosen=f"{g}{i}", rejected="r", ground_truth_persona=g)
            for g in ("A", "B") for i in range(n_per)]


def test_make_split_is_balanced_seeded_and_hash_checked(tmp_path):
    recs = _fake_psoups()
    s = split.make_split(recs, per_persona=10, seed=1, name="t")
    assert Counter(x["persona"] for x in s["heldout"]) == {"A": 10, "B": 10}
    assert s == split.make_split(recs, per_persona=10, seed=1, name="t")
    path = tmp_path / "t.json"
    split.save_split(s, path)
    train, held = split.load_split(str(path), recs)
    assert len(train) == 40 and len(held) == 20 and not set(map(id, train)) & set(map(id, held))
    reordered = recs[::-1]
    with pytest.raises(split.SplitMismatchError, match="reordered or edited"):
        split.load_split(str(path), reordered)
    with pytest.raises(split.SplitMismatchError, match="made for 60"):
        split.load_split(str(path), recs[:-1])


def test_duplicates_stay_on_one_side():
    recs = _fake_psoups() + [Record(prompt="p0", chosen="A0", rejected="r", ground_truth_persona="A")] * 3 + [
        Record(prompt="p0", chosen="A0", rejected="r", ground_truth_persona="B")]  # a copy under the other persona
    s = split.make_split(recs, per_persona=10, seed=0)
    held = {x["index"] for x in s["heldout"]}
    hashes_held = {x["hash"] for x in s["heldout"]}
    assert all(i in held for i, r in enumerate(recs) if split.record_hash(r) in hashes_held)


def test_shipped_psoups_split():
    s = json.loads(split.split_path("psoups_friendly_unfriendly").read_text())
    assert len(s["heldout"]) >= 120
    counts = Counter(x["persona"] for x in s["heldout"])
    assert len(counts) == 2 and min(counts.values()) >= 60
    if PSOUPS.is_file():
        recs = load_records(PSOUPS)
        train, held = split.load_split("psoups_friendly_unfriendly", recs)
        assert len(train) + len(held) == 600 and len(held) >= 120
        assert not {split.record_hash(r) for r in train} & {split.record_hash(r) for r in held}


def test_validation_slice_keeps_duplicates_together_and_is_balanced():
    recs = _fake_psoups() + [Record(prompt="p1", chosen="A1", rejected="r", ground_truth_persona="A")] * 4
    train = list(range(len(recs)))
    for seed in range(6):
        val = split.validation_indices(recs, train, per_persona=3, seed=seed)
        assert val == split.validation_indices(recs, train, per_persona=3, seed=seed)
        val_hashes = {split.record_hash(recs[i]) for i in val}
        rest = [i for i in train if i not in set(val)]
        assert not val_hashes & {split.record_hash(recs[i]) for i in rest}
        counts = Counter(recs[i].ground_truth_persona for i in val)
        assert counts["B"] == 3 and 3 <= counts["A"] <= 7  # a drawn group brings all its copies


def test_augmentation_fractions():
    recs = load_records(FIXTURES / "psoups_tiny.json")
    full = data.build_training_rows(recs, "pba", seed=0, style="official-train", augment="swap")
    half = data.build_training_rows(recs, "pba", seed=0, style="official-train", augment=["swap:0.5"])
    kinds = Counter(r["kind"] for r in half)
    assert kinds["original"] == Counter(r["kind"] for r in full)["original"]
    assert kinds["swap"] == round(0.5 * Counter(r["kind"] for r in full)["swap"]) > 0
    assert {r["prompt"] for r in half if r["kind"] == "swap"} <= {r["prompt"] for r in full if r["kind"] == "swap"}
    assert data.parse_augment("swap:0.25, contrast") == [("swap", 0.25), ("contrast", 1.0)]
    for bad, msg in [("swap:0", r"in \(0, 1\]"), ("swap:1.5", r"in \(0, 1\]"), ("swap:x", "must be a number"),
                     ("swapp", "unknown augmentation 'swapp'; valid: swap, contrast")]:
        with pytest.raises(ValueError, match=msg):
            data.parse_augment(bad)


def _history_users() -> list[Record]:
    """Two users of opposite style; each persona holds three items, one of them twice."""
    def user(g: str, k: int) -> Record:
        items = [PairItem(f"{g}-task{j}", f"{g}-styled{j}", f"plain{j}") for j in range(3)]
        return Record(prompt=f"{g}-own{k}", chosen=f"{g}-own-styled{k}", rejected=f"own-plain{k}",
                      persona=Persona(pairs=[*items, items[0]]), ground_truth_persona=g, profile=f"profile {g}")
    return [user(g, k) for k in range(4) for g in ("A", "B")]


def test_history_targets_learn_a_personas_own_items_and_never_touch_excluded_texts():
    recs = _history_users()
    rec = recs[0]
    seen = set()
    for index in range(30):
        t = data.history_target(rec, index, seed=0)
        assert t == data.history_target(rec, index, seed=0)  # seeded by (seed, index)
        item = (t.prompt, t.chosen, t.rejected)
        seen.add(item)
        assert item in {(p.prompt, p.chosen, p.rejected) for p in rec.persona.pairs}
        assert item not in {(p.prompt, p.chosen, p.rejected) for p in t.persona.pairs}  # every copy leaves
        assert len(t.persona.pairs) == 4 - (2 if t.prompt == "A-task0" else 1)
        assert (t.ground_truth_persona, t.profile) == ("A", "profile A")
    assert seen == {(f"A-task{j}", f"A-styled{j}", f"plain{j}") for j in range(3)}  # each item can be drawn
    # an excluded text (a prompt or either response) keeps its item out
    for index in range(30):
        t = data.history_target(rec, index, seed=0, exclude={"A-task1", "plain2"})
        assert (t.prompt, t.chosen) == ("A-task0", "A-styled0")
    assert data.history_target(rec, 0, exclude={"plain0", "plain1", "plain2"}) is None
    lone = Record(prompt="x", chosen="y", rejected="z", persona=Persona(pairs=[PairItem("p", "c", "r")] * 2))
    assert data.history_target(lone, 0) is None  # nothing of the persona would be left to show

    rows = data.build_training_rows(recs, "ica", seed=0, style="official-train", shuffle=False,
                                    augment="history,history_swap", history_exclude={"B-task2"})
    kinds = Counter(r["kind"] for r in rows)
    assert kinds == {"original": 8, "history": 8, "history_swap": 8}
    by_kind = {k: {r["record_index"]: r for r in rows if r["kind"] == k} for k in ("history", "history_swap")}
    for i, rec in enumerate(recs):
        own, swap = by_kind["history"][i], by_kind["history_swap"][i]
        target = data.history_target(rec, i, seed=0, exclude={"B-task2"})
        assert (own["task"], own["chosen"], own["rejected"]) == (target.prompt, target.chosen, target.rejected)
        assert (swap["task"], swap["chosen"], swap["rejected"]) == (target.prompt, target.rejected, target.chosen)
        assert own["style"] == rec.ground_truth_persona != swap["style"]
        assert own["task"] != "B-task2"
        assert target.chosen not in own["prompt"]  # the target is not shown as history
    keys = data.pair_keys(rows)
    assert all(keys.count(k) == 2 for k, r in zip(keys, rows) if r["kind"] != "original")
    assert {k for k, r in zip(keys, rows) if r["kind"] == "history"} == {f"history:{i}" for i in range(8)}


def test_history_targets_leave_out_what_held_out_and_validation_records_ask(tmp_path, monkeypatch):
    """`alignx.learn.train.build_rows` gives the history augmentations every text of the records it
    does not train on, and the validation rows never include history targets."""
    from alignx.learn import train

    recs = _history_users()
    # held out: a user whose own task is one of the training users' history items
    recs += [Record(prompt="A-task1", chosen="A-styled1", rejected="other plain", ground_truth_persona="A",
                    persona=Persona(pairs=[PairItem("q", "s", "t")] * 2), profile="p")]
    path = tmp_path / "users.json"
    path.write_text(json.dumps([r.to_dict() for r in recs]))
    held = {"name": "t", "n_records": len(recs),
            "heldout": [{"index": len(recs) - 1, "hash": split.record_hash(recs[-1]), "persona": "A"}]}
    (tmp_path / "t.json").write_text(json.dumps(held))
    monkeypatch.chdir(train.Path(__file__).resolve().parents[1])
    a, d, _ = train.parse_args(["--config", "configs/recipes/cpu_smollm2.yaml", "--method", "ica", "--data", str(path),
                                "--split", str(tmp_path / "t.json"),
                                "--out", str(tmp_path / "o"), "--augment", "history,history_swap,swap",
                                "--validation_per_persona", "1", "--prompt_style", "official-train"])
    rows, val_rows, info = train.build_rows(a, None, "official-train", d.seed)
    assert (info["n_heldout_records_excluded"], info["n_validation_records"]) == (1, 2)
    assert {r["kind"] for r in val_rows} == {"original", "swap"}
    outside = [recs[-1], *(recs[i] for i in {r["record_index"] for r in val_rows})]
    texts = {t for r in outside for t in (r.prompt, r.chosen, r.rejected)}
    history = [r for r in rows if r["kind"].startswith("history")]
    assert len(history) == 2 * (len(recs) - 3)
    assert not texts & {t for r in history for t in (r["task"], r["chosen"], r["rejected"])}
    assert "A-task1" not in {r["task"] for r in history}


def test_ica_prompt_reference_rows_carry_the_evaluations_reference_prompt():
    """``reference="ica-prompt"``: every row keeps the ICA prompt with the WHOLE persona of the row's
    user (what `alignx.learn.evaluate` gives the reference): the donor's for a swap row."""
    from alignx.prompts import build_prompt

    recs = load_records(FIXTURES / "psoups_tiny.json")
    rows = data.build_training_rows(recs, "pba", seed=0, style="official-eval", augment="swap,contrast",
                                    reference="ica-prompt", shuffle=False)
    assert {r["kind"] for r in rows} == {"original", "swap", "contrast"}
    for row in rows:
        rec = recs[row["record_index"]]
        own = build_prompt("ica", rec.prompt, persona=rec.persona, style="official-eval")
        assert row["ref_prompt"].startswith(own.split("***Historical")[0])  # same task
        assert "***User Preferences***" in row["prompt"] and "***User Preferences***" not in row["ref_prompt"]
        if row["kind"] == "swap":  # the whole persona of a record of the other user
            donors = [build_prompt("ica", rec.prompt, persona=d.persona, style="official-eval")
                      for d in recs if d.ground_truth_persona != rec.ground_truth_persona]
            assert row["ref_prompt"] != own and row["ref_prompt"] in donors
        else:
            assert row["ref_prompt"] == own
    plain = data.build_training_rows(recs, "pba", seed=0, style="official-eval", shuffle=False)
    assert "ref_prompt" not in plain[0] and [r["prompt"] for r in plain] == [r["prompt"] for r in rows[:len(plain)]]
    with pytest.raises(ValueError, match="unknown reference 'ica'; choose one of method-prompt, ica-prompt"):
        data.build_training_rows(recs, "pba", seed=0, style="official-eval", reference="ica")


def test_profile_dropout_keeps_a_random_ordered_subset_of_the_labels():
    """``profile_keep < 1``: every PBA row shows a non-empty subset of its profile's labels, in the
    profile's order, drawn from the row's seeded rng; ``profile_keep = 1`` changes nothing at all."""
    from alignx.preferences import split_profile

    recs = load_records(FIXTURES / "psoups_tiny.json")
    whole = data.build_training_rows(recs, "pba", seed=0, style="official-eval", augment="swap", shuffle=False)
    same = data.build_training_rows(recs, "pba", seed=0, style="official-eval", augment="swap", shuffle=False,
                                    profile_keep=1.0)
    assert same == whole  # no rng draw when the dropout is off
    thin = data.build_training_rows(recs, "pba", seed=0, style="official-eval", augment="swap", shuffle=False,
                                    profile_keep=0.3)
    assert [r["kind"] for r in thin] == [r["kind"] for r in whole]
    assert thin == data.build_training_rows(recs, "pba", seed=0, style="official-eval", augment="swap",
                                            shuffle=False, profile_keep=0.3)  # seeded

    def labels(row):
        text = row["prompt"].split("***User Preferences***")[1].strip().split("\n")[0]
        return [label for label, _ in split_profile(text)]

    fewer = 0
    for row in thin:  # the donor of a swap row may differ from `whole`'s: the dropout draws from the same rng
        rec = recs[row["record_index"]]
        owners = [rec] if row["kind"] == "original" else [
            d for d in recs if d.ground_truth_persona != rec.ground_truth_persona]
        kept = labels(row)
        fulls = [[label for label, _ in split_profile(o.profile)] for o in owners]
        assert kept and any(kept == [label for label in full if label in kept] for full in fulls)  # ordered subset
        fewer += all(len(kept) < len(full) for full in fulls)
    assert fewer >= len(thin) // 4  # with a keep rate in [0.3, 1], rows lose labels

    rng = random.Random(1)
    profile = "Older, Likes humor, High Openness"
    draws = {data.thin_profile(profile, rng, 0.01) for _ in range(200)}
    assert all(d for d in draws) and len(draws) > 3  # never empty, and varied
    assert data.thin_profile(profile, rng, 1.0) == profile
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"profile_keep must be in \(0, 1\]"):
            data.build_training_rows(recs, "pba", seed=0, style="official-eval", profile_keep=bad)


def test_paired_order_keeps_each_original_and_its_swap_in_one_batch():
    recs = load_records(FIXTURES / "psoups_tiny.json")
    rows = data.build_training_rows(recs, "pba", seed=0, style="official-eval", augment="swap,contrast")
    keys = data.pair_keys(rows)
    assert {k for k, r in zip(keys, rows) if r["kind"] == "contrast"} == {
        f"row:{i}" for i, r in enumerate(rows) if r["kind"] == "contrast"}
    pairs = {k for k in keys if keys.count(k) == 2}
    assert len(pairs) == len(recs)  # every record: its original row and its swap row
    for key in pairs:
        a, b = (r for k, r in zip(keys, rows) if k == key)
        assert {a["kind"], b["kind"]} == {"original", "swap"} and (a["chosen"], a["rejected"]) == (b["rejected"], b["chosen"])
    orders = [data.paired_order(keys, 4, random.Random(seed)) for seed in range(5)]
    for order in orders:
        assert sorted(order) == list(range(len(rows)))
        for start in range(0, len(order), 4):
            batch = [keys[i] for i in order[start : start + 4]]
            assert all(batch.count(k) == 2 for k in batch if k in pairs)  # no pair split across batches
    assert len({tuple(o) for o in orders}) > 1  # shuffled
    odd = ["a", "a", "b", "c", "c", "d", "e"]  # three loose rows: paired off, the single one last
    for seed in range(20):
        order = data.paired_order(odd, 2, random.Random(seed))
        assert sorted(order) == list(range(7))
        assert all(odd[order[i]] == odd[order[i + 1]] for i in range(0, 6, 2) if odd[order[i]] in "ac")
    with pytest.raises(ValueError, match="paired batches need an even batch size, got 3"):
        data.paired_order(keys, 3, random.Random(0))
