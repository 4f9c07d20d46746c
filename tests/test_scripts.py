"""The research scripts in scripts/: their figures against an independent computation on the tiny
P-SOUPS fixture and the embedded backbone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
TINY = FIXTURES / "psoups_tiny.json"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"alignx_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _full_forward_logp(model, tokenizer, prompt: str, response: str) -> float:
    """Summed log-prob of ``response`` + EOS after ``prompt``: one plain forward of the whole text."""
    import torch

    head = tokenizer(text=prompt)["input_ids"]
    full = tokenizer(text=prompt + response + tokenizer.eos_token)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([full])).logits[0].float()
    logps = torch.log_softmax(logits[:-1], dim=-1)
    target = torch.tensor(full[1:])
    picked = logps[torch.arange(len(target)), target]
    return float(picked[len(head) - 1:].sum())


def test_score_training_rows_matches_plain_forwards_and_its_own_rows(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model

    from alignx.learn import train
    from alignx.learn.evaluate import clustered_stderr

    monkeypatch.chdir(ROOT)
    # fp32: the recipe's "auto" picks bf16 on a CPU with AVX512-BF16, whose rounding (~0.1 nats per
    # response) would swamp the comparison with plain forwards below
    argv = ["--config", "configs/recipes/cpu_smollm2.yaml", "--method", "ica", "--data", str(TINY),
            "--augment", "swap", "--threads", "1", "--precision", "fp32"]
    args, training_args, _ = train.parse_args(argv + ["--out", str(tmp_path / "unused")])
    model, tokenizer, source, _ = train.load_model(args, "cpu")
    torch.manual_seed(0)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a non-zero adapter, so that policy and reference differ
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)

    script = _script("score_training_rows")
    out = script.main([str(adapter), *argv, "--per_row"])

    rows, _, _ = train.build_rows(args, tokenizer, train.prompt_style(args, source), training_args.seed)
    assert [r["kind"] for r in rows] == [d["kind"] for d in out["rows"]]
    assert {"original", "swap"} <= set(out)
    for kind in ("original", "swap"):
        mine = [d for d in out["rows"] if d["kind"] == kind]
        assert out[kind]["n"] == len(mine)
        assert out[kind]["accuracy"] == pytest.approx(
            sum(d["chosen_logratio"] > d["rejected_logratio"] for d in mine) / len(mine))
        # clustered by triple: the rows' own correctness with their rows' triples
        triples = [script.triple_key(r) for r in rows if r["kind"] == kind]
        assert out[kind]["triples"] == len(set(triples))
        assert out[kind]["accuracy_stderr_clustered"] == pytest.approx(clustered_stderr(
            [d["chosen_logratio"] > d["rejected_logratio"] for d in mine], triples))
    # the first row's log-ratios, recomputed with plain forwards of the whole text
    row, shown = rows[0], out["rows"][0]
    for key in ("chosen", "rejected"):
        policy = _full_forward_logp(peft_model, tokenizer, row["prompt"], row[key])
        with peft_model.disable_adapter():
            reference = _full_forward_logp(peft_model, tokenizer, row["prompt"], row[key])
        assert shown[f"{key}_logratio"] == pytest.approx(policy - reference, abs=2e-3)
    assert abs(shown["chosen_logratio"]) > 1e-3
    # every record has its original and its swap row here
    assert out["persona_swap"]["n"] == len({r["record_index"] for r in rows})
    # a run trained with --reference ica-prompt is scored against the base model on each row's ICA prompt
    pba_argv = [a if a != "ica" else "pba" for a in argv] + ["--reference", "ica-prompt"]
    pba_rows, _, _ = train.build_rows(train.parse_args(pba_argv + ["--out", str(tmp_path / "unused")])[0], tokenizer,
                                      train.prompt_style(args, source), training_args.seed)
    row, shown = pba_rows[0], script.main([str(adapter), *pba_argv, "--per_row"])["rows"][0]
    assert row["ref_prompt"] != row["prompt"]
    for key in ("chosen", "rejected"):
        policy = _full_forward_logp(peft_model, tokenizer, row["prompt"], row[key])
        with peft_model.disable_adapter():
            reference = _full_forward_logp(peft_model, tokenizer, row["ref_prompt"], row[key])
        assert shown[f"{key}_logratio"] == pytest.approx(policy - reference, abs=2e-3)
    # --against an earlier --per_row output of the same adapter and rows: no row differs
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(out))
    paired = script.main([str(adapter), *argv, "--against", str(earlier)])["paired"]
    assert set(paired) == {"original", "swap"}
    assert all((p["accuracy_difference"], p["rows_better"], p["rows_worse"]) == (0, 0, 0) for p in paired.values())


def test_paired_difference_by_hand():
    script = _script("score_training_rows")

    def row(i, kind, triple, margin):
        return {"record_index": i, "kind": kind, "triple": triple, "chosen_logratio": margin, "rejected_logratio": 0.0}

    before = [row(0, "original", "t1", -1), row(1, "original", "t1", -1), row(2, "original", "t2", 1),
              row(3, "original", "t2", 1), row(0, "swap", "t1", 1)]
    after = [row(0, "original", "t1", 1), row(1, "original", "t1", 1), row(2, "original", "t2", 1),
             row(3, "original", "t2", -1), row(0, "swap", "t1", 1)]
    out = script.paired_difference(after, before)
    # differences +1 +1 (triple t1), 0 -1 (t2): mean 0.25; cluster sums of (d - 0.25): 1.5 and -1.5;
    # G/(G-1) * (1.5^2 + 1.5^2) / 4^2 = 2 * 4.5 / 16
    assert out["original"]["accuracy_difference"] == 0.25
    assert out["original"]["stderr_clustered"] == pytest.approx((2 * 4.5 / 16) ** 0.5)
    assert (out["original"]["rows_better"], out["original"]["rows_worse"]) == (2, 1)
    assert out["swap"] == {"n": 1, "accuracy_difference": 0.0, "stderr_clustered": None, "rows_better": 0,
                           "rows_worse": 0}
    with pytest.raises(SystemExit, match="other rows"):
        script.paired_difference(after[:-1], before)
    with pytest.raises(SystemExit, match="other rows"):
        script.paired_difference([dict(after[0], triple="t9"), *after[1:]], before)


def test_style_teacher_accuracy_policy_context_reference_is_the_ica_prompt(tmp_path):
    pytest.importorskip("torch")
    script = _script("style_teacher_accuracy")
    base = ["--data", str(TINY), "--alpha", "0", "1", "--threads", "1"]
    ica = script.main(base + ["--context", "policy", "--method", "ica"])
    assert ica["n_triples"] == 4 and (ica["context"], ica["method"]) == ("policy", "ica")
    # for the ICA policy context the teacher's "none" prompt IS the evaluation's reference prompt,
    # so the teacher figures and the against-reference figures must agree
    assert ica["likelihood"]["none"] == ica["likelihood"]["reference"]
    assert ica["against_reference"] == ica["teacher"]
    assert ica["teacher"]["0.0"]["true"] == ica["shift"]["own-none"]
    pba = script.main(base + ["--context", "policy", "--method", "pba"])
    assert pba["likelihood"]["reference"] == ica["likelihood"]["reference"]  # the same ICA reference
    for report in (ica, pba):
        for figures in (report["likelihood"], report["shift"]):
            assert all(v in (0.0, 0.25, 0.5, 0.75, 1.0) for v in figures.values())  # 4 triples
    with pytest.raises(SystemExit):
        script.main(["--data", str(FIXTURES / "alignx_sample.json")])  # no ground_truth_persona styles


def test_profile_probe_scores_unseen_tasks_and_profiles_only():
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    probe = _script("profile_probe").probe
    rng = np.random.default_rng(0)
    n = 120
    labels = rng.integers(0, 2, n)
    tasks = np.array([f"task {i % 30}" for i in range(n)])
    profiles = np.array([f"profile {i}" for i in range(n)])
    states = rng.normal(size=(n, 2, 2, 8))
    states[:, 0, :, 3] += 4.0 * (2 * labels[:, None] - 1)  # layer 0 encodes the label in one coordinate
    scores = probe(states, labels, tasks, profiles, folds=2)
    assert {k for k in scores} == {(0, "last"), (0, "mean"), (1, "last"), (1, "mean")}
    assert all(acc == 1.0 for acc, _ in scores[(0, "last")] + scores[(0, "mean")])
    assert all(acc < 0.8 for acc, _ in scores[(1, "mean")])  # noise only: near chance
    # a quarter of the 30 tasks is held out per fold: 7 tasks x 4 records each
    assert all(m == 28 for _, m in scores[(0, "last")])
    # a profile seen in training never counts as a test record
    shared = np.array(["p"] * n)
    assert probe(states, labels, tasks, shared, folds=1) == {}
    # a held-out task never trains the probe: here the label is a function of the task alone, so a
    # probe that had seen the held-out tasks' records would score them perfectly
    by_task = np.array([int(t.split()[1]) % 2 for t in tasks])
    task_states = np.zeros((n, 1, 2, 30))
    task_states[np.arange(n), 0, :, [int(t.split()[1]) for t in tasks]] = 1.0  # one-hot task identity
    linked = [f"profile {i}" for i in range(n)]
    for i in range(60):  # record i + 31 (the next task) shares record i's profile
        linked[i + 31] = linked[i]
    scores = probe(task_states, by_task, tasks, np.array(linked), folds=3)[(0, "last")]
    assert all(acc < 0.9 for acc, _ in scores)


def test_style_readability_reads_a_marked_style_and_not_noise():
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from alignx.schema import Record

    mod = _script("style_readability")
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    records = []
    for i in range(40):
        persona = "A" if i % 2 else "B"
        plain = " ".join(rng.choice(words, 6))
        styled = plain + (" haha" if persona == "A" else " ugh")  # the style is one token, by construction
        records.append(Record(prompt=f"task {i}", chosen=styled, rejected=plain, ground_truth_persona=persona))
    # a repeated triple counts once; a triple seen with both personas is dropped
    records += [records[0], Record(prompt="task 0", chosen=records[0].chosen, rejected=records[0].rejected,
                                   ground_truth_persona="A" if records[0].ground_truth_persona == "B" else "B")]
    triples, labels, dropped = mod.distinct_triples(records, range(len(records)))
    assert len(triples) == 39 and dropped == 1 and ("task 0", records[0].chosen, records[0].rejected) not in triples
    chosen, rejected = [t[1] for t in triples], [t[2] for t in triples]
    features = mod.token_features(str.split, chosen, rejected)
    assert features.shape[0] == 39 and set(np.unique(features)) <= {-1.0, 0.0, 1.0}  # the shared words cancel
    assert mod.cross_validated(features, labels, repeats=2)["accuracy"] == 1.0
    # --heldout: fitted on all the given pairs, scored once on others (here the same style marks)
    right = mod.fit_and_score(features[:30], labels[:30], features[30:], labels[30:])
    assert right.shape == (9,) and right.all()
    assert not mod.fit_and_score(features[:30], labels[:30], features[30:],
                                 ["A" if y == "B" else "B" for y in labels[30:]]).any()
    noise = mod.cross_validated(rng.normal(size=features.shape), labels, repeats=3)
    assert noise["accuracy"] < 0.75 and set(noise["by_persona"]) == {"A", "B"}
    with pytest.raises(ValueError, match="exactly two personas"):
        mod.cross_validated(features, ["A"] * 39)
    # extra training pairs count: many copies of the pairs with the labels flipped teach the reverse
    flipped = ["A" if y == "B" else "B" for y in labels]
    reverse = mod.cross_validated(features, labels, repeats=2, extra=(np.vstack([features] * 3), flipped * 3))
    assert reverse["accuracy"] < 0.5
    # --history: the personas' own items, labelled by the persona showing them; an item that is a
    # record's own triple, shown by both personas, or touching an excluded text is left out
    from alignx.schema import PairItem, Persona

    item = lambda k: PairItem(f"hp{k}", f"hc{k}", f"hr{k}")  # noqa: E731
    users = [Record(prompt="t0", chosen="c0", rejected="r0", ground_truth_persona="A",
                    persona=Persona(pairs=[item(1), item(2), item(3), PairItem("t1", "c1", "r1")])),
             Record(prompt="t1", chosen="c1", rejected="r1", ground_truth_persona="B",
                    persona=Persona(pairs=[item(3), item(4), item(5)])),
             Record(prompt="t2", chosen="c2", rejected="r2", ground_truth_persona="B",
                    persona=Persona(pairs=[item(6)]))]
    extra, extra_labels = mod.history_triples(users, [0, 1], exclude={"hr2"})
    assert extra == [("hp1", "hc1", "hr1"), ("hp4", "hc4", "hr4"), ("hp5", "hc5", "hr5")]
    assert extra_labels == ["A", "B", "B"]
    # --curve: accuracy on held-out pairs by the number of pairs trained on
    curve = mod.learning_curve(features, labels, [6, 30], test_size=9, repeats=3)
    assert [c["pairs"] for c in curve] == [6, 30] and curve[1]["accuracy"] == 1.0
    flat = mod.learning_curve(rng.normal(size=features.shape), labels, [6, 30], test_size=9, repeats=4)
    assert all(c["accuracy"] < 0.8 and c["stderr"] is not None for c in flat)
    for sizes in ([4, 30], [6, 31], []):
        with pytest.raises(ValueError, match="sizes must lie in"):
            mod.learning_curve(features, labels, sizes, test_size=9)


def test_style_readability_scores_the_training_validation_slice(tmp_path):
    """``--validation_per_persona N`` holds back the records `alignx train` holds back with the same
    seed; the readers learn from the rest and are scored on exactly those records."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from alignx.learn.split import validation_indices
    from alignx.schema import load_records

    mod = _script("style_readability")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(48):
        persona = "A" if i % 2 else "B"
        plain = " ".join(rng.choice(["one", "two", "three", "four", "five"], 5))
        styled = plain + (" hooray" if persona == "A" else " whatever")
        rows.append({"prompt": f"task {i}", "chosen": styled, "rejected": plain, "ground_truth_persona": persona})
    path = tmp_path / "styles.json"
    path.write_text(json.dumps(rows))
    out = mod.main(["--data", str(path), "--readers", "tokens", "--repeats", "1", "--folds", "3",
                    "--validation_per_persona", "6", "--seed", "7"])
    records = load_records(path)
    slice_ = validation_indices(records, list(range(48)), per_persona=6, seed=7)
    v = out["readers"]["tokens"]["validation"]
    assert out["pairs"] == 48 - len(slice_) and v["records"] == len(slice_) == 12
    assert v["accuracy"] == 1.0 and set(v["by_persona"]) == {"A", "B"}
    with pytest.raises(SystemExit):
        mod.main(["--data", str(path), "--split", "x", "--heldout", "--validation_per_persona", "6"])
