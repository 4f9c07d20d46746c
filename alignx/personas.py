"""Personas for the app: the shipped examples, table rows for editing, and deriving a vector.

The persona builder edits a persona as two tables (UGC items: post, comment, direction; PAIR
items: post, chosen, rejected, direction) plus a demographic text. A direction is written as
profile labels ("Likes humor, Concise communication style"), parsed with
`alignx.preferences.parse_profile`, so a 90-number list never has to be typed by hand.

Usage::

    from alignx import personas
    examples = personas.load_examples()                 # {"outdoor-guide": Persona, ...}
    ugc_rows, pair_rows = personas.persona_to_rows(examples["outdoor-guide"])
    persona, warnings = personas.persona_from_rows(ugc_rows, pair_rows, "A chef.", "")
    vector = personas.derive_vector(persona)             # 90 floats, or None
    vector, confidence = personas.derive(persona, "inferred")  # inferred from the texts

Pure: stdlib, numpy and the other pure alignx modules only ("inferred" imports
`alignx.explore.inference`, and through it the embedding model, on its first call).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable

import numpy as np

from alignx.preferences import N_DIMS, NEUTRAL, parse_profile, validate_vector, verbalize
from alignx.schema import PairItem, Persona, UGCItem, load_persona

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "personas"
UGC_HEADERS = ["post", "comment", "direction (profile labels)"]
PAIR_HEADERS = ["post", "chosen", "rejected", "direction (profile labels)"]
ALL_NEUTRAL = "(all neutral)"


# ---------------------------------------------------------------------------- examples


def list_examples(folder: str | os.PathLike | None = None) -> list[str]:
    """Names (file stems) of the example personas in ``folder``, sorted."""
    folder = Path(folder) if folder is not None else EXAMPLES_DIR
    return sorted(p.stem for p in folder.glob("*.json"))


def load_examples(folder: str | os.PathLike | None = None) -> dict[str, Persona]:
    """Load every ``*.json`` persona in ``folder`` (default: ``assets/personas``), by name.

    Raises:
        SchemaError: a file is not a valid persona (names the file and the field).
    """
    folder = Path(folder) if folder is not None else EXAMPLES_DIR
    return {name: load_persona(folder / f"{name}.json") for name in list_examples(folder)}


def title(name: str) -> str:
    """A display title for an example name: "outdoor-guide" -> "Outdoor guide"."""
    return name.replace("-", " ").replace("_", " ").capitalize()


def dumps(data) -> str:
    """JSON text with 2-space indents but every list of numbers on one line (a 90-dim direction
    takes one line, not 90), as the files in assets/personas are written."""
    text = json.dumps(data, ensure_ascii=False, indent=2)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


_NUMBER_LIST = re.compile(r"\[\s*\n\s*([-0-9.eE+,\s]+?)\s*\]")


# ---------------------------------------------------------------------------- directions as text


def direction_to_text(direction) -> str:
    """A direction as editable text: "" for none, the profile labels for a 1 / 0 / 0.5 vector,
    `ALL_NEUTRAL` for an all-0.5 one, and a JSON list for any other (continuous) vector."""
    if direction is None:
        return ""
    v = validate_vector(direction, what="direction")
    if np.all(v == NEUTRAL):
        return ALL_NEUTRAL
    if np.all((v == 0) | (v == 1) | (v == NEUTRAL)):
        return verbalize(v)
    return json.dumps([float(x) for x in v])


def direction_from_text(text: str | None, *, what: str = "direction") -> tuple[float, ...] | None:
    """Parse `direction_to_text` output back: labels, `ALL_NEUTRAL`, a JSON list, or "" (none).

    Raises:
        ValueError: unknown labels (with a "did you mean" hint) or a malformed list, prefixed
            with ``what``.
    """
    text = (text or "").strip()
    if not text:
        return None
    if text == ALL_NEUTRAL:
        return (NEUTRAL,) * N_DIMS
    try:
        if text.startswith("["):
            return tuple(validate_vector(json.loads(text), what=what).tolist())
        return tuple(float(x) for x in parse_profile(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not a valid JSON list ({exc.msg})") from exc
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(what) else f"{what}: {message}") from exc


# ---------------------------------------------------------------------------- table rows


def persona_to_rows(persona: Persona) -> tuple[list[list[str]], list[list[str]]]:
    """The persona's items as table rows: UGC ``[post, comment, direction]`` and PAIR
    ``[post, chosen, rejected, direction]``."""
    ugc = [[u.prompt, u.comment, direction_to_text(u.direction)] for u in persona.ugc]
    pairs = [[p.prompt, p.chosen, p.rejected, direction_to_text(p.direction)] for p in persona.pairs]
    return ugc, pairs


def _cells(row, width: int) -> list[str]:
    cells = ["" if c is None else str(c) for c in list(row)[:width]]
    return cells + [""] * (width - len(cells))


def persona_from_rows(ugc_rows, pair_rows, demographics: str | None = None,
                      direction: str | None = None) -> tuple[Persona, list[str]]:
    """Build a persona from edited table rows.

    Blank rows are dropped. A row with some text but a required cell empty is left out with a
    warning (the user is probably still typing); a bad direction is an error.

    Args:
        ugc_rows: rows of ``[post, comment, direction]`` (extra cells ignored, missing ones "").
        pair_rows: rows of ``[post, chosen, rejected, direction]``.
        demographics (`str`, *optional*): the demographic description; blank means none.
        direction (`str`, *optional*): the persona's own direction, as in `direction_from_text`.

    Returns:
        `(Persona, warnings)`: the persona, and one message per row that was left out.

    Raises:
        ValueError: a direction that does not parse, naming the item ("UGC item 2: ...").
    """
    warnings: list[str] = []
    ugc, pairs = [], []
    for i, row in enumerate(ugc_rows or [], 1):
        post, comment, dtext = (c.strip() for c in _cells(row, 3))
        if not (post or comment or dtext):
            continue
        missing = [n for n, c in (("post", post), ("comment", comment)) if not c]
        if missing:
            warnings.append(f"UGC item {i} is left out: its {' and '.join(missing)} is empty.")
            continue
        ugc.append(UGCItem(post, comment, direction_from_text(dtext, what=f"UGC item {i} direction")))
    for i, row in enumerate(pair_rows or [], 1):
        post, chosen, rejected, dtext = (c.strip() for c in _cells(row, 4))
        if not (post or chosen or rejected or dtext):
            continue
        missing = [n for n, c in (("post", post), ("chosen", chosen), ("rejected", rejected)) if not c]
        if missing:
            warnings.append(f"Pair item {i} is left out: its {' and '.join(missing)} is empty.")
            continue
        pairs.append(PairItem(post, chosen, rejected,
                              direction_from_text(dtext, what=f"Pair item {i} direction")))
    demo = (demographics or "").strip() or None
    own = direction_from_text(direction, what="Persona direction")
    return Persona(ugc=ugc, pairs=pairs, demographics=demo, direction=own), warnings


# ---------------------------------------------------------------------------- deriving a vector

def _inferred(persona: Persona):
    from alignx.explore import inference  # the embedding model loads on the first call

    return inference.infer(persona)


# How "Derive from persona" turns a persona into a 90-dim preference vector. "directions" uses
# the directions the persona already carries (its own, else the mean of its items'). "inferred"
# infers the vector from the persona's texts (`alignx.explore.inference`), with a confidence per
# dimension. A deriver returns a vector, `None`, or an object with ``vector`` and ``confidence``.
# Each method registers here under its own name, and the app lists every registered method.
DERIVERS: dict[str, Callable[[Persona], object]] = {
    "directions": Persona.preference_vector,
    "inferred": _inferred,
}


def register_deriver(name: str, fn: Callable[[Persona], np.ndarray | None]) -> None:
    """Add a way to derive a vector from a persona. Raises `ValueError` for a taken name."""
    if name in DERIVERS:
        raise ValueError(f"a deriver named {name!r} is already registered")
    DERIVERS[name] = fn


def derive(persona: Persona, method: str = "directions") -> tuple[list[float] | None, list[float] | None]:
    """The 90-float preference vector a persona implies, and the method's per-dimension
    confidence (`None` for methods that give none, such as "directions").

    Args:
        persona (`Persona`): the persona.
        method (`str`, defaults to `"directions"`): a name in `DERIVERS`.

    Returns:
        `(vector, confidence)`; ``(None, None)`` when the persona carries no signal for the method.

    Raises:
        KeyError: an unknown method; the message lists the registered ones.
    """
    try:
        fn = DERIVERS[method]
    except KeyError:
        raise KeyError(f"unknown derive method {method!r}; registered: {', '.join(DERIVERS)}") from None
    result = fn(persona)
    if result is None:
        return None, None
    confidence = getattr(result, "confidence", None)
    vector = getattr(result, "vector", result)
    vector = [float(x) for x in validate_vector(vector)]
    if confidence is not None:
        confidence = [float(x) for x in validate_vector(confidence, what="confidence")]
    return vector, confidence


def derive_vector(persona: Persona, method: str = "directions") -> list[float] | None:
    """The 90-float preference vector a persona implies, or `None` when it carries no signal
    (`derive` without the confidence)."""
    return derive(persona, method)[0]


__all__ = [
    "ALL_NEUTRAL", "DERIVERS", "EXAMPLES_DIR", "PAIR_HEADERS", "UGC_HEADERS",
    "derive", "derive_vector", "direction_from_text", "direction_to_text", "dumps", "list_examples", "load_examples",
    "persona_from_rows", "persona_to_rows", "register_deriver", "title",
]
