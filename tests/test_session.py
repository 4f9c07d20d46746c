"""Tests for alignx.session: the per-user session, its JSON file, and its validation errors."""

from __future__ import annotations

import copy
import json

import pytest

from alignx import session as session_mod
from alignx.preferences import N_DIMS
from alignx.prompts import EXAMPLE_PERSONA
from alignx.session import BackboneSettings, GenerationSettings, Session, SessionError


def full_session() -> Session:
    vector = [0.5] * N_DIMS
    vector[73], vector[16], vector[2] = 1.0, 0.6666666865348816, 0.4000000059604645
    return Session(
        persona=EXAMPLE_PERSONA.to_dict(), vector=vector, prompt="Any tips for a weekend trip?",
        backbone=BackboneSettings(model="embedded", precision="nf4", template="chat",
                                  adapters={"ica": "assets/adapters/ica", "pba": "assets/adapters/pba"}),
        generation=GenerationSettings(max_new_tokens=64, temperature=0.7, top_p=0.9), seed=1234,
        outputs={"ica": "a", "pba": "b", "universal": "c"},
    )


def test_defaults():
    s = Session()
    assert s.vector == [0.5] * N_DIMS and s.prompt == "" and s.seed == 0
    assert s.backbone == BackboneSettings() and s.generation == GenerationSettings()
    assert s.persona == {"User-Generated Content": [], "Pair-wise Comparative Feedback": []}


def test_json_round_trip_is_exact():
    s = full_session()
    text = s.to_json()
    back = Session.from_json(text)
    assert back == s
    assert back.vector[2] == 0.4000000059604645  # float32 means survive exactly (so do profiles)
    assert back.profile() == s.profile() == "Concise communication style, Likes humor"
    d = json.loads(text)
    assert list(d)[:3] == ["format", "version", "prompt"]
    assert d["backbone"]["adapters"] == {"ica": "assets/adapters/ica", "pba": "assets/adapters/pba"}


def test_deepcopy_and_copy_are_independent():
    s = full_session()
    c = copy.deepcopy(s)
    c.vector[0] = 1.0
    c.persona["User-Generated Content"].clear()
    assert s.vector[0] == 0.5 and s.persona["User-Generated Content"]
    d = s.copy(seed=7)
    assert d.seed == 7 and s.seed == 1234 and d.backbone is not s.backbone
    with pytest.raises(TypeError, match="no field 'colour'"):
        s.copy(colour="red")


def test_persona_obj_and_normalisation():
    s = Session(persona={"Demographic Information": "A chef."})
    assert s.persona == {"Demographic Information": "A chef.", "User-Generated Content": [],
                         "Pair-wise Comparative Feedback": []}
    assert s.persona_obj().demographics == "A chef."
    assert Session(persona=EXAMPLE_PERSONA).persona_obj() == EXAMPLE_PERSONA


def test_backbone_settings_to_config():
    cfg = full_session().backbone.to_config()
    assert (cfg.model, cfg.precision, cfg.template) == ("embedded", "nf4", "chat")
    assert cfg.adapters == {"ica": "assets/adapters/ica", "pba": "assets/adapters/pba"}


def test_choices_mirror_the_backbone():
    from alignx import backbone

    assert session_mod.PRECISIONS == backbone.PRECISIONS
    assert session_mod.METHODS == backbone.METHODS


def edited(**changes) -> str:
    d = full_session().to_dict()
    for path, value in changes.items():
        *parents, key = path.split("__")
        target = d
        for p in parents:
            target = target[p]
        if value is KeyError:
            del target[key]
        else:
            target[key] = value
    return json.dumps(d)


BAD = [
    ("{", "not valid JSON (line 1, column 2"),
    ("[]", "expected a JSON object, got list"),
    (edited(format="something-else"), "'format': expected 'alignx-session'"),
    (edited(version=2), "'version': expected 1, got 2"),
    (edited(colour="red"), "'colour': unknown key"),
    (edited(vector=[0.5] * 89), "'vector': expected 90 values, got 89"),
    (edited(vector=[0.5] * 89 + [1.2]), "'vector': index 89: value 1.2 is outside [0, 1]"),
    (edited(vector="0.5"), "'vector': expected a list of 90 numbers, got str"),
    (edited(persona={"Favourite": 1}), "'persona.Favourite': unknown persona key"),
    (edited(persona={"Demographic Information": 3}), "'persona.Demographic Information': expected a string"),
    (edited(prompt=7), "'prompt': expected a string, got int"),
    (edited(seed=-1), "'seed': expected 0 to 2**63 - 1, got -1"),
    (edited(seed="7"), "'seed': expected a whole number, got '7'"),
    (edited(backbone__precision="fp8"), "'backbone.precision': expected one of"),
    (edited(backbone__template="alpaca"), "'backbone.template': expected one of"),
    (edited(backbone__model=""), "'backbone.model': expected a non-empty model id"),
    (edited(backbone__adapters=["ica"]), "'backbone.adapters': expected an object mapping adapter names"),
    (edited(backbone__device="cuda"), "'backbone.device': unknown key"),
    (edited(backbone=[]), "'backbone': expected an object, got list"),
    (edited(generation__max_new_tokens=0), "'generation.max_new_tokens': expected a whole number from 1 to 2048"),
    (edited(generation__max_new_tokens=2.5), "'generation.max_new_tokens': expected a whole number"),
    (edited(generation__temperature=-0.1), "'generation.temperature': expected 0 (greedy) to 5.0"),
    (edited(generation__temperature=float("nan")), "'generation.temperature': expected a finite number"),
    (edited(generation__top_p=0), "'generation.top_p': expected a number in (0, 1]"),
    (edited(outputs={"dpo": "x"}), "'outputs': expected an object mapping"),
]


@pytest.mark.parametrize("text,message", BAD, ids=[m[:40] for _, m in BAD])
def test_validation_errors_name_the_field(text, message):
    with pytest.raises(SessionError) as info:
        Session.from_json(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_keys_take_defaults():
    s = Session.from_json(json.dumps({"format": "alignx-session", "version": 1, "prompt": "hi"}))
    assert s == Session(prompt="hi")


def test_session_error_pickles():
    import pickle

    e = SessionError("seed", "bad")
    assert str(pickle.loads(pickle.dumps(e))) == str(e) == "session field 'seed': bad"
