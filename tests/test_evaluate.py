"""Evaluation and the benchmark registry, on the real embedded model and tiny fixtures.

Fixtures: tests/fixtures/bench/ (made by its make_fixtures.py), laid out like the official data, so
each registered benchmark resolves its own file from that folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from alignx.learn.benchmarks import (BenchmarkSpec, get_benchmark, list_benchmarks, preprocess_records, register,
                                     resolve_profile)
from alignx.learn.evaluate import clustered_stderr, evaluate, main, pair_key, run_benchmark, swap_partners
from alignx.schema import Record, load_records
from conftest import bench_layout

HERE = Path(__file__).parent
BENCH = bench_layout()  # the fixtures in the official layout
PSOUPS = HERE.parents[1] / "shared" / "data" / "psoups" / "friendly_unfriendly.json"
TRL_KEYS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
            "logps/rejected")
FRIENDLY = "Generate a response that is friendly, witty, funny, and humorous, like a close friend."


@pytest.fixture(scope="module")
def plain_backbone():
    """The embedded model with no adapter at all (fp32, so rows are exact)."""
    from alignx.backbone import BackboneConfig, load_backbone

    return load_backbone(BackboneConfig(precision="fp32"))


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("spec", list_benchmarks(), ids=lambda s: s.name)
def test_every_benchmark_loads_and_evaluates(backbone, spec):
    path = spec.resolve_data(BENCH)  # the fixture folder mirrors the official layout
    records = spec.load(path)
    assert 2 <= len(records) <= 4
    for r in records:  # only the spec's persona parts reach the prompt
        assert bool(r.persona.ugc) <= ("UGC" in spec.persona_types)
        assert bool(r.persona.pairs) <= ("PAIR" in spec.persona_types)
        assert (r.persona.demographics is not None) <= ("DEMO" in spec.persona_types)
        assert r.profile, "every benchmark must give PBA a profile"
    out = run_benchmark(backbone, spec.name, BENCH, method="pba", limit=2)
    assert out["n"] == 2 and out["metric"] == "implicit-reward"  # random `pba` adapter is loaded
    assert 0.0 <= out["accuracy"] <= 1.0 and out["accuracy"] == out["rewards/accuracies"]
    assert all(np.isfinite(out[k]) for k in TRL_KEYS)
    assert out["config"]["benchmark"] == spec.name and out["version"] == spec.version
    assert out["config"]["data"] == str(path) and len(out["config"]["data_sha256"]) == 64
    json.dumps(out)


def test_registry_covers_the_paper():
    names = {s.name for s in list_benchmarks()}
    assert {"psoups-friendly_unfriendly", "psoups-student_phd", "psoups-concise_detail", "prism",
            "alignx-test-ugc", "alignx-test-pair", "alignx-test-demo", "alignx-test-arbitrary",
            "alignx-test-golden", "ufp4-helpfulness", "ufp4-honesty", "ufp4-instruction_following",
            "ufp4-truthfulness", "alignx-parquet"} <= names


def test_unknown_benchmark_lists_valid_names():
    with pytest.raises(KeyError) as err:
        get_benchmark("psoups")
    message = str(err.value)
    assert "unknown benchmark 'psoups'" in message
    assert all(s.name in message for s in list_benchmarks())


def test_register_duplicate_is_an_error():
    spec = get_benchmark("prism")
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(spec))


def test_spec_rejects_bad_fields():
    with pytest.raises(ValueError, match="persona_types"):
        BenchmarkSpec("x", "x", ("BLOG",), "x.json", preprocess_records)


def test_data_resolution(tmp_path):
    spec = get_benchmark("psoups-student_phd")
    assert spec.resolve_data(BENCH) == BENCH / "P-Soups" / "student_phd.json"
    assert spec.resolve_data(BENCH / "P-Soups") == BENCH / "P-Soups" / "student_phd.json"  # by file name
    with pytest.raises(FileNotFoundError, match="student_phd.json"):
        spec.resolve_data(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        spec.resolve_data(tmp_path / "missing.json")


def test_golden_profiles():
    ufp4 = get_benchmark("ufp4-honesty").load(BENCH)
    assert resolve_profile(ufp4[0], "golden") == "Concerned about honesty"
    golden = get_benchmark("alignx-test-golden").load(BENCH)
    given = get_benchmark("alignx-test-arbitrary").load(BENCH)
    assert golden[0].profile != given[0].profile
    assert golden[0].profile == resolve_profile(given[0], "golden")
    parquet = get_benchmark("alignx-parquet").load(BENCH)
    assert parquet[0].profile == parquet[0].persona.profile()


def test_split_file_selects_held_out_records():
    """The real `alignx.learn.split` loader on a split file made for the fixture (1 per persona)."""
    spec = get_benchmark("psoups-friendly_unfriendly")
    held_out = spec.load(BENCH, split=str(BENCH / "splits" / "psoups_fixture.json"))
    everything = spec.load(BENCH)
    assert [(r.prompt, r.chosen) for r in held_out] == [(e.prompt, e.chosen) for e in everything[0:3:2]]
    assert {r.ground_truth_persona for r in held_out} == {r.ground_truth_persona for r in everything}
    with pytest.raises(ValueError, match="hash"):  # a split is bound to its file's content
        get_benchmark("psoups-student_phd").load(BENCH, split=str(BENCH / "splits" / "psoups_fixture.json"))


@pytest.mark.skipif(not PSOUPS.exists(), reason="shared P-SOUPS data not available")
def test_shipped_psoups_split_is_balanced():
    held_out = get_benchmark("psoups-friendly_unfriendly").load(PSOUPS, split="psoups_friendly_unfriendly")
    assert len(held_out) >= 120
    counts = {}
    for r in held_out:
        counts[r.ground_truth_persona] = counts.get(r.ground_truth_persona, 0) + 1
    assert len(counts) == 2 and min(counts.values()) >= 60


def test_split_selects_held_out_records():
    calls = []

    def fake_load_split(name, records):
        calls.append(name)
        return [r for r in records if r.ground_truth_persona == FRIENDLY]

    spec = get_benchmark("psoups-friendly_unfriendly")
    held_out = spec.load(BENCH, split="psoups_friendly_unfriendly", split_loader=fake_load_split)
    assert calls == ["psoups_friendly_unfriendly"] and len(held_out) == 2
    with pytest.raises(ValueError, match="no held-out splits"):
        get_benchmark("prism").load(BENCH, split="anything")


# ----------------------------------------------------------------------------- accuracy


def _record(chosen: str, rejected: str, persona: str = FRIENDLY) -> Record:
    return Record(prompt="Say hello to me.", chosen=chosen, rejected=rejected, ground_truth_persona=persona,
                  profile="Young, Likes humor")


GIBBERISH = "qzx vvk jjq plorf zzt wq xkcd brr fnord qqq zyx vvv kkj " * 3


def test_hand_checked_likelihood_accuracy(backbone_fp32):
    """A tie (chosen == rejected) is wrong; a fluent reply beats gibberish, so the order is forced."""
    records = [
        _record("Hello! How are you today?", "Hello! How are you today?"),  # tie -> wrong
        _record("Hello! How are you today?", GIBBERISH),  # fluent chosen -> right
        _record(GIBBERISH, "Hello! How are you today?"),  # gibberish chosen -> wrong
    ]
    out = evaluate(backbone_fp32, records, method="universal", per_example=True)
    assert out["metric"] == "likelihood"
    assert [e["correct"] for e in out["examples"]] == [False, True, False]
    assert out["accuracy"] == pytest.approx(1 / 3) and out["correct"] == 1 and out["ties"] == 1
    assert out["timing"]["rows_scored"] == 2  # 6 rows, only 2 distinct (prompt, response) pairs


def test_clustered_stderr_by_hand():
    # singletons: the sample variance over n; [1, 0, 1, 1]: sum of squares 0.75, 4/3 * 0.75 / 16
    assert clustered_stderr([1, 0, 1, 1], "abcd") == pytest.approx(0.25)
    assert clustered_stderr([1, 1, 0, 0], "aabb") == pytest.approx(0.5)  # two clusters, each all one way
    assert clustered_stderr([1, 0, 1, 0], "aabb") == 0.0  # each cluster sits at the mean
    assert clustered_stderr([1, 0], "aa") is None  # one cluster: no estimate
    with pytest.raises(ValueError, match="3 values but 2 cluster keys"):
        clustered_stderr([1, 0, 1], "ab")


def test_accuracy_stderr_is_clustered_by_pair(backbone_fp32):
    """Two records about one pair count as one cluster; the order of each pair is forced (see above)."""
    right, wrong = _record("Hello! How are you today?", GIBBERISH), _record(GIBBERISH, "Hello! How are you today?")
    records = [right, dataclasses.replace(right, profile="Older"), wrong,
               _record("Hello! How are you today?", "Hello! How are you today?")]  # the last: a tie, wrong
    out = evaluate(backbone_fp32, records, method="universal", per_example=True)
    assert [e["correct"] for e in out["examples"]] == [True, True, False, False]
    assert pair_key(records[0]) == pair_key(records[1]) and out["n_pairs"] == 3
    # residual sums by pair: +1, -0.5, -0.5 -> sqrt(3 / 2 * 1.5) / 4; independent records: sqrt(.25 / 4)
    assert out["accuracy_stderr_clustered"] == pytest.approx(0.375)
    assert out["accuracy_stderr"] == pytest.approx(0.25)


def test_implicit_reward_matches_raw_scores(backbone_fp32):
    """Recompute every decision from raw `Backbone.score` values, one row at a time."""
    bb, beta = backbone_fp32, 0.1
    records = get_benchmark("psoups-friendly_unfriendly").load(BENCH)[1:3]  # one of each persona
    out = evaluate(bb, records, method="pba", beta=beta, per_example=True)
    assert out["metric"] == "implicit-reward" and out["config"]["policy_adapter"] == "pba"
    for r, ex in zip(records, out["examples"]):
        policy = bb.build_prompt("pba", r.prompt, profile=r.profile)
        ref = bb.build_prompt("ica", r.prompt, persona=r.persona)
        pc, pr = bb.score([policy, policy], [r.chosen, r.rejected], ["pba", "pba"], batch_size=1)
        rc, rr = bb.score([ref, ref], [r.chosen, r.rejected], [None, None], batch_size=1)
        reward_c, reward_r = beta * (pc - rc), beta * (pr - rr)
        assert ex["rewards/chosen"] == pytest.approx(reward_c, abs=1e-4)
        assert ex["rewards/rejected"] == pytest.approx(reward_r, abs=1e-4)
        if abs(reward_c - reward_r) > 1e-3:
            assert ex["correct"] == (reward_c > reward_r)
    expected = np.mean([e["rewards/chosen"] > e["rewards/rejected"] for e in out["examples"]])
    assert out["accuracy"] == expected


def test_no_adapter_against_itself_is_all_ties(plain_backbone):
    """The implicit reward of the untuned model vs itself (ICA policy = ICA reference) is 0 for
    every row, so the strict rule gives accuracy 0."""
    records = get_benchmark("psoups-friendly_unfriendly").load(BENCH)
    out = evaluate(plain_backbone, records, method="ica", metric="implicit-reward", per_example=True)
    assert out["config"]["policy_adapter"] is None
    assert all(e["rewards/chosen"] == 0.0 and e["rewards/rejected"] == 0.0 for e in out["examples"])
    assert out["accuracy"] == 0.0 and out["ties"] == out["n"] == 4
    assert out["rewards/margins"] == 0.0


def test_default_metric_follows_the_adapter(backbone, plain_backbone):
    records = get_benchmark("prism").load(BENCH)[:1]
    assert evaluate(backbone, records, method="ica")["metric"] == "implicit-reward"
    assert evaluate(backbone, records, method="universal")["metric"] == "likelihood"
    assert evaluate(plain_backbone, records, method="pba")["metric"] == "likelihood"


def test_pba_without_profile_is_a_clear_error(plain_backbone):
    record = dataclasses.replace(_record("a", "b"), profile=None)
    with pytest.raises(ValueError, match="record 0 has no PBA profile"):
        evaluate(plain_backbone, [record], method="pba")


def test_output_keys_and_json(backbone):
    records = get_benchmark("ufp4-truthfulness").load(BENCH)
    out = evaluate(backbone, records, method="ica", limit=2, per_example=True)
    for key in ("accuracy", "n", "metric", "config", "version", "git_commit", "timing", *TRL_KEYS,
                "ref_logps/chosen", "ref_logps/rejected"):
        assert key in out
    cfg = out["config"]
    assert cfg["beta"] == 0.1 and cfg["seed"] == 0 and cfg["limit"] == 2 and cfg["swap_persona"] is False
    assert cfg["adapters"]["ica"] and cfg["backbone"]["precision"] == "nf4"
    assert len(out["examples"]) == out["n"] == 2
    assert out["rewards/margins"] == pytest.approx(out["rewards/chosen"] - out["rewards/rejected"])
    assert json.loads(json.dumps(out)) == out


# ----------------------------------------------------------------------------- persona swap


def test_swap_is_deterministic_and_always_crosses_personas():
    records = load_records(PSOUPS) if PSOUPS.exists() else get_benchmark("psoups-student_phd").load(BENCH)
    a, b = swap_partners(records, seed=0), swap_partners(records, seed=0)
    assert a == b
    assert a != swap_partners(records, seed=1)
    assert all(records[i].ground_truth_persona != records[j].ground_truth_persona for i, j in enumerate(a))
    with pytest.raises(ValueError, match="two different personas"):
        swap_partners([r for r in records if r.ground_truth_persona == records[0].ground_truth_persona])


def test_swap_changes_the_policy_prompt_only(backbone):
    records = get_benchmark("psoups-friendly_unfriendly").load(BENCH)
    out = evaluate(backbone, records, method="ica", swap_persona=True, limit=1, per_example=True)
    donor = records[out["examples"][0]["swapped_from"]]
    assert donor.ground_truth_persona != records[0].ground_truth_persona
    policy, ref = out["example_prompts"]["policy"], out["example_prompts"]["reference"]
    assert policy == backbone.build_prompt("ica", records[0].prompt, persona=donor.persona)
    assert ref == backbone.build_prompt("ica", records[0].prompt, persona=records[0].persona)
    pba = evaluate(backbone, records, method="pba", swap_persona=True, limit=1)
    assert pba["example_prompts"]["policy"] == backbone.build_prompt("pba", records[0].prompt, profile=donor.profile)


# ----------------------------------------------------------------------------- command line


def test_cli_writes_results(tmp_path, random_adapters, capsys):
    out_file = tmp_path / "res.json"
    code = main(["--benchmark", "psoups-friendly_unfriendly", "--data", str(BENCH), "--method", "pba",
                 "--adapter", random_adapters["pba"], "--limit", "2", "--precision", "fp32", "--per-example",
                 "--out", str(out_file)])
    assert code == 0
    result = json.loads(out_file.read_text())
    assert result["n"] == 2 and result["metric"] == "implicit-reward"
    assert result["config"]["adapters"] == {"pba": random_adapters["pba"]}  # bare DIR -> named after --method
    assert result["config"]["argv"][:3] == ["alignx", "eval", "--benchmark"]
    assert "accuracy" in capsys.readouterr().err


def test_cli_unknown_benchmark_is_a_usage_error(capsys):
    code = main(["--benchmark", "nope", "--data", str(BENCH), "--method", "ica"])
    assert code == 2
    assert "valid names: psoups-friendly_unfriendly" in capsys.readouterr().err
