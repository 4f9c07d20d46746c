"""Controllability studies (alignx.explore.control, alignx.explore.report).

- Effects known by construction: a scorer defined in this file prefers a joke exactly when the
  prompt says "Likes humor" (and the opposite for "Dislikes humor"), so every rate has a known
  value: the sweep flips every pair, the persona swap moves and flips every pair, turning off the
  differing labels moves every pair without flipping it, and of the one-label edits only the humor
  label moves the margin.
- The real embedded model (fp32, random LoRA adapters): the swap study's margins are evaluate's,
  and the CLI runs a tiny sweep (with its report, then rerun from it) and a tiny swap study.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from alignx.explore import control, report
from alignx.explore.control import (ControlError, differing_labels, edit_persona, flip_stats, parse_dimensions,
                                    parse_pairs, parse_values, sweep, sweep_settings, swap_study, turn_off)
from alignx.preferences import N_DIMS
from alignx.schema import PairItem, Record, load_persona

FIXTURES = Path(__file__).parent / "fixtures"
PERSONA = FIXTURES / "persona_example.json"
TINY = FIXTURES / "psoups_tiny.json"  # 2 friendly + 2 unfriendly records, profiles with humor labels
HUMOR = 73
FRIENDLY = "Generate a response that is friendly, witty, funny, and humorous, like a close friend."
UNFRIENDLY = "Generate a response in an unfriendly manner."


# ----------------------------------------------------------------------------- parsing and edits


def test_parse_dimensions_accepts_indices_labels_names_and_app_choices():
    assert parse_dimensions("73, 16") == [73, 16]
    assert parse_dimensions("Likes humor") == [73]
    assert parse_dimensions("Dislikes humor") == [73]
    assert parse_dimensions("Strong need for Order (neatness, organization, avoiding chaos)") == [23]
    assert parse_dimensions("Likes humor, Concise communication style") == [73, 16]
    assert parse_dimensions(["73 · Likes humor / Dislikes humor", 73, "16"]) == [73, 16]
    for bad, message in [("", "at least one"), ("90", "0..89"), ("Likes humour", "unknown dimension"), ([True], "not a")]:
        with pytest.raises(ControlError, match=message):
            parse_dimensions(bad)


def test_parse_values_pairs_and_settings_errors_name_the_input():
    assert parse_values("0, 0.5, 1") == [0.0, 0.5, 1.0]
    with pytest.raises(ControlError, match="Values: 'x' is not a number"):
        parse_values("0, x")
    with pytest.raises(ControlError, match=r"Values: .*\[0, 1\]"):
        parse_values([1.5])
    with pytest.raises(ControlError, match="Pairs: item 0 needs a non-empty 'chosen'"):
        parse_pairs('[{"prompt": "p", "rejected": "r"}]')
    with pytest.raises(ControlError, match="Pairs are not valid JSON"):
        parse_pairs("[{")
    with pytest.raises(ControlError, match="Prompts"):
        sweep_settings(dimensions="73", prompts="  \n ")
    with pytest.raises(ControlError, match="Methods: unknown method 'universal'"):
        sweep_settings(dimensions="73", prompts="hi", methods=["universal"])
    with pytest.raises(ControlError, match="Max new tokens"):
        sweep_settings(dimensions="73", prompts="hi", max_new_tokens=0)
    with pytest.raises(ControlError, match="expected 90 values"):
        sweep_settings(dimensions="73", prompts="hi", vector=[0.5] * 89)


def direction(**dims) -> tuple[float, ...]:
    d = [0.5] * N_DIMS
    for k, v in dims.items():
        d[int(k[1:])] = v
    return tuple(d)


def test_edit_persona_swaps_disagreeing_pairs_drops_ugc_and_states_the_preference():
    joke = PairItem("Knock knock?", "Who's there? Haha!", "I do not do jokes.", direction(d73=1.0))
    plain = PairItem("Capital of France?", "Paris.", "Paris, the city of light!", direction(d16=1.0))
    persona = load_persona(PERSONA)  # its UGC item likes humor (dim 73 = 1)
    persona = dataclasses.replace(persona, pairs=[joke, plain])

    down = edit_persona(persona, [HUMOR], 0.0)
    assert down.pairs[0].chosen == joke.rejected and down.pairs[0].rejected == joke.chosen
    assert down.pairs[0].direction[HUMOR] == 0.0
    assert down.pairs[1] == plain  # not decisive on humor: untouched
    assert down.ugc == []  # the humor-liking comment contradicts the negative pole
    assert down.demographics.endswith("Stated preference: Dislikes humor.")
    assert down.direction[HUMOR] == 0.0 and persona.direction[HUMOR] == 1.0  # the input is not modified

    up = edit_persona(persona, [HUMOR], 1.0)
    assert up.pairs == [joke, plain] and up.ugc == persona.ugc
    assert up.demographics.endswith("Stated preference: Likes humor.")

    neutral = edit_persona(persona, [HUMOR], 0.5)
    assert neutral.pairs == [plain] and neutral.ugc == [] and neutral.demographics == persona.demographics

    assert edit_persona(persona, [HUMOR], 0.0, mode="demographics").pairs == [joke, plain]
    assert edit_persona(persona, [HUMOR], 0.0, mode="items").demographics == persona.demographics
    with pytest.raises(ControlError, match="unknown mode"):
        edit_persona(persona, [HUMOR], 0.0, mode="bogus")


def test_label_edits_and_flip_statistics():
    own, other = "Young, High Agreeableness, Likes humor", "Older, High Agreeableness, Dislikes humor"
    assert differing_labels(own, other) == [0, HUMOR]
    assert turn_off(own, differing_labels(own, other)) == "High Agreeableness"
    assert turn_off(own, [HUMOR]) == "Young, High Agreeableness"
    s = flip_stats(np.array([1.0, 1.0, -1.0, 2.0]), np.array([-1.0, 0.0, 1.0, 3.0]))
    assert s["directional_rate"] == 0.5  # pairs 0 and 1 moved toward rejected
    assert s["flip_rate"] == 0.5  # pairs 0 and 2 changed sign; reaching 0 is no flip
    assert s["flip_to_rejected_rate"] == pytest.approx(1 / 3)
    assert s["accuracy_before"] == 0.75 and s["accuracy_after"] == 0.5
    assert "directional_rate_stderr" not in s  # no clusters given
    # Pairs 0 and 1 share a cluster: directional [1, 1, 0, 0] -> residual sums +1, -0.5, -0.5;
    # sqrt(3 / 2 * 1.5) / 4 = 0.375. Flips [1, 0, 1, 0] -> 0, +0.5, -0.5; sqrt(3 / 2 * 0.5) / 4.
    s = flip_stats(np.array([1.0, 1.0, -1.0, 2.0]), np.array([-1.0, 0.0, 1.0, 3.0]), ["a", "a", "b", "c"])
    assert s["n_clusters"] == 3 and s["directional_rate_stderr"] == pytest.approx(0.375)
    assert s["flip_rate_stderr"] == pytest.approx(np.sqrt(0.75) / 4)


# ----------------------------------------------------------------------------- known by construction


@dataclasses.dataclass
class FakeConfig:
    model: str = "fake"
    precision: str = "fp32"
    adapters: dict = dataclasses.field(default_factory=lambda: {"pba": "fake/pba", "ica": "fake/ica"})


class HumorScorer:
    """A stand-in backbone (this test only) whose preferences are known by construction.

    With an adapter, a response containing "haha" scores +1 when the prompt says "Likes humor" and
    -1 when it says "Dislikes humor"; everything else scores 0, the adapter-free reference too. So
    a margin is +β, -β or 0. Generation answers "haha" exactly when the prompt likes humor.
    """

    config = FakeConfig()
    calls = 0

    def adapter_for(self, method):
        return method if method in ("pba", "ica") else None

    def build_prompt(self, method, prompt, *, persona=None, profile=None):
        if method == "pba":
            return f"PBA | {profile} | {prompt}"
        shown = [(p.chosen, p.rejected) for p in persona.pairs]
        return f"ICA | {persona.demographics or ''} | {shown} | {prompt}"

    def score(self, prompts, responses, adapters=None, *, batch_size=8):
        type(self).calls += 1
        adapters = adapters or [None] * len(prompts)
        out = []
        for p, r, a in zip(prompts, responses, adapters):
            likes = 1.0 if "Likes humor" in p else -1.0 if "Dislikes humor" in p else 0.0
            out.append(likes if (a is not None and "haha" in r) else 0.0)
        return np.array(out)

    def generate(self, prompts, adapters=None, **kwargs):
        return ["haha, what a trip" if "Likes humor" in p else "Plan the route and pack light." for p in prompts]

    def info(self):
        return {"model": "humor-scorer", "precision": "fp32", "device": "cpu", "template": "test",
                "adapters": dict(self.config.adapters)}


JOKE_PAIRS = [{"prompt": f"Question {i}?", "chosen": f"haha {i}", "rejected": f"Answer {i}."} for i in range(3)]


@pytest.mark.parametrize("method", ["pba", "ica"])
def test_sweep_effects_known_by_construction(method):
    base = [0.5] * N_DIMS
    base[0] = 1.0  # "Young": keeps the profile non-empty at 0.5, so no official fallback kicks in
    result = sweep(HumorScorer(), persona={"Demographic Information": "A hiker."}, vector=base, dimensions="73",
                   values=[0, 0.5, 1], prompts=["Any tips for a weekend trip?", "What should I cook?"],
                   methods=[method], pairs=JOKE_PAIRS, max_new_tokens=8)
    (effect,) = result["effects"]
    assert effect["target"] == "73" and effect["method"] == method
    # Pairs: margin -β at 0, 0 at 0.5 (no humor label / no stated preference), +β at 1: every pair flips.
    assert effect["flip_rate"] == 1.0 and effect["n_pairs"] == 3
    assert [effect["by_value"][v]["mean_margin"] for v in ("0.0", "0.5", "1.0")] == pytest.approx([-0.1, 0, 0.1])
    assert effect["margin_shift"] == pytest.approx(0.2)
    # Probes: the joke (generated at 1) vs the plain answer (generated at 0): log-ratio -1 -> 0 -> +1.
    assert [effect["by_value"][v]["probe_shift"] for v in ("0.0", "0.5", "1.0")] == pytest.approx([0, 1, 2])
    assert effect["probe_shift"] == pytest.approx(2)
    assert effect["words_change"] == pytest.approx(4 - 6)
    texts = {(g["value"], g["prompt_index"]): g["text"] for g in result["grid"]}
    assert texts[(1.0, 0)].startswith("haha") and texts[(0.0, 1)].startswith("Plan")
    assert all(g["flesch_reading_ease"] is not None for g in result["grid"])
    if method == "pba":
        assert [c["profile"] for c in result["conditions"]] == ["Young, Dislikes humor", "Young", "Young, Likes humor"]
    else:
        assert result["conditions"][0]["persona_edit"]["demographics"] == "A hiker. Stated preference: Dislikes humor."
    # The settings rerun the same sweep.
    again = sweep(HumorScorer(), **result["settings"])
    assert again["effects"] == result["effects"] and again["settings"] == result["settings"]
    json.dumps(result)  # serialisable as is


def test_explicit_probes_and_joint_targets():
    probes = {"Likes humor": {"positive": "haha yes", "negative": "No."}}
    result = sweep(HumorScorer(), vector=[0.9] + [0.5] * (N_DIMS - 1), dimensions=[73, 16], values=[0, 1],
                   prompts=["Hi"], probes=probes)
    by_target = {e["target"]: e for e in result["effects"]}
    assert set(by_target) == {"73", "16"}
    assert by_target["73"]["probe_shift"] == pytest.approx(2)  # given probes: -1 -> +1
    assert by_target["16"]["probe_shift"] == 0  # concise/detailed does not move the humor scorer
    assert {r["probe_source"] for r in result["probes"] if r["target"] == "73"} == {"given"}
    joint = sweep(HumorScorer(), vector=[0.9] + [0.5] * (N_DIMS - 1), dimensions=[73, 16], values=[0, 1],
                  prompts=["Hi"], joint=True)
    assert [e["target"] for e in joint["effects"]] == ["joint"]
    assert joint["conditions"][1]["profile"] == "Young, Concise communication style, Likes humor"


def tiny_records() -> list[Record]:
    friendly = [Record(prompt=f"Tell me about {x}.", chosen=f"haha {x}!", rejected=f"{x}.", profile="Young, Likes humor",
                       ground_truth_persona=FRIENDLY) for x in ("cats", "rain", "tea")]
    unfriendly = [Record(prompt=f"Tell me about {x}.", chosen=f"{x}.", rejected=f"haha {x}!",
                         profile="Older, Dislikes humor", ground_truth_persona=UNFRIENDLY) for x in ("dogs", "sun")]
    return friendly + unfriendly


def test_swap_study_known_by_construction():
    HumorScorer.calls = 0
    result = swap_study(HumorScorer(), tiny_records(), seed=3)
    assert HumorScorer.calls == 1  # every variant of every record in one scoring call
    s = result["summary"]
    # Original margins are all +β; the partner's profile reverses the humor preference: -β.
    assert s["swap"]["accuracy_before"] == 1.0
    assert s["swap"]["directional_rate"] == 1.0 and s["swap"]["flip_rate"] == 1.0 and s["swap"]["n"] == 5
    assert s["swap"]["accuracy_after"] == 0.0
    assert set(s["swap"]["by_persona"]) == {FRIENDLY, UNFRIENDLY}
    # Turning off both differing labels (age and humor) leaves no humor label: margin 0, no flip.
    assert s["differing_off"]["directional_rate"] == 1.0 and s["differing_off"]["flip_rate"] == 0.0
    # One label at a time: only the humor label matters.
    assert s["single_label"]["n"] == 10 and s["single_label"]["directional_rate"] == 0.5
    # Clustered by pair: each record's two edits move one way each, so every pair sits exactly at
    # the mean and the rate is certain (records independent would say sqrt(.25 / 9) = 0.167).
    assert s["single_label"]["n_clusters"] == 5 and s["single_label"]["directional_rate_stderr"] == 0.0
    assert s["swap"]["n_clusters"] == 5 and s["swap"]["directional_rate_stderr"] == 0.0
    assert s["swap"]["by_persona"][FRIENDLY]["n_clusters"] == 3
    assert result["per_label"]["Likes humor"]["directional_rate"] == 1.0
    assert result["per_label"]["Young"]["directional_rate"] == 0.0
    assert result["per_label"]["Dislikes humor"]["n"] == 2
    # Per label, too, the edits are clustered by pair (one edit per record here, so n == n_clusters).
    assert result["per_label"]["Likes humor"]["n_clusters"] == 3
    assert result["per_label"]["Likes humor"]["directional_rate_stderr"] == 0.0
    ex = result["examples"][0]
    assert ex["partner_persona"] == UNFRIENDLY and ex["differing_labels"] == ["Young", "Likes humor"]
    assert ex["margin/single_label"] == pytest.approx({"Young": 0.1, "Likes humor": 0.0})
    # limit studies the first records only; partners still come from all of them.
    assert swap_study(HumorScorer(), tiny_records(), limit=2, single_label=False)["summary"]["swap"]["n"] == 2
    with pytest.raises(ControlError, match="two different personas"):
        swap_study(HumorScorer(), tiny_records()[:3])


def test_report_files_and_figures(tmp_path):
    result = sweep(HumorScorer(), vector=[0.9] + [0.5] * (N_DIMS - 1), dimensions="73", values=[0, 1],
                   prompts=["Hi"], pairs=JOKE_PAIRS)
    assert set(report.figures(result)) == {"probes", "margins", "words", "readability", "flips"}
    paths = report.write_report(result, tmp_path / "sweep")
    page = paths["html"].read_text()
    assert "plotly" in page.lower() and "alignx control sweep --from-report" in page and "humor-scorer" in page
    assert json.loads(paths["json"].read_text())["settings"] == result["settings"]
    assert {p.name for p in paths["csv"]} == {"grid.csv", "effects.csv", "probes.csv", "pairs.csv"}
    study = swap_study(HumorScorer(), tiny_records())
    study["config"].update(benchmark="psoups-friendly_unfriendly", data="x.json", split=None)
    paths = report.write_report(study, tmp_path / "swap")
    assert set(report.figures(study)) == {"rates", "scatter", "labels"}
    assert "goal: 80% directional" in paths["html"].read_text()
    assert "alignx control swap --benchmark psoups-friendly_unfriendly --data x.json" in report.rerun_command(study)


# ----------------------------------------------------------------------------- real model


def test_swap_study_margins_are_evaluates(backbone_fp32):
    from alignx.learn.benchmarks import get_benchmark
    from alignx.learn.evaluate import evaluate

    records = get_benchmark("psoups-friendly_unfriendly").load(TINY)
    study = swap_study(backbone_fp32, records, single_label=False, limit=2)
    ev = evaluate(backbone_fp32, records, method="pba", per_example=True, limit=2)
    expected = [e["rewards/chosen"] - e["rewards/rejected"] for e in ev["examples"]]
    assert [e["margin/original"] for e in study["examples"]] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert study["config"]["metric"] == "implicit-reward" and study["config"]["reference"] == "ica-prompt"


def test_cli_sweep_writes_a_report_that_reruns(tmp_path, random_adapters, backbone_fp32, capsys):
    out = tmp_path / "report"
    argv = ["sweep", "--persona", str(PERSONA), "--dims", "Likes humor", "--values", "0,1", "--prompt", "Hi!",
            "--pairs", str(TINY), "--pairs-limit", "2", "--max-new-tokens", "4",
            "--adapter", f"pba={random_adapters['pba']}", "--threads", "1", "--report", str(out)]
    assert control.main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert len(result["grid"]) == 2 and len(result["pairs"]) == 4  # 2 values (x 2 pairs)
    assert result["config"]["backbone"]["precision"] == "fp32"  # the control commands default to fp32
    assert result["config"]["git_commit"] is None or len(result["config"]["git_commit"]) == 40
    assert [e["method"] for e in result["effects"]] == ["pba"] and result["effects"][0]["n_pairs"] == 2
    assert "flip rate" in capsys.readouterr().err
    page = (out / "report.html").read_text()
    assert "alignx control sweep --persona" in page and "plotly" in page.lower()

    # The recorded settings rerun the same sweep (fp32 is exact; the same pba adapter routes the rows).
    (tmp_path / "swap.json").write_text('{"kind": "swap"}')
    assert control.main(["sweep", "--from-report", str(tmp_path / "swap.json")]) == 2
    assert "not a sweep result" in capsys.readouterr().err
    rerun = sweep(backbone_fp32, **result["settings"])
    assert rerun["settings"] == result["settings"]
    assert [g["text"] for g in rerun["grid"]] == [g["text"] for g in result["grid"]]
    assert [p["margin"] for p in rerun["pairs"]] == pytest.approx([p["margin"] for p in result["pairs"]], abs=1e-4)


def test_cli_swap_on_a_tiny_file_and_clear_errors(tmp_path, random_adapters, capsys):
    out = tmp_path / "swap.json"
    assert control.main(["swap", "--data", str(TINY), "--adapter", random_adapters["pba"], "--threads", "1",
                         "--limit", "2", "--no-single-label", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["summary"]["swap"]["n"] == 2 and result["config"]["policy_adapter"] == "pba"
    assert set(result["summary"]) == {"swap", "differing_off"}
    assert result["config"]["data_sha256"] and result["config"]["split"] is None
    assert "swap: directional" in capsys.readouterr().err
    assert control.main(["swap", "--data", str(tmp_path / "missing.json")]) == 2
    assert "data not found" in capsys.readouterr().err
    assert control.main(["sweep", "--dims", "Likes humour", "--prompt", "Hi"]) == 2
    assert "Dimensions: unknown dimension 'Likes humour'" in capsys.readouterr().err
