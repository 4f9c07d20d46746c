"""Prompt builders for ICA, PBA and universal (no-persona) conditioning.

Pure functions that turn a post plus a persona (ICA), a preference profile (PBA) or nothing
(universal) into the exact prompt string a backbone sees. The official AlignXpert prompts are
Llama-3 strings with the header tokens written out by hand (``train/format_data.py`` and
``eval/*.py`` of JinaLeejnl/AlignX); they come in two wordings, *training* and *evaluation*
(the eval one adds ``**Post:**\\n`` and says "historical behavior and preferences").

Named templates live in a small registry:

- ``"official-eval"``  Llama-3 tokens, eval/generation wording (the default; what the paper scores).
- ``"official-train"`` Llama-3 tokens, training wording (``ica_prompt`` / ``pba_prompt``).
- ``"chat"``           eval wording rendered with ``tokenizer.apply_chat_template``: use it for
  every non-Llama-3 backbone (e.g. the embedded SmolLM2).
- ``"chat-train"``     training wording rendered with ``tokenizer.apply_chat_template``.

Both renderers share one source of truth for the system sentence and the user-turn body
(:class:`Wording` + :func:`_user_body`); a renderer only wraps them. The universal template is
alignx's own (the paper has none): the chosen wording minus the persona section, with the system
sentence "Generate a task-specific response."

Usage::

    from alignx.prompts import build_prompt
    text = build_prompt("pba", "Any tips for a first marathon?", profile="Young, Likes sports")
    text = build_prompt("ica", post, persona=persona, style="chat", tokenizer=tok)

Run ``python -m alignx.prompts`` to print one rendered prompt per template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from alignx.schema import PairItem, Persona, UGCItem

METHODS = ("ica", "pba", "universal")

# Llama-3 header tokens as in the official code (no BOS; the scorer adds it). The response is
# appended straight after the final `<|end_header_id|>`, with no "\n\n".
LLAMA3_FORMAT = (
    "<|start_header_id|>system<|end_header_id|>\n\n{system}\n<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>"
)


# ---------------------------------------------------------------------------------------------
# Wordings: the one source of truth for system sentences, section headers and the task prefix.


@dataclass(frozen=True)
class Wording:
    """The text that differs between the official training and evaluation prompts.

    Args:
        task_prefix (`str`): text put before the post in the ``***Task***`` section.
        ica_system (`str`): ICA system sentence. ica_header (`str`): ICA persona section header.
        pba_system (`str`): PBA system sentence. pba_header (`str`): PBA profile section header.
        universal_system (`str`): system sentence of alignx's own no-persona prompt.
    """

    task_prefix: str
    ica_system: str
    ica_header: str
    pba_system: str
    pba_header: str
    universal_system: str


TRAIN_WORDING = Wording(
    task_prefix="",
    ica_system="Generate a task-specific response based on user historical behavior.",
    ica_header="***Historical Behavior***",
    pba_system="Generate a task-specific response based on user preferences.",
    pba_header="***User Preferences***",
    universal_system="Generate a task-specific response.",
)
EVAL_WORDING = Wording(
    task_prefix="**Post:**\n",
    ica_system=("Generate a task-specific response based on user historical behavior "
                "and preferences."),
    ica_header="***Historical Behavior and User Preferences***",
    pba_system=TRAIN_WORDING.pba_system,
    pba_header=TRAIN_WORDING.pba_header,
    universal_system=TRAIN_WORDING.universal_system,
)


def ugc_block(items: list[UGCItem]) -> str:
    """The official UGC block, items numbered from 1; ``""`` when there are no items."""
    body = "".join(
        f"{i}. *Post:*\n{u.prompt}\n\n*Comment:*\n{u.comment}\n\n" for i, u in enumerate(items, 1)
    )
    return "**This person has commented on some posts:**\n\n" + body if items else ""


def pair_block(items: list[PairItem]) -> str:
    """The official PAIR block, items numbered from 1; ``""`` when there are no items."""
    body = "".join(
        f"{i}. *Post:*\n{p.prompt}\n\n*Chosen:*\n{p.chosen}\n\n*Rejected:*\n{p.rejected}\n\n"
        for i, p in enumerate(items, 1)
    )
    header = "**This person has chosen or rejected comments on some posts:**\n\n"
    return header + body if items else ""


def persona_text(persona: Persona, *, include_demographics: bool = True) -> str:
    """The history text of an ICA prompt: UGC block, PAIR block, then the raw demographic string.

    Args:
        persona (`Persona`): the user's persona. ``demographics=None`` means "no such key" and
            adds nothing; the string is appended with no header, as the official eval code does.
        include_demographics (`bool`, defaults to `True`): set `False` to drop the demographics.
    """
    demo = persona.demographics if include_demographics and persona.demographics else ""
    return ugc_block(persona.ugc) + pair_block(persona.pairs) + demo


def _user_body(wording: Wording, prompt: str, section: tuple[str, str] | None) -> str:
    """The user turn: ``***Task***``, an optional (header, content) section, ``***Response:***``."""
    text = f"***Task***\n\n{wording.task_prefix}{prompt}\n\n"
    if section is not None:
        header, content = section
        text += f"{header}\n\n{content}\n\n"
    return text + "***Response:***\n\n"


# ---------------------------------------------------------------------------------------------
# Renderers and the template registry.


def render_llama3(system: str, user: str, tokenizer: Any = None) -> str:
    """Official hand-written Llama-3 string; ``tokenizer`` is ignored."""
    return LLAMA3_FORMAT.format(system=system, user=user)


def render_chat(system: str, user: str, tokenizer: Any = None) -> str:
    """Render through ``tokenizer.apply_chat_template`` with the generation prompt appended.

    Some chat templates (Mistral-7B-Instruct-v0.2, Gemma) reject a system role; for those the
    system sentence is put at the top of the user turn, separated by a blank line.
    """
    if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
        raise ValueError(
            "Chat-style prompts are rendered with tokenizer.apply_chat_template: pass the "
            "backbone's tokenizer (tokenizer=...), or use style='official-eval' for Llama-3."
        )
    kwargs = dict(tokenize=False, add_generation_prompt=True)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    try:
        return tokenizer.apply_chat_template(messages, **kwargs)
    except Exception:  # the template has no system role: fold it into the user turn
        merged = [{"role": "user", "content": f"{system}\n\n{user}"}]
        return tokenizer.apply_chat_template(merged, **kwargs)


@dataclass(frozen=True)
class PromptTemplate:
    """A named prompt style: a wording plus a renderer ``(system, user, tokenizer) -> str``."""

    name: str
    wording: Wording
    render: Callable[[str, str, Any], str]
    description: str = ""


_TEMPLATES: dict[str, PromptTemplate] = {}


def register_template(template: PromptTemplate) -> PromptTemplate:
    """Add ``template`` to the registry. Raises `ValueError` if its name is already taken."""
    if template.name in _TEMPLATES:
        raise ValueError(f"Prompt template {template.name!r} is already registered.")
    _TEMPLATES[template.name] = template
    return template


def get_template(name: str) -> PromptTemplate:
    """Look a template up by name. Raises `KeyError` listing the valid names."""
    try:
        return _TEMPLATES[name]
    except KeyError:
        raise KeyError(
            f"Unknown prompt template {name!r}; valid names: {', '.join(sorted(_TEMPLATES))}"
        ) from None


def list_templates() -> list[str]:
    """Names of all registered templates, in registration order."""
    return list(_TEMPLATES)


for _t in [
    PromptTemplate("official-eval", EVAL_WORDING, render_llama3, "Llama-3, eval wording"),
    PromptTemplate("official-train", TRAIN_WORDING, render_llama3, "Llama-3, training wording"),
    PromptTemplate("chat", EVAL_WORDING, render_chat, "chat template, eval wording"),
    PromptTemplate("chat-train", TRAIN_WORDING, render_chat, "chat template, training wording"),
]:
    register_template(_t)
del _t


# ---------------------------------------------------------------------------------------------
# Public builders.


def build_ica_prompt(prompt: str, persona: Persona, *, style: str = "official-eval",
                     tokenizer: Any = None, include_demographics: bool = True) -> str:
    """In-context alignment prompt: the raw persona goes in the user turn.

    Args:
        prompt (`str`): the post to respond to.
        persona (`Persona`): every UGC and PAIR item is shown, in order (no sampling here).
        style (`str`, defaults to `"official-eval"`): a registered template name.
        tokenizer (*optional*): required for chat styles, ignored by official ones.
        include_demographics (`bool`, defaults to `True`): append ``persona.demographics`` after
            the PAIR block when present. This is the official eval behaviour; in the training
            wording it is alignx's choice (the released ``format_data.py`` never shows
            demographics, but the paper's P_DEMO results imply training saw them). Pass `False`
            to reproduce the released training data exactly.
    """
    t = get_template(style)
    history = persona_text(persona, include_demographics=include_demographics)
    body = _user_body(t.wording, prompt, (t.wording.ica_header, history))
    return t.render(t.wording.ica_system, body, tokenizer)


def build_pba_prompt(prompt: str, profile: str, *, style: str = "official-eval",
                     tokenizer: Any = None) -> str:
    """Preference-bridged alignment prompt: a textual preference profile goes in the user turn.

    Args:
        prompt (`str`): the post to respond to.
        profile (`str`): the verbalised preferences, e.g. ``preferences.get_profile(...)``.
        style (`str`, defaults to `"official-eval"`): a registered template name.
        tokenizer (*optional*): required for chat styles, ignored by official ones.
    """
    t = get_template(style)
    body = _user_body(t.wording, prompt, (t.wording.pba_header, profile))
    return t.render(t.wording.pba_system, body, tokenizer)


def build_universal_prompt(prompt: str, *, style: str = "official-eval",
                           tokenizer: Any = None) -> str:
    """alignx's own no-persona prompt: the chosen wording with the persona section removed.

    Args:
        prompt (`str`): the post to respond to.
        style (`str`, defaults to `"official-eval"`): a registered template name.
        tokenizer (*optional*): required for chat styles, ignored by official ones.
    """
    t = get_template(style)
    return t.render(t.wording.universal_system, _user_body(t.wording, prompt, None), tokenizer)


def build_prompt(method: str, prompt: str, *, persona: Persona | None = None,
                 profile: str | None = None, style: str = "official-eval", tokenizer: Any = None,
                 include_demographics: bool = True) -> str:
    """Dispatch to the ICA, PBA or universal builder.

    Args:
        method (`str`): one of ``"ica"``, ``"pba"``, ``"universal"``.
        prompt (`str`): the post to respond to.
        persona (`Persona`, *optional*): required for ICA. For PBA without ``profile``, the
            profile is ``persona.profile()``: the persona's own direction, else the official
            ``get_profile`` over its items' directions (items without one are skipped).
        profile (`str`, *optional*): the PBA profile; takes precedence over ``persona``.
        style, tokenizer, include_demographics: as in the individual builders.
    """
    if method == "ica":
        if persona is None:
            raise ValueError("method='ica' needs persona=Persona(...).")
        return build_ica_prompt(prompt, persona, style=style, tokenizer=tokenizer,
                                include_demographics=include_demographics)
    if method == "pba":
        if profile is None:
            profile = _profile_from_persona(persona)
        return build_pba_prompt(prompt, profile, style=style, tokenizer=tokenizer)
    if method == "universal":
        return build_universal_prompt(prompt, style=style, tokenizer=tokenizer)
    raise ValueError(f"Unknown method {method!r}; valid methods: {', '.join(METHODS)}")


def _profile_from_persona(persona: Persona | None) -> str:
    profile = None if persona is None else persona.profile()
    if profile is None:
        raise ValueError(
            "method='pba' needs profile=... or a persona with preference directions (its own "
            "'Preference Direction' or its items'); benchmark records ship a precomputed `profile`."
        )
    return profile


# ---------------------------------------------------------------------------------------------
# `python -m alignx.prompts`: print every template for a small example, for a human to read.

EXAMPLE_PROMPT = "Can you recommend a good book for a long flight?"
EXAMPLE_PROFILE = "Young, High Openness, Likes knowledge"
EXAMPLE_PERSONA = Persona(
    ugc=[UGCItem("What is your favourite way to spend a rainy Sunday?",
                 "Curled up with a mystery novel and a pot of tea.")],
    pairs=[PairItem("Any tips for a first marathon?",
                    "Train slowly, build mileage gradually and rest well before race day.",
                    "Run as fast as you can from the start.")],
    demographics="A young teacher with high openness who values efficiency and likes reading.",
)


class _ShowMessages:
    """Demo stand-in for a tokenizer: shows the chat messages instead of a model's template."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"[{m['role']}]\n{m['content']}\n" for m in messages) + "[assistant]"


def main() -> None:
    """Print every registered template for the example persona (chat ones as raw messages)."""
    for name in list_templates():
        tok = _ShowMessages() if get_template(name).render is render_chat else None
        for method in METHODS:
            print(f"==================== {name} / {method} ====================")
            print(build_prompt(method, EXAMPLE_PROMPT, persona=EXAMPLE_PERSONA,
                               profile=EXAMPLE_PROFILE, style=name, tokenizer=tok))
            print()


if __name__ == "__main__":
    main()
