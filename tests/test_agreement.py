"""Agreement between annotators (alignx.annotation): Cohen's kappa, Fleiss' kappa and raw agreement
against hand-computed values (tests/fixtures/agreement.json), and the same figures computed from
choices stored in a real SQLite store, where A / B depend on the order each annotator was shown."""

from __future__ import annotations

import json
import random

import pytest

from alignx import annotation
from alignx.annotation import agreement, cohen_kappa, fleiss_kappa, raw_agreement
from alignx.schema import Persona
from alignx.store import Store

from conftest import FIXTURES

FIXTURE = json.loads((FIXTURES / "agreement.json").read_text())


def test_cohen_kappa_matches_the_hand_computed_fixture():
    f = FIXTURE["cohen"]
    assert cohen_kappa(f["a"], f["b"]) == pytest.approx(f["kappa"], abs=1e-12)  # 6/11
    assert raw_agreement(list(zip(f["a"], f["b"]))) == pytest.approx(f["p_o"], abs=1e-12)
    assert cohen_kappa(f["b"], f["a"]) == pytest.approx(f["kappa"], abs=1e-12)  # symmetric


def test_fleiss_kappa_matches_the_hand_computed_fixture():
    f = FIXTURE["fleiss"]
    assert raw_agreement(f["ratings"]) == pytest.approx(f["p_bar"], abs=1e-12)  # 8/15
    assert fleiss_kappa(f["ratings"]) == pytest.approx(f["kappa"], abs=1e-12)  # 31/136


def test_fleiss_kappa_matches_the_published_worked_example():
    f = FIXTURE["fleiss_1971"]
    ratings = [[str(j) for j, n in enumerate(row) for _ in range(n)] for row in f["counts"]]
    assert raw_agreement(ratings) == pytest.approx(f["p_bar"], abs=5e-4)
    assert fleiss_kappa(ratings) == pytest.approx(f["kappa"], abs=5e-4)


def test_edge_cases():
    assert cohen_kappa(["1", "1"], ["1", "1"]) is None  # P_e = 1: undefined, not a division by zero
    assert cohen_kappa(["1", "2"], ["1", "2"]) == 1.0
    assert cohen_kappa(["1", "2"], ["2", "1"]) == -1.0
    with pytest.raises(ValueError, match="equally long"):
        cohen_kappa(["1"], ["1", "2"])
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([["1", "2"], ["1", "2", "1"]])


def test_agreement_from_rows_skips_skips_and_picks_the_statistic():
    two = agreement([{"pair_id": i, "annotator": who, "preferred": label}
                     for who, labels in (("a", FIXTURE["cohen"]["a"]), ("b", FIXTURE["cohen"]["b"]))
                     for i, label in enumerate(labels)]
                    + [{"pair_id": 99, "annotator": "a", "preferred": "skip"},
                       {"pair_id": 99, "annotator": "b", "preferred": "1"}])
    assert two["n_items"] == 10 and two["fleiss_kappa"] is None
    assert two["cohen_kappa"] == pytest.approx(6 / 11) and two["raw_agreement"] == pytest.approx(0.7)
    three = agreement([{"pair_id": i, "annotator": who, "preferred": r[k]}
                       for i, r in enumerate(FIXTURE["fleiss"]["ratings"]) for k, who in enumerate("xyz")])
    assert three["cohen_kappa"] is None and three["fleiss_kappa"] == pytest.approx(31 / 136)
    assert len(three["pairwise"]) == 3
    assert agreement([])["note"].startswith("Agreement needs at least two annotators")
    assert "Fleiss' κ = 0.228" in annotation.agreement_text(three)


def test_store_choices_give_the_fixture_kappas_whatever_the_order_shown(tmp_path):
    """Three annotators judge the fixture's items through the store; each saw every pair in its
    own pseudo-random order, so their A / B clicks differ from the labels, but the response they
    preferred is what agreement compares."""
    ratings = FIXTURE["fleiss"]["ratings"]
    db = tmp_path / "alignx.db"
    with Store.open(db) as store:
        store.add_queue("q", [{"prompt": f"p{i}", "responses": [f"one {i}", f"two {i}"]} for i in range(5)])
        rng = random.Random(0)
        orders = set()
        for i, labels in enumerate(ratings):
            pair_id = store.find_pair(i + 1, "given")["id"]
            for who, label in zip("xyz", labels):
                order = rng.choice(["12", "21"])
                orders.add(order)
                click = label if label in ("tie", "both_bad") else "AB"[order.index(label)]
                store.add_choice(pair_id=pair_id, annotator=who, session_id="s", shown_order=order, choice=click,
                                 persona=Persona())
        # a skip and an undone choice do not count
        store.add_queue("q2", [{"prompt": "x", "responses": ["u", "v"]}])
        store.add_choice(pair_id=store.find_pair(6, "given")["id"], annotator="x", session_id="s2",
                         shown_order="12", choice="skip")
    assert orders == {"12", "21"}
    figures = annotation.queue_agreement(db, "q")
    assert figures["fleiss_kappa"] == pytest.approx(31 / 136) and figures["raw_agreement"] == pytest.approx(8 / 15)
    with pytest.raises(ValueError, match="No annotation queue named 'nope'"):
        annotation.queue_agreement(db, "nope")
