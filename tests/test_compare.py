"""Tests for alignx.compare: input validation (no model), load errors, and one real batched stream."""

from __future__ import annotations

import json

import pytest

from alignx.compare import (InputError, ModelLoadError, check_backbone_settings, load, parse_persona,
                            parse_request, parse_vector, sequential_compare, stream_compare)
from alignx.personas import load_examples
from alignx.preferences import N_DIMS
from alignx.prompts import EXAMPLE_PERSONA
from alignx.schema import Persona
from alignx.session import BackboneSettings

TEEN = load_examples()["teen-gamer"]


def test_parse_persona():
    assert parse_persona("") == Persona() and parse_persona(None) == Persona()
    assert parse_persona(json.dumps(EXAMPLE_PERSONA.to_dict())) == EXAMPLE_PERSONA
    assert parse_persona(EXAMPLE_PERSONA.to_dict()) == EXAMPLE_PERSONA
    with pytest.raises(InputError, match=r"Persona is not valid JSON \(line 1, column 2"):
        parse_persona("{x")
    with pytest.raises(InputError, match="Persona is not valid: persona: field 'Pair-wise Comparative Feedback'"):
        parse_persona('{"Pair-wise Comparative Feedback": "oops"}')


def test_parse_vector():
    assert parse_vector(json.dumps([0.25] * N_DIMS)) == [0.25] * N_DIMS
    assert parse_vector([1] * N_DIMS) == [1.0] * N_DIMS
    assert parse_vector("", TEEN)[52] == 0.75  # "Likes gaming" in 3 of 6 items: (3 + 3 * 0.5) / 6
    with pytest.raises(InputError, match="Vector is empty and the persona has no preference directions"):
        parse_vector("  ", Persona())
    with pytest.raises(InputError, match="Vector: expected 90 values, got 3"):
        parse_vector("[1, 2, 3]")
    with pytest.raises(InputError, match="Vector: index 5: expected a finite number, got nan"):
        parse_vector("[" + ", ".join(["0.5"] * 5 + ["NaN"] + ["0.5"] * 84) + "]")
    with pytest.raises(InputError, match="Vector is not valid JSON"):
        parse_vector("[0.5,")


def test_parse_request():
    req = parse_request("", json.dumps([0.5] * N_DIMS), "Hi", 16.0, 0.5, 3)
    assert (req.prompt, req.generation.max_new_tokens, req.generation.temperature, req.seed) == ("Hi", 16, 0.5, 3)
    assert req.profile.startswith("Older, Male")  # all-neutral: the official fallback
    with pytest.raises(InputError, match="Prompt is empty"):
        parse_request("", "", "  ", 16, 0, 0)
    with pytest.raises(InputError, match="Max new tokens: expected a whole number from 1 to 2048, got 0"):
        parse_request("", json.dumps([0.5] * N_DIMS), "Hi", 0, 0, 0)
    with pytest.raises(InputError, match=r"Temperature: expected 0 \(greedy\) to 5.0, got -1"):
        parse_request("", json.dumps([0.5] * N_DIMS), "Hi", 8, -1, 0)
    with pytest.raises(InputError, match="Seed: expected a whole number, got 1.5"):
        parse_request("", json.dumps([0.5] * N_DIMS), "Hi", 8, 0, 1.5)


def test_backbone_settings_checks(tmp_path):
    check_backbone_settings(BackboneSettings())
    with pytest.raises(InputError, match="Adapter 'ica': adapter folder not found"):
        check_backbone_settings(BackboneSettings(adapters={"ica": str(tmp_path / "nope")}))
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text("{}")
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="pickled weights are refused"):
        check_backbone_settings(BackboneSettings(adapters={"pba": str(tmp_path / "pickled")}))
    with pytest.raises(InputError, match="Model folder not found: ./no/such/model"):
        check_backbone_settings(BackboneSettings(model="./no/such/model"))


class _FailingCache:
    def get(self, config):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")


def test_load_failure_is_one_clear_error():
    with pytest.raises(ModelLoadError, match=r"Could not load the backbone 'org/model' \(auto\): OSError: "
                                             r"We couldn't connect.*Hub \(or its local cache\) is reachable"):
        load(_FailingCache(), BackboneSettings(model="org/model"))


def test_stream_compare_is_one_batch_of_three(backbone):
    vector = [0.5] * N_DIMS
    vector[73] = 1.0
    short = Persona(ugc=TEEN.ugc[:1], demographics="A teenage gamer.")  # short prompts keep this quick
    req = parse_request(json.dumps(short.to_dict()), json.dumps(vector), "Any tips?", 4, 0.0, 0)
    calls = []
    original = type(backbone).stream

    def spy(self, prompts, adapters=None, **kw):
        calls.append((list(prompts), list(adapters)))
        return original(self, prompts, adapters, **kw)

    type(backbone).stream = spy
    try:
        steps = list(stream_compare(backbone, req))
    finally:
        type(backbone).stream = original
    assert len(calls) == 1 and len(calls[0][0]) == 3  # ONE batched call with three rows
    assert calls[0][1] == ["ica", "pba", None]
    last = steps[-1]
    assert last.done and not any(s.done for s in steps[:-1])
    assert last.texts == steps[-2].texts and all(last.texts)
    assert last.first_token_s is not None and last.first_token_s <= last.elapsed_s
    assert "Likes humor" in last.prompts[1] and TEEN.ugc[0].comment in last.prompts[0]
    seq = sequential_compare(backbone, req)
    assert len(seq["texts"]) == 3 and seq["first_token_s"] <= seq["last_first_token_s"] <= seq["total_s"]
