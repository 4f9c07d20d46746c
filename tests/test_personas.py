"""Tests for alignx.personas (examples, table rows, directions as text, deriving a vector) and the
shipped example personas in assets/personas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from alignx import personas
from alignx.preferences import N_DIMS, get_profile, parse_profile, verbalize
from alignx.prompts import EXAMPLE_PERSONA
from alignx.schema import Persona, load_persona

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "personas"
EXAMPLES = personas.load_examples()


def test_at_least_eight_examples_all_valid_and_complete():
    assert len(EXAMPLES) >= 8
    assert set(EXAMPLES) == {p.stem for p in ASSETS.glob("*.json")}
    for name, p in EXAMPLES.items():
        assert p.demographics and len(p.demographics) > 40, name
        assert p.ugc and p.pairs, name
        for item in [*p.ugc, *p.pairs]:
            assert item.direction is not None, (name, item.prompt)
            assert set(item.direction) <= {0.0, 0.5, 1.0}, (name, item.prompt)
            assert verbalize(item.direction), (name, item.prompt)  # at least one non-neutral dimension
        assert p.direction is None  # the profile comes from the items
        assert p.profile() == get_profile(p.item_directions())


def test_examples_are_diverse():
    profiles = {name: set(p.profile().split(", ")) for name, p in EXAMPLES.items()}
    assert len({p.profile() for p in EXAMPLES.values()}) == len(EXAMPLES)
    names = list(profiles)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            overlap = len(profiles[a] & profiles[b]) / len(profiles[a] | profiles[b])
            assert overlap < 0.5, (a, b)
    assert {"Young", "Older"} <= set().union(*profiles.values())


def test_examples_are_documented():
    readme = (ASSETS / "README.md").read_text()
    for name, p in EXAMPLES.items():
        assert f"`{name}.json`" in readme, name
        assert p.profile() in readme, name  # the table shows each derived profile exactly


def test_example_files_use_the_alignx_key_format():
    for path in ASSETS.glob("*.json"):
        data = json.loads(path.read_text())
        assert list(data) == ["Demographic Information", "User-Generated Content", "Pair-wise Comparative Feedback"]
        assert load_persona(path) == EXAMPLES[path.stem]


def test_title():
    assert personas.title("outdoor-guide") == "Outdoor guide"


@pytest.mark.parametrize("text", ["", "Likes humor", "Young, Strong need for Order (neatness, organization, avoiding chaos)",
                                  personas.ALL_NEUTRAL])
def test_direction_text_round_trip(text):
    vec = personas.direction_from_text(text)
    assert personas.direction_to_text(vec) == text


def test_direction_text_continuous_and_errors():
    v = tuple([0.25] + [0.5] * (N_DIMS - 1))
    text = personas.direction_to_text(v)
    assert text.startswith("[0.25, 0.5") and personas.direction_from_text(text) == v
    with pytest.raises(ValueError, match=r"UGC item 2 direction: .*unknown label 'Likes humour'.*did you mean 'Likes humor'"):
        personas.direction_from_text("Likes humour", what="UGC item 2 direction")
    with pytest.raises(ValueError, match="d: expected 90 values, got 2"):
        personas.direction_from_text("[1, 0]", what="d")
    with pytest.raises(ValueError, match="d: not a valid JSON list"):
        personas.direction_from_text("[1, 0", what="d")


def test_rows_round_trip_every_example():
    for name, p in EXAMPLES.items():
        ugc, pairs = personas.persona_to_rows(p)
        back, warnings = personas.persona_from_rows(ugc, pairs, p.demographics, "")
        assert back == p and warnings == [], name


def test_rows_blank_incomplete_and_bad():
    ugc = [["", "", ""], ["Best snack?", "Trail mix.", "Likes outdoors"], ["A post", "", ""], [None, None]]
    pairs = [["Q", "short", "long", ""], ["Q2", "", "x", ""]]
    p, warnings = personas.persona_from_rows(ugc, pairs, "  ", "")
    assert [u.prompt for u in p.ugc] == ["Best snack?"] and len(p.pairs) == 1
    assert p.ugc[0].direction == tuple(float(x) for x in parse_profile("Likes outdoors"))
    assert p.pairs[0].direction is None and p.demographics is None
    assert warnings == ["UGC item 3 is left out: its comment is empty.",
                        "Pair item 2 is left out: its chosen is empty."]
    with pytest.raises(ValueError, match="Pair item 1 direction: .*unknown label 'Likes cats'"):
        personas.persona_from_rows([], [["Q", "a", "b", "Likes cats"]])
    own, _ = personas.persona_from_rows([], [], None, "Likes humor")
    assert own.direction[73] == 1.0


def test_derive_vector_and_the_deriver_seam():
    p = EXAMPLES["teen-gamer"]
    v = personas.derive_vector(p)
    assert len(v) == N_DIMS and all(isinstance(x, float) for x in v)
    np.testing.assert_array_equal(np.float32(v), p.preference_vector())  # exact float32 mean
    assert personas.derive_vector(Persona()) is None
    assert personas.derive_vector(EXAMPLE_PERSONA) is None  # no directions at all
    with pytest.raises(KeyError, match="unknown derive method 'magic'; registered: directions"):
        personas.derive_vector(p, "magic")
    personas.register_deriver("all-humor", lambda persona: [1.0 if i == 73 else 0.5 for i in range(N_DIMS)])
    try:
        assert personas.derive_vector(Persona(), "all-humor")[73] == 1.0
        with pytest.raises(ValueError, match="already registered"):
            personas.register_deriver("all-humor", lambda persona: None)
    finally:
        personas.DERIVERS.pop("all-humor")


def test_readme_mentions_no_real_people():
    readme = (ASSETS / "README.md").read_text()
    assert re.search(r"written for this project", readme)


def test_dumps_writes_vectors_on_one_line():
    for path in ASSETS.glob("*.json"):
        assert personas.dumps(json.loads(path.read_text())) + "\n" == path.read_text(), path.name
    assert personas.dumps({"v": [1, 0.5], "s": "[1,\n 2]", "e": []}) == '{\n  "v": [1, 0.5],\n  "s": "[1,\\n 2]",\n  "e": []\n}'
