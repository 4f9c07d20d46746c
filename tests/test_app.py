"""The app, started as the README starts it (`python app.py`), called through `gradio_client`.

The compare calls run the real embedded model; they ask for few tokens to stay quick on a CPU.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from alignx import preferences
from alignx.schema import load_persona


ROOT = Path(__file__).resolve().parents[1]
PERSONA_FILE = ROOT / "tests" / "fixtures" / "persona_example.json"
HUMOR = 73  # "Likes humor"


def vector_with(**positions) -> list[float]:
    v = [0.5] * preferences.N_DIMS
    for index, value in positions.items():
        v[int(index.lstrip("d"))] = value
    return v


def test_page_is_served(server):
    with urllib.request.urlopen(server.url, timeout=10) as r:
        html = r.read().decode()
    assert "alignx" in html and "gradio" in html.lower()


def test_named_endpoints_and_their_parameters(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = {name: [p["parameter_name"] for p in spec["parameters"]] for name, spec in api.items()}
    assert params["/compare"] == ["persona", "vector", "prompt", "max_new_tokens", "temperature", "seed"]
    assert params["/profile"] == ["vector"]
    assert params["/load_model"] == ["model", "gguf_file", "precision", "template", "ica_adapter", "pba_adapter"]
    assert len(api["/compare"]["returns"]) == 7  # three texts, three prompts, a status line


def test_profile_endpoint_is_the_exact_library_profile(client):
    assert client.predict(json.dumps(vector_with(d73=1.0)), api_name="/profile") == "Likes humor"
    # 0.4 reads neutral (float32), 0.39 negative, 0.6 positive, as in the official code
    assert client.predict(json.dumps(vector_with(d0=0.6, d1=0.4, d2=0.39)), api_name="/profile") == \
        "Young, Low Neuroticism"
    rng = np.random.default_rng(4)
    v = rng.random(preferences.N_DIMS).round(3).tolist()
    assert client.predict(json.dumps(v), api_name="/profile") == preferences.profile_from_vector(v)


def test_compare_streams_three_real_outputs_with_exact_prompts(client):
    persona_text = PERSONA_FILE.read_text()
    persona = load_persona(PERSONA_FILE)
    vector = vector_with(d73=1.0, d16=0.9)  # deliberately not the persona's own profile
    profile = preferences.profile_from_vector(vector)
    assert profile == "Concise communication style, Likes humor"
    ica, pba, universal, p_ica, p_pba, p_uni, status = client.predict(
        persona_text, json.dumps(vector), "Any tips for a weekend trip?", 16, 0.0, 0, api_name="/compare")
    assert ica.strip() and pba.strip() and universal.strip()
    # ICA sees the raw persona, PBA the slider profile, universal neither.
    assert persona.ugc[0].comment in p_ica and persona.demographics in p_ica and profile not in p_ica
    assert profile in p_pba and persona.ugc[0].comment not in p_pba
    assert persona.ugc[0].comment not in p_uni and profile not in p_uni
    assert all("Any tips for a weekend trip?" in p for p in (p_ica, p_pba, p_uni))
    assert "one batch of 3" in status and "done in" in status

    # Greedy decoding with the same inputs reproduces the same texts (a shared session reruns).
    again = client.predict(persona_text, json.dumps(vector), "Any tips for a weekend trip?", 16, 0.0, 0,
                           api_name="/compare")
    assert again[:3] == (ica, pba, universal)


def test_compare_blank_vector_derives_it_from_the_persona(client):
    persona = load_persona(PERSONA_FILE)
    out = client.predict(PERSONA_FILE.read_text(), "", "Hi!", 8, 0.0, 0, api_name="/compare")
    assert persona.profile() in out[4]  # the persona's own "Preference Direction"


BAD_COMPARE = [
    ("{oops", "", "hi", "Persona is not valid JSON (line 1, column 2"),
    ('{"Favourite colour": "blue"}', "", "hi", "unknown persona key"),
    ('{"User-Generated Content": [{"prompt": "p"}]}', "", "hi", "missing required key 'comment'"),
    ("", json.dumps([0.5] * 89), "hi", "Vector: expected 90 values, got 89"),
    ("", json.dumps([0.5] * 89 + [1.5]), "hi", "Vector: index 89: value 1.5 is outside [0, 1]"),
    ("", "[0.5, 0.5", "hi", "Vector is not valid JSON"),
    ("", "", "hi", "Vector is empty and the persona has no preference directions"),
    ("", json.dumps([0.5] * 90), "   ", "Prompt is empty"),
]


@pytest.mark.parametrize("persona,vector,prompt,message", BAD_COMPARE,
                         ids=[m.split(":")[0][:30] for *_, m in BAD_COMPARE])
def test_compare_bad_input_is_a_clear_error(client, persona, vector, prompt, message):
    with pytest.raises(Exception) as info:
        client.predict(persona, vector, prompt, 8, 0.0, 0, api_name="/compare")
    assert message in str(info.value)


def test_bad_settings_and_profile_inputs_are_clear_errors(client):
    with pytest.raises(Exception, match="Vector: expected 90 values, got 2"):
        client.predict("[1, 2]", api_name="/profile")
    with pytest.raises(Exception, match="Vector: index 3: expected a number"):
        client.predict(json.dumps([0.5] * 3 + ["x"] + [0.5] * 86), api_name="/profile")
    with pytest.raises(Exception, match="maximum"):  # the slider's own range check
        client.predict("", json.dumps([0.5] * 90), "hi", 8, 9.0, 0, api_name="/compare")
    with pytest.raises(Exception, match="Model folder not found: /nonexistent/model"):
        client.predict("/nonexistent/model", "", "auto", "auto", "", "", api_name="/load_model")
    with pytest.raises(Exception, match="Adapter 'ica': adapter folder not found"):
        client.predict("embedded", "", "auto", "auto", "/nonexistent/ica", "", api_name="/load_model")
    with pytest.raises(Exception, match="Could not load the backbone 'JinaLeejnl/AlignXpert-ICA-Full'"):
        client.predict("JinaLeejnl/AlignXpert-ICA-Full", "", "auto", "auto", "", "", api_name="/load_model")


def test_server_keeps_serving_after_errors(client):
    # Runs after the error tests above (file order): the same server still answers.
    assert client.predict(json.dumps(vector_with(d56=0.0)), api_name="/profile") == "Dislikes sports"
    out = client.predict("", json.dumps(vector_with(d73=1.0)), "Tell me a joke.", 8, 0.0, 0, api_name="/compare")
    assert all(text.strip() for text in out[:3])
