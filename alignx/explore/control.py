"""Controllability studies: change one preference and measure what changes in the model.

Two studies, both scored with `Backbone.score` and with chosen-vs-rejected margins computed by
`alignx.learn.evaluate.evaluate` itself (the paper's implicit reward against the adapter-free ICA
prompt when the method's adapter is loaded, else the log-likelihood), so every margin here is one
that ``alignx eval --per-example`` would print for the same prompt.

**Sweep** (`sweep`): take a persona or a 90-dim vector, one or more dimensions and the values to
sweep (e.g. 0 / 0.5 / 1). Each *condition* sets the swept dimension(s) to one value:

- PBA sees the profile of the edited vector (`alignx.preferences.profile_from_vector`, the
  official 0.6 / 0.4 thresholds and fallback).
- ICA sees an *edited persona* (`edit_persona`). ICA reads raw history, not a vector, so the edit
  changes what the history shows for the swept dimension, at the same thresholds (value >= 0.6
  means the positive pole, <= 0.4 the negative pole, else neutral):
  ``items``: a pair item whose own direction is decisive on the dimension and disagrees with the
  pole gets its chosen and rejected exchanged (the user now picked the other answer); such a UGC
  item is dropped; for a neutral value every item decisive on the dimension is dropped.
  ``demographics``: the sentence "Stated preference: <label>." is appended to the demographic text
  (nothing for a neutral value). ``both`` (the default) does both. The persona's own direction gets
  the value too (bookkeeping; ICA does not show it).

Measured per target (a dimension, or ``joint`` when all swept dimensions move together) and method:

- the **output grid**: the text generated for every (condition, prompt), with its length and
  Flesch reading ease (`textstat`, offline; sentiment is not reported: no maintained offline
  library gives it);
- the **probe log-probability shift**: for each prompt, a positive-pole and a negative-pole
  response (given per dimension with ``probes``, else the texts generated at the highest and the
  lowest swept value) are scored under every condition; ``log_ratio = log p(pos) - log p(neg)``
  and its shift from the lowest value. The reference term of an implicit reward is the same for
  every condition, so raw policy log-probabilities are used;
- the **preference flip rate** on benchmark pairs (``pairs``): each pair's margin under every
  condition; a pair flips when its margin has the other sign at the highest value than at the
  lowest.

ICA margins follow `evaluate`'s protocol, whose reference is the base model on the ICA prompt of
the record's persona, here the edited one: an ICA effect is what the ``ica`` adapter adds on top
of the base model's own reading of the edit. PBA's reference keeps the unedited persona.

**Persona swap** (`swap_study`, the issue's P-SOUPS study): on held-out records, give PBA the
profile of a record of the opposite ``ground_truth_persona`` (`alignx.learn.evaluate.swap_partners`)
and report the *directional rate* (the margin moves toward the rejected response) and the *flip
rate* (its sign flips). The same for label edits that keep the record's own profile but turn off
(set to neutral) the labels the partner's profile does not share: all of them at once
(``differing_off``) and one at a time (``single_label``).

    from alignx.explore.control import sweep, run_swap_study
    result = sweep(backbone, persona=persona, dimensions=[73], values=[0, 0.5, 1],
                   prompts=["Any tips for a weekend trip?"], methods=["pba"], pairs=records)
    study = run_swap_study(backbone, "psoups-friendly_unfriendly", "friendly_unfriendly.json",
                           split="psoups_friendly_unfriendly")

Command line (``alignx control sweep|swap``; also ``python -m alignx.explore.control``)::

    alignx control sweep --persona assets/personas/teen-gamer.json --dims 73 --values 0,0.5,1 \\
        --prompt "Any tips for a weekend trip?" --method pba --adapter pba=assets/adapters/pba --report out/
    alignx control swap --data /path/friendly_unfriendly.json --split psoups_friendly_unfriendly \\
        --adapter pba=assets/adapters/pba --threads 1 --out swap.json --report out/

The commands default to ``--precision fp32``: the effects are differences of a few tenths of a
nat between margins, and on the CPU nf4 scores move by up to ~0.2 nats with the batch shape (fp32
scores by ~1e-5). Reports (CSV, JSON and a standalone HTML page with plotly figures):
`alignx.explore.report`.
torch is only imported through the backbone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from alignx.learn.evaluate import clustered_stderr, evaluate, git_commit, pair_key, swap_partners, write_json
from alignx.preferences import (DIMENSIONS, N_DIMS, NEGATIVE, NEGATIVE_THRESHOLD, NEUTRAL, POSITIVE,
                                POSITIVE_THRESHOLD, parse_profile, profile_from_vector, validate_vector, verbalize)
from alignx.schema import PairItem, Persona, Record, persona_from_dict, persona_to_dict

CONTROL_VERSION = "1.0"  # bump when a measured quantity's definition changes
METHODS = ("pba", "ica")
ICA_EDITS = ("both", "items", "demographics")
DEFAULT_VALUES = (0.0, 0.5, 1.0)
VARIANTS = ("swap", "differing_off", "single_label")
STATED = "Stated preference"


class ControlError(ValueError):
    """A sweep or study input is invalid; the message names the input and what is expected."""


# ----------------------------------------------------------------------------- parsing inputs


def parse_dimensions(spec: str | int | Sequence) -> list[int]:
    """Dimension indices from ``"73, 16"``, labels (``"Likes humor"``; either pole), dimension names,
    the app's ``"73 · ..."`` choices, or a list of any of these. Order kept, duplicates dropped.

    Raises:
        ControlError: an empty spec, an index out of 0..89, or an unknown name or label.
    """
    items = [spec] if isinstance(spec, (str, int)) else list(spec or [])
    parts: list = []
    for item in items:
        parts += [p.strip() for p in _split_dims(item)] if isinstance(item, str) else [item]
    by_name = {d.name.lower(): d.index for d in DIMENSIONS}
    by_name.update({lab.lower(): d.index for d in DIMENSIONS for lab in (d.positive_label, d.negative_label)})
    out: list[int] = []
    for part in parts:
        if isinstance(part, bool):
            raise ControlError(f"Dimensions: {part!r} is not a dimension")
        if isinstance(part, str):
            head = part.split("·")[0].split(":")[0].strip()
            if head.isdigit():
                part = int(head)
            elif part.lower() in by_name:
                part = by_name[part.lower()]
            else:
                raise ControlError(f"Dimensions: unknown dimension {part!r}; give an index 0-{N_DIMS - 1}, a "
                                   "dimension name or one of its labels (e.g. 'Likes humor')")
        if not isinstance(part, (int, np.integer)) or not 0 <= int(part) < N_DIMS:
            raise ControlError(f"Dimensions: index must be in 0..{N_DIMS - 1}, got {part!r}")
        if int(part) not in out:
            out.append(int(part))
    if not out:
        raise ControlError("Dimensions: choose at least one dimension to sweep")
    return out


def _split_dims(text: str) -> list[str]:
    """Split on commas, but keep labels that contain commas ("... (neatness, organization, ...)")
    and the app's choices ("23 · Need for Order (...)") whole."""
    text = text.strip()
    if not text:
        return []
    if re.match(r"\d+\s*[·:]", text):
        return [text]
    if any(text.lower() == lab.lower() for d in DIMENSIONS for lab in (d.positive_label, d.negative_label)):
        return [text]
    try:  # a comma-separated list of whole labels
        return [lab for lab, _ in _labels(text)]
    except ValueError:
        return [p for p in text.split(",") if p.strip()]


def _labels(text: str):
    from alignx.preferences import split_profile

    return split_profile(text)


def parse_values(spec: str | Sequence[float]) -> list[float]:
    """Sweep values from ``"0, 0.5, 1"`` or a list; each a number in [0, 1]. Order kept.

    Raises:
        ControlError: not numbers, out of [0, 1], or none.
    """
    items = spec.replace(";", ",").split(",") if isinstance(spec, str) else list(spec or [])
    out = []
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            try:
                item = float(item)
            except ValueError:
                raise ControlError(f"Values: {item.strip()!r} is not a number; give values in [0, 1] "
                                   "such as '0, 0.5, 1'") from None
        if isinstance(item, bool) or not isinstance(item, (int, float, np.floating, np.integer)) \
                or not math.isfinite(item) or not 0.0 <= float(item) <= 1.0:
            raise ControlError(f"Values: each value must be a number in [0, 1], got {item!r}")
        if float(item) not in out:
            out.append(float(item))
    if not out:
        raise ControlError("Values: give at least one value in [0, 1], e.g. '0, 0.5, 1'")
    return out


def parse_prompts(spec: str | Sequence[str]) -> list[str]:
    """Prompts from text (one per line) or a list; blank lines are dropped.

    Raises:
        ControlError: no prompt at all.
    """
    items = spec.splitlines() if isinstance(spec, str) else list(spec or [])
    out = [p.strip() for p in items if isinstance(p, str) and p.strip()]
    if len(out) != len([p for p in items if not (isinstance(p, str) and not p.strip())]):
        raise ControlError("Prompts: every prompt must be text")
    if not out:
        raise ControlError("Prompts: give at least one prompt (one per line)")
    return out


def parse_methods(spec: str | Sequence[str]) -> list[str]:
    """Methods from ``"pba, ica"`` or a list; each ``pba`` or ``ica``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or [])
    out = []
    for m in (str(x).strip().lower() for x in items):
        if not m:
            continue
        if m not in METHODS:
            raise ControlError(f"Methods: unknown method {m!r}; choose from {', '.join(METHODS)} (universal "
                               "sees no persona, so there is nothing to sweep)")
        if m not in out:
            out.append(m)
    if not out:
        raise ControlError("Methods: choose pba, ica or both")
    return out


def parse_pairs(spec) -> list[Record]:
    """Benchmark pairs: a JSON list (text, or a list) of objects with ``prompt``, ``chosen`` and
    ``rejected`` (other keys ignored), or `Record` objects. Blank = no pairs.

    Raises:
        ControlError: not JSON, not a list, or an item without the three texts (names the item).
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return []
    spec = _json_spec(spec, "Pairs are")
    if not isinstance(spec, list):
        raise ControlError("Pairs: expected a JSON list of {\"prompt\", \"chosen\", \"rejected\"} objects")
    out = []
    for i, item in enumerate(spec):
        if isinstance(item, Record):
            out.append(Record(prompt=item.prompt, chosen=item.chosen, rejected=item.rejected))
            continue
        if not isinstance(item, Mapping):
            raise ControlError(f"Pairs: item {i} is not an object")
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ControlError(f"Pairs: item {i} needs a non-empty {key!r} text")
        out.append(Record(prompt=item["prompt"], chosen=item["chosen"], rejected=item["rejected"]))
    return out


def _json_spec(spec, what: str):
    """``spec`` parsed from JSON text (anything else as is); ``what`` starts the error message."""
    if not isinstance(spec, str):
        return spec
    try:
        return json.loads(spec)
    except json.JSONDecodeError as exc:
        raise ControlError(f"{what} not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def parse_probes(spec) -> dict[int, tuple[str, str]]:
    """Pole-specific probe responses: ``{dimension: {"positive": text, "negative": text}}`` (JSON
    text or a dict; a dimension may be an index or a label). Blank = none.

    Raises:
        ControlError: not JSON, or an entry without both texts.
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return {}
    spec = _json_spec(spec, "Probes are")
    if not isinstance(spec, Mapping):
        raise ControlError('Probes: expected {"<dimension>": {"positive": "...", "negative": "..."}}')
    out = {}
    for key, value in spec.items():
        dim = parse_dimensions(str(key))[0]
        if isinstance(value, (list, tuple)) and len(value) == 2:
            value = {"positive": value[0], "negative": value[1]}
        if not isinstance(value, Mapping) or not all(isinstance(value.get(k), str) and value[k].strip()
                                                    for k in ("positive", "negative")):
            raise ControlError(f"Probes: dimension {key!r} needs non-empty 'positive' and 'negative' texts")
        out[dim] = (value["positive"], value["negative"])
    return out


# ----------------------------------------------------------------------------- edits


def pole(value: float) -> float:
    """The ternary reading of a value at the profile thresholds (float32, as `ternarize`)."""
    v = float(np.float32(value))
    return POSITIVE if v >= POSITIVE_THRESHOLD else NEGATIVE if v <= NEGATIVE_THRESHOLD else NEUTRAL


def edit_vector(vector, dimensions: Sequence[int], value: float) -> list[float]:
    """A copy of ``vector`` with every one of ``dimensions`` set to ``value``."""
    out = [float(x) for x in validate_vector(vector)]
    for d in dimensions:
        out[d] = float(value)
    return out


def _with_dims(direction, dims: Sequence[int], value: float) -> tuple[float, ...]:
    d = list(direction)
    for i in dims:
        d[i] = value
    return tuple(d)


def edit_persona(persona: Persona, dimensions: Sequence[int], value: float, mode: str = "both") -> Persona:
    """The ICA edit: a copy of ``persona`` whose visible history reflects ``value`` on ``dimensions``.

    Args:
        persona (`Persona`): the persona to edit (not modified).
        dimensions (`Sequence[int]`): the swept dimensions.
        value (`float`): read at the profile thresholds: >= 0.6 positive pole, <= 0.4 negative, else
            neutral.
        mode (`str`, defaults to `"both"`): ``"items"`` (pair items decisive on a dimension and
            disagreeing with the pole get chosen and rejected exchanged, such UGC items are dropped;
            a neutral value drops every item decisive on a dimension), ``"demographics"`` (append
            "Stated preference: <label>." for a decisive value) or ``"both"``.

    Returns:
        `Persona`: the edited copy; its own ``direction`` (when it has one) carries ``value`` on the
        dimensions.
    """
    if mode not in ICA_EDITS:
        raise ControlError(f"ICA edit: unknown mode {mode!r}; choose one of {', '.join(ICA_EDITS)}")
    target = pole(value)
    ugc, pairs = list(persona.ugc), list(persona.pairs)
    if mode in ("items", "both"):
        def decisive(item) -> list[int]:
            return [] if item.direction is None else [d for d in dimensions if item.direction[d] != NEUTRAL]

        ugc = [u for u in ugc if not any(target == NEUTRAL or u.direction[d] != target for d in decisive(u))]
        kept = []
        for p in pairs:
            dims = decisive(p)
            if dims and target == NEUTRAL:
                continue
            if any(p.direction[d] != target for d in dims):  # the user now picked the other answer
                flipped = tuple(1.0 - x if i in dims else x for i, x in enumerate(p.direction))
                p = PairItem(prompt=p.prompt, chosen=p.rejected, rejected=p.chosen, direction=flipped)
            kept.append(p)
        pairs = kept
    demographics = persona.demographics
    if mode in ("demographics", "both") and target != NEUTRAL:
        labels = "; ".join(DIMENSIONS[d].label(target) for d in dimensions)
        sentence = f"{STATED if len(dimensions) == 1 else STATED + 's'}: {labels}."
        demographics = f"{demographics.rstrip()} {sentence}" if demographics and demographics.strip() else sentence
    direction = None if persona.direction is None else _with_dims(persona.direction, dimensions, value)
    return Persona(ugc=ugc, pairs=pairs, demographics=demographics, direction=direction)


# ----------------------------------------------------------------------------- margins


def margins(backbone, records: Sequence[Record], method: str, *, beta: float = 0.1, batch_size: int = 8,
            chunk_size: int | None = None, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict]:
    """Chosen-vs-rejected margins ``reward(chosen) - reward(rejected)``, one per record, exactly as
    `alignx.learn.evaluate.evaluate` computes them (PBA reads each record's ``profile``).

    Returns:
        (`np.ndarray` of margins, `evaluate`'s summary without its per-example rows).
    """
    if not records:
        return np.zeros(0), {}
    out = evaluate(backbone, records, method=method, beta=beta, profile_source="given", per_example=True,
                   batch_size=batch_size, chunk_size=chunk_size, progress=progress)
    examples = out.pop("examples")
    return np.array([e["rewards/chosen"] - e["rewards/rejected"] for e in examples], dtype=np.float64), out


def _rate(mask) -> float | None:
    mask = np.asarray(mask, dtype=bool)
    return float(mask.mean()) if mask.size else None


def flips(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Which margins changed sign strictly (> 0 to < 0 or < 0 to > 0); reaching 0 is no flip."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    return ((before > 0) & (after < 0)) | ((before < 0) & (after > 0))


def flip_stats(before: np.ndarray, after: np.ndarray, clusters: Sequence | None = None) -> dict:
    """How margins moved from ``before`` (e.g. the true profile) to ``after`` (an edit).

    ``clusters`` (one key per margin, e.g. `pair_key` of its record) adds the cluster-robust
    standard errors of the two rates (`alignx.learn.evaluate.clustered_stderr`): records that ask
    about the same pair tend to move together, so the rates are less certain than their n suggests.

    Returns:
        `dict`: ``n``; ``directional_rate`` (after < before: toward the rejected response);
        ``flip_rate`` (the sign changes strictly, see `flips`); ``flip_to_rejected_rate`` (of the pairs with
        before > 0, the share with after < 0); ``accuracy_before`` / ``accuracy_after`` (margin > 0);
        ``mean_delta`` and ``median_delta`` of after - before; with ``clusters``, ``n_clusters``,
        ``directional_rate_stderr`` and ``flip_rate_stderr``.
    """
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    delta = after - before
    right = before > 0
    stderr = {}
    if clusters is not None:
        clusters = list(clusters)
        stderr = {"n_clusters": len(set(clusters)),
                  "directional_rate_stderr": clustered_stderr(delta < 0, clusters) if delta.size else None,
                  "flip_rate_stderr": clustered_stderr(flips(before, after), clusters) if delta.size else None}
    return {
        "n": int(before.size),
        "directional_rate": _rate(delta < 0),
        "flip_rate": _rate(flips(before, after)),
        "flip_to_rejected_rate": _rate(after[right] < 0) if right.any() else None,
        "accuracy_before": _rate(right),
        "accuracy_after": _rate(after > 0),
        "mean_delta": float(delta.mean()) if delta.size else None,
        "median_delta": float(np.median(delta)) if delta.size else None,
        **stderr,
    }


# ----------------------------------------------------------------------------- text statistics


def text_stats(text: str) -> dict:
    """Words, characters and (when `textstat` is installed) the Flesch reading ease of a text."""
    words = len(text.split())
    out = {"words": words, "chars": len(text), "flesch_reading_ease": None}
    if words:
        try:
            import textstat
        except ImportError:
            return out
        out["flesch_reading_ease"] = round(float(textstat.flesch_reading_ease(text)), 3)
    return out


# ----------------------------------------------------------------------------- sweep


@dataclasses.dataclass(frozen=True)
class Condition:
    """One cell of a sweep: the target's dimensions set to ``value`` for ``method``."""

    target: str
    dimensions: tuple[int, ...]
    value: float
    method: str
    persona: Persona
    profile: str | None

    def prompt(self, backbone, text: str) -> str:
        return backbone.build_prompt(self.method, text, persona=self.persona, profile=self.profile)


def _targets(dimensions: Sequence[int], joint: bool) -> list[tuple[str, tuple[int, ...]]]:
    if joint and len(dimensions) > 1:
        return [("joint", tuple(dimensions))]
    return [(str(d), (d,)) for d in dimensions]


def _base(persona: Persona | None, vector) -> tuple[Persona, list[float]]:
    persona = persona if persona is not None else Persona()
    if vector is None:
        own = persona.preference_vector()
        vector = [NEUTRAL] * N_DIMS if own is None else own
    try:
        return persona, [float(x) for x in validate_vector(vector, what="Vector")]
    except ValueError as exc:
        raise ControlError(f"{exc}") from exc


def sweep_settings(*, persona: Persona | Mapping | None = None, vector=None, dimensions, values=DEFAULT_VALUES,
                   prompts, methods=("pba",), pairs=(), probes=None, joint: bool = False, ica_edit: str = "both",
                   max_new_tokens: int = 48, temperature: float = 0.0, seed: int = 0, beta: float = 0.1,
                   batch_size: int = 8) -> dict:
    """Validate a sweep's arguments without touching a model (see `sweep` for their meaning).

    Returns:
        `dict`: the normalised, JSON-serialisable arguments (persona as an AlignX dict, the base
        vector, dimension indices, values, prompts, methods, pairs and probes as plain objects, ...);
        ``sweep(backbone, **settings)`` runs exactly this sweep.

    Raises:
        ControlError: the first bad argument, named.
    """
    if isinstance(persona, Mapping):
        try:
            persona = persona_from_dict(persona, source="persona")
        except ValueError as exc:
            raise ControlError(f"Persona is not valid: {exc}") from exc
    persona, base = _base(persona, vector)
    methods = parse_methods(methods)
    if ica_edit not in ICA_EDITS:
        raise ControlError(f"ICA edit: unknown mode {ica_edit!r}; choose one of {', '.join(ICA_EDITS)}")
    if "ica" in methods and ica_edit == "items" and not (persona.ugc or persona.pairs):
        raise ControlError("ICA with ica_edit='items' needs a persona with UGC or pair items")
    numbers = {"max_new_tokens": (max_new_tokens, 1, 2048), "temperature": (temperature, 0.0, 5.0),
               "seed": (seed, 0, 2**63 - 1), "beta": (beta, 1e-9, 1e9), "batch_size": (batch_size, 1, 4096)}
    for name, (value, low, high) in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value) or not low <= value <= high:
            raise ControlError(f"{name.replace('_', ' ').capitalize()}: expected a number from {low} to {high}, "
                               f"got {value!r}")
        if name in ("max_new_tokens", "seed", "batch_size") and not float(value).is_integer():
            raise ControlError(f"{name.replace('_', ' ').capitalize()}: expected a whole number, got {value!r}")
    return {
        "persona": persona_to_dict(persona), "vector": base, "dimensions": parse_dimensions(dimensions),
        "values": parse_values(values), "prompts": parse_prompts(prompts), "methods": methods,
        "pairs": [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected}
                  for r in parse_pairs(pairs if isinstance(pairs, str) else list(pairs or []))],
        "probes": {str(d): {"positive": p, "negative": n} for d, (p, n) in parse_probes(probes).items()},
        "joint": bool(joint), "ica_edit": ica_edit, "max_new_tokens": int(max_new_tokens),
        "temperature": float(temperature), "seed": int(seed), "beta": float(beta), "batch_size": int(batch_size),
    }


def sweep(backbone, *, progress: Callable[[str, float], None] | None = None, **kwargs) -> dict:
    """Sweep preference dimensions and measure the effect on generations, probes and pairs.

    Args:
        backbone (`Backbone`): the model; the ``pba`` / ``ica`` adapters serve their methods when loaded.
        persona (`Persona` or AlignX dict, *optional*): the persona ICA edits (and the reference of
            the pair margins); default: an empty persona.
        vector (90 floats, *optional*): the base vector PBA edits; default: the persona's own vector
            (`Persona.preference_vector`), else all 0.5.
        dimensions: indices, labels or names (see `parse_dimensions`).
        values (defaults to 0 / 0.5 / 1): the values to sweep, each in [0, 1].
        prompts: the prompt set (at least one).
        methods (defaults to ``("pba",)``): ``pba`` and / or ``ica``.
        pairs (*optional*): benchmark pairs for the flip rate (see `parse_pairs`); their own personas
            are ignored, the sweep's persona is the user.
        probes (*optional*): ``{dimension: (positive_text, negative_text)}`` (see `parse_probes`);
            default: the texts generated at the highest and lowest value.
        joint (`bool`): move all dimensions together (one target ``joint``) instead of one at a time.
        ica_edit (`str`, defaults to `"both"`): how ICA personas are edited (see `edit_persona`).
        max_new_tokens (defaults to 48), temperature (0 = greedy), seed: decoding of the output grid.
        beta (`float`, defaults to 0.1): the implicit reward's β.
        batch_size (`int`, defaults to 8): rows per forward pass.
        progress (*optional*): called as ``progress(stage, fraction)``.

    Returns:
        `dict` (JSON-serialisable): ``settings`` (the exact arguments: ``sweep(backbone,
        **settings)`` reruns it), ``config`` (backbone, adapters, versions, git commit, timing),
        ``conditions``, ``grid`` (one row per generation, with text statistics), ``probes``,
        ``pairs`` (one row per pair and condition) and ``effects`` (one row per target and method).

    Raises:
        ControlError: a bad argument (see `sweep_settings`), or prompts too long for the backbone.
    """
    t0 = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    settings = sweep_settings(**kwargs)
    persona, base = persona_from_dict(settings["persona"]), settings["vector"]
    dims, values, prompts, methods = (settings[k] for k in ("dimensions", "values", "prompts", "methods"))
    pair_records = parse_pairs(settings["pairs"])
    probe_texts = parse_probes(settings["probes"])
    joint, ica_edit, batch_size = settings["joint"], settings["ica_edit"], settings["batch_size"]
    max_new_tokens, temperature, seed, beta = (settings[k] for k in ("max_new_tokens", "temperature", "seed", "beta"))

    # Conditions: target x value x method.
    conditions: list[Condition] = []
    for target, tdims in _targets(dims, joint):
        for method in methods:
            for value in values:
                if method == "pba":
                    conditions.append(Condition(target, tdims, value, method, persona,
                                                profile_from_vector(edit_vector(base, tdims, value))))
                else:
                    conditions.append(Condition(target, tdims, value, method,
                                                edit_persona(persona, tdims, value, ica_edit), None))

    # 1. The output grid: one generation per (condition, prompt), batched per method.
    report("generating", 0.0)
    cells = [(c, p) for c in conditions for p in range(len(prompts))]
    texts: dict[tuple[int, int], str] = {}
    try:
        for method in methods:
            todo = [(ci, p) for ci, c in enumerate(conditions) if c.method == method for p in range(len(prompts))]
            adapter = backbone.adapter_for(method)
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                outs = backbone.generate([conditions[ci].prompt(backbone, prompts[p]) for ci, p in chunk],
                                         [adapter] * len(chunk), max_new_tokens=max_new_tokens,
                                         temperature=temperature, seed=seed)
                texts.update(zip(chunk, outs))
                report("generating", len(texts) / max(len(cells), 1))
    except ValueError as exc:  # a prompt too long for the context, a bad adapter name
        raise ControlError(str(exc)) from exc
    grid = []
    for ci, c in enumerate(conditions):
        for p, prompt in enumerate(prompts):
            grid.append({"target": c.target, "dimensions": list(c.dimensions), "value": c.value, "method": c.method,
                         "pole": _pole_name(c.value), "prompt_index": p, "prompt": prompt,
                         "profile": c.profile, "text": texts[(ci, p)], **text_stats(texts[(ci, p)])})

    # 2. Probes: pole-specific responses scored under every condition of their target / method.
    report("scoring probes", 0.0)
    lo, hi = min(values), max(values)
    index = {(c.target, c.method, c.value): ci for ci, c in enumerate(conditions)}
    probe_rows, rows_p, rows_r, rows_a = [], [], [], []
    for ci, c in enumerate(conditions):
        for p, prompt in enumerate(prompts):
            if len(c.dimensions) == 1 and c.dimensions[0] in probe_texts:
                pos, neg = probe_texts[c.dimensions[0]]
                source = "given"
            else:
                pos = texts[(index[(c.target, c.method, hi)], p)]
                neg = texts[(index[(c.target, c.method, lo)], p)]
                source = "generated"
            policy = c.prompt(backbone, prompt)
            probe_rows.append({"target": c.target, "method": c.method, "value": c.value, "prompt_index": p,
                               "probe_source": source, "positive": pos, "negative": neg})
            rows_p += [policy, policy]
            rows_r += [pos, neg]
            rows_a += [backbone.adapter_for(c.method)] * 2
    if probe_rows:
        scores = backbone.score(rows_p, rows_r, rows_a, batch_size=batch_size)
        for k, row in enumerate(probe_rows):
            row["logp_positive"], row["logp_negative"] = float(scores[2 * k]), float(scores[2 * k + 1])
            row["log_ratio"] = row["logp_positive"] - row["logp_negative"]
        base_ratio = {(r["target"], r["method"], r["prompt_index"]): r["log_ratio"]
                      for r in probe_rows if r["value"] == lo}
        for row in probe_rows:
            row["shift"] = row["log_ratio"] - base_ratio[(row["target"], row["method"], row["prompt_index"])]

    # 3. Pairs: margins under every condition (one `evaluate` call per method).
    report("scoring pairs", 0.0)
    pair_rows = []
    evaluation = {}
    for method in methods:
        mconds = [c for c in conditions if c.method == method]
        records = [Record(prompt=r.prompt, chosen=r.chosen, rejected=r.rejected, persona=c.persona,
                          profile=c.profile) for c in mconds for r in pair_records]
        if not records:
            continue
        try:
            m, summary = margins(backbone, records, method, beta=beta, batch_size=batch_size)
        except ValueError as exc:
            raise ControlError(str(exc)) from exc
        evaluation[method] = {k: summary.get(k) for k in ("metric", "eval_version")} | {
            "reference": summary["config"].get("reference"), "policy_adapter": summary["config"].get("policy_adapter")}
        for k, (c, (i, r)) in enumerate((c, ir) for c in mconds for ir in enumerate(pair_records)):
            pair_rows.append({"target": c.target, "method": method, "value": c.value, "pair_index": i,
                              "prompt": r.prompt, "margin": float(m[k])})
        report("scoring pairs", 1.0)

    effects = _effects(conditions, grid, probe_rows, pair_rows, values)
    info = backbone.info()
    from alignx import __version__

    return {
        "kind": "sweep",
        "settings": settings,
        "config": {"backbone": info, "backbone_config": dataclasses.asdict(backbone.config),
                   "adapters": info.get("adapters", {}),
                   "policy_adapters": {m: backbone.adapter_for(m) for m in methods}, "evaluation": evaluation,
                   "control_version": CONTROL_VERSION, "alignx_version": __version__, "git_commit": git_commit(),
                   "seed": int(seed), "seconds": round(time.perf_counter() - t0, 3)},
        "conditions": [{"target": c.target, "dimensions": list(c.dimensions), "value": c.value, "method": c.method,
                        "pole": _pole_name(c.value), "profile": c.profile,
                        "persona_edit": None if c.method != "ica" else _edit_summary(persona, c.persona)}
                       for c in conditions],
        "grid": grid, "probes": probe_rows, "pairs": pair_rows, "effects": effects,
    }


def _pole_name(value: float) -> str:
    return {POSITIVE: "positive", NEGATIVE: "negative"}.get(pole(value), "neutral")


def _edit_summary(before: Persona, after: Persona) -> dict:
    swapped = sum(1 for a, b in zip(after.pairs, before.pairs) if a.chosen == b.rejected and a.rejected == b.chosen
                  and a.chosen != b.chosen)
    return {"ugc": len(after.ugc), "ugc_dropped": len(before.ugc) - len(after.ugc), "pairs": len(after.pairs),
            "pairs_dropped": len(before.pairs) - len(after.pairs), "pairs_swapped": swapped,
            "demographics": after.demographics}


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _effects(conditions, grid, probe_rows, pair_rows, values) -> list[dict]:
    """One row per (target, method): flip rate, mean margins, probe shift and text statistics by value."""
    lo, hi = min(values), max(values)
    out = []
    seen = []
    for c in conditions:
        if (c.target, c.method) in seen:
            continue
        seen.append((c.target, c.method))
        key = lambda r: r["target"] == c.target and r["method"] == c.method  # noqa: E731
        g, pr, pa = [r for r in grid if key(r)], [r for r in probe_rows if key(r)], [r for r in pair_rows if key(r)]
        by_value = {}
        for v in values:
            at = lambda rows: [r for r in rows if r["value"] == v]  # noqa: E731
            by_value[str(v)] = {
                "words": _mean(r["words"] for r in at(g)),
                "flesch_reading_ease": _mean(r["flesch_reading_ease"] for r in at(g)),
                "probe_log_ratio": _mean(r.get("log_ratio") for r in at(pr)),
                "probe_shift": _mean(r.get("shift") for r in at(pr)),
                "mean_margin": _mean(r["margin"] for r in at(pa)),
                "pair_accuracy": _mean(float(r["margin"] > 0) for r in at(pa)),
            }
        row = {"target": c.target, "dimensions": list(c.dimensions), "method": c.method,
               "labels": [f"{DIMENSIONS[d].negative_label} → {DIMENSIONS[d].positive_label}" for d in c.dimensions],
               "low": lo, "high": hi, "by_value": by_value,
               "probe_shift": by_value[str(hi)]["probe_shift"],
               "words_change": _diff(by_value[str(hi)]["words"], by_value[str(lo)]["words"]),
               "flesch_change": _diff(by_value[str(hi)]["flesch_reading_ease"], by_value[str(lo)]["flesch_reading_ease"]),
               "n_pairs": len({r["pair_index"] for r in pa}), "flip_rate": None, "margin_shift": None}
        if pa and lo != hi:
            m_lo = np.array([r["margin"] for r in sorted(pa, key=lambda r: r["pair_index"]) if r["value"] == lo])
            m_hi = np.array([r["margin"] for r in sorted(pa, key=lambda r: r["pair_index"]) if r["value"] == hi])
            row["flip_rate"] = _rate(flips(m_lo, m_hi))
            row["margin_shift"] = float((m_hi - m_lo).mean())
        out.append(row)
    return out


def _diff(a, b):
    return None if a is None or b is None else a - b


# ----------------------------------------------------------------------------- persona-swap study


def turn_off(profile: str, dimensions: Sequence[int]) -> str:
    """``profile`` with the labels of ``dimensions`` removed (set to neutral), in index order."""
    t = parse_profile(profile)
    t[list(dimensions)] = NEUTRAL
    return verbalize(t)


def differing_labels(own: str, other: str) -> list[int]:
    """The dimensions where ``own`` has a label that ``other`` does not share (the other profile has
    the opposite label there, or none)."""
    a, b = parse_profile(own), parse_profile(other)
    return [int(d) for d in np.flatnonzero((a != NEUTRAL) & (a != b))]


def swap_study(backbone, records: Sequence[Record], *, seed: int = 0, beta: float = 0.1, single_label: bool = True,
               limit: int | None = None, batch_size: int = 8, chunk_size: int | None = 64,
               progress: Callable[[int, int], None] | None = None) -> dict:
    """Does changing the PBA profile move the model's preference the expected way?

    For every record (with partners drawn from all records by `swap_partners`, seeded; a partner
    has the other ``ground_truth_persona``), the PBA margin under the record's own profile is
    compared with the margin under:

    - ``swap``: the partner's profile;
    - ``differing_off``: the own profile with every label the partner's lacks turned off at once;
    - ``single_label``: the own profile with ONE such label turned off (one edit per label).

    All variants of all records are scored by ONE `evaluate` call (PBA, given profiles), so the
    reference rows (the ICA prompt of the record's true persona) are scored once per record.

    Args:
        backbone (`Backbone`): with the ``pba`` adapter loaded for the paper's implicit reward.
        records (`Sequence[Record]`): held-out records with ``profile`` and ``ground_truth_persona``.
        seed (`int`): seeds the partner draw. beta (`float`): the implicit reward's β.
        single_label (`bool`): also score the one-label edits (the most rows).
        limit (`int`, *optional*): study the first ``limit`` records only (partners from all).
        batch_size, chunk_size, progress: as in `evaluate`.

    Returns:
        `dict`: ``summary`` (per variant: `flip_stats`, plus ``by_persona``), ``per_label`` (the
        single-label edits grouped by label), ``examples`` (per record: margins and profiles),
        ``config``.
    """
    t0 = time.perf_counter()
    records = list(records)
    missing = [i for i, r in enumerate(records) if r.profile is None]
    if missing:
        raise ControlError(f"record {missing[0]} has no 'profile'; the swap study needs PBA profiles")
    try:
        partners = swap_partners(records, seed)
    except ValueError as exc:
        raise ControlError(str(exc)) from exc
    chosen = list(range(len(records)))[:limit]
    rows: list[Record] = []
    plan = []  # per record: {variant: row index or [(dim, row index)]}
    for i in chosen:
        r, partner = records[i], records[partners[i]]
        try:
            diff = differing_labels(r.profile, partner.profile)
        except ValueError as exc:
            raise ControlError(f"record {i}: its profile or its partner's does not parse: {exc}") from exc

        def add(profile: str) -> int:
            rows.append(dataclasses.replace(r, profile=profile))
            return len(rows) - 1

        entry = {"original": add(r.profile), "swap": add(partner.profile),
                 "differing_off": add(turn_off(r.profile, diff)), "differing": diff}
        if single_label:
            entry["single_label"] = [(d, add(turn_off(r.profile, [d]))) for d in diff]
        plan.append(entry)
    m, evaluation = margins(backbone, rows, "pba", beta=beta, batch_size=batch_size, chunk_size=chunk_size,
                            progress=progress)

    examples, per_label = [], {}
    for i, entry in zip(chosen, plan):
        r = records[i]
        base = float(m[entry["original"]])
        ex = {"index": i, "ground_truth_persona": r.ground_truth_persona, "partner": partners[i],
              "partner_persona": records[partners[i]].ground_truth_persona, "prompt": r.prompt,
              "profile": r.profile, "partner_profile": records[partners[i]].profile,
              "differing_labels": [DIMENSIONS[d].label(parse_profile(r.profile)[d]) for d in entry["differing"]],
              "margin/original": base, "margin/swap": float(m[entry["swap"]]),
              "margin/differing_off": float(m[entry["differing_off"]])}
        if single_label:
            ex["margin/single_label"] = {DIMENSIONS[d].label(parse_profile(r.profile)[d]): float(m[k])
                                         for d, k in entry["single_label"]}
        examples.append(ex)

    before = np.array([e["margin/original"] for e in examples])
    keys = [pair_key(records[i]) for i in chosen]  # records about one pair move together

    def stats(edits: list[tuple[float, float, str]]) -> dict:  # (before, after, pair key) per edit
        return flip_stats(np.array([x[0] for x in edits], dtype=np.float64),
                          np.array([x[1] for x in edits], dtype=np.float64), [x[2] for x in edits])

    summary = {}
    for variant in ("swap", "differing_off"):
        after = np.array([e[f"margin/{variant}"] for e in examples])
        summary[variant] = flip_stats(before, after, keys)
        summary[variant]["by_persona"] = {
            key: flip_stats(before[mask], after[mask], [k for k, m in zip(keys, mask) if m])
            for key in sorted({e["ground_truth_persona"] or "" for e in examples})
            for mask in [np.array([(e["ground_truth_persona"] or "") == key for e in examples])]}
    if single_label:
        for e, k in zip(examples, keys):
            for label, value in e["margin/single_label"].items():
                per_label.setdefault(label, []).append((e["margin/original"], value, k))
        summary["single_label"] = stats([x for v in per_label.values() for x in v])
        summary["single_label"]["edits_per_record"] = _mean(len(e["margin/single_label"]) for e in examples)
    labels = {label: stats(v) for label, v in sorted(per_label.items(), key=lambda kv: -len(kv[1]))}
    from alignx import __version__

    info = backbone.info()
    return {
        "kind": "swap",
        "summary": summary,
        "per_label": labels,
        "examples": examples,
        "config": {"method": "pba", "metric": evaluation.get("metric"), "beta": beta, "seed": seed, "limit": limit,
                   "single_label": single_label, "n_records": len(records), "n_studied": len(chosen),
                   "rows": len(rows), "reference": evaluation.get("config", {}).get("reference"),
                   "policy_adapter": backbone.adapter_for("pba"), "adapters": info.get("adapters", {}),
                   "backbone": info, "backbone_config": dataclasses.asdict(backbone.config),
                   "eval_version": evaluation.get("eval_version"),
                   "control_version": CONTROL_VERSION, "alignx_version": __version__, "git_commit": git_commit(),
                   "seconds": round(time.perf_counter() - t0, 3), "timing": evaluation.get("timing")},
    }


def run_swap_study(backbone, benchmark: str, data, *, split: str | None = None, **kwargs) -> dict:
    """Load a registered benchmark (its held-out ``split``, hash-checked) and run `swap_study`;
    adds the benchmark, its version, the data path and sha256 and the split to the config."""
    from alignx.learn.benchmarks import data_sha256, get_benchmark

    spec = get_benchmark(benchmark)
    path = spec.resolve_data(data)
    records = spec.load(path, split=split)
    out = swap_study(backbone, records, **kwargs)
    out["config"] = {"benchmark": spec.name, "benchmark_version": spec.version, "data": str(path),
                     "data_sha256": data_sha256(path), "split": split, **out["config"]}
    return out


# ----------------------------------------------------------------------------- command line


def _backbone(args):
    from alignx.backbone import load_backbone, torch_threads
    from alignx.cli import CLIError, backbone_config_from_args

    config = backbone_config_from_args(args)
    try:
        with torch_threads(args.threads):
            return load_backbone(config)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc


def _finish(args, result: dict, name: str) -> None:
    result["config"]["threads"] = args.threads
    argv = getattr(args, "argv", None)  # set by `alignx.cli.main`: the command after "alignx"
    result["config"]["argv"] = ["alignx", *argv] if argv else ["alignx", "control", name, *sys.argv[3:]]
    if args.out:
        write_json(result, args.out)
    if args.report:
        from alignx.explore.report import write_report

        paths = write_report(result, args.report)
        print(f"report: {paths['html']}", file=sys.stderr)
    if not args.out and not args.report:
        print(json.dumps(result, indent=2, ensure_ascii=False))


def cmd_sweep(args: argparse.Namespace) -> int:
    from alignx.backbone import torch_threads
    from alignx.cli import CLIError
    from alignx.schema import load_persona, load_records

    try:
        if args.from_report:
            previous = json.loads(Path(args.from_report).read_text(encoding="utf-8"))
            if previous.get("kind") != "sweep" or "settings" not in previous:
                raise CLIError(f"{args.from_report}: not a sweep result (no 'settings')")
            settings = sweep_settings(**previous["settings"])
        else:
            if not args.dims or not args.prompt:
                raise CLIError("--dims and --prompt are required (or --from-report RESULT.json)")
            persona = load_persona(args.persona) if args.persona else None
            vector = json.loads(Path(args.vector).read_text()) if args.vector else None
            pairs = load_records(args.pairs, limit=args.pairs_limit) if args.pairs else []
            probes = parse_probes(Path(args.probes).read_text(encoding="utf-8")) if args.probes else None
            settings = sweep_settings(persona=persona, vector=vector, dimensions=args.dims, values=args.values,
                                      prompts=args.prompt, methods=args.method or ["pba"], pairs=pairs,
                                      probes=probes, joint=args.joint, ica_edit=args.ica_edit,
                                      max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                      seed=args.seed, beta=args.beta, batch_size=args.batch_size)
        backbone = _backbone(args)
        with torch_threads(args.threads):
            result = sweep(backbone, **settings)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    _finish(args, result, "sweep")
    for e in result["effects"]:
        flip = "n/a" if e["flip_rate"] is None else f"{e['flip_rate']:.3f} of {e['n_pairs']} pairs"
        shift = "n/a" if e["probe_shift"] is None else f"{e['probe_shift']:+.3f}"
        print(f"dimension {e['target']} {e['method']}: flip rate {flip}; probe log-ratio shift {shift}; "
              f"words {e['words_change'] if e['words_change'] is not None else 'n/a'}", file=sys.stderr)
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    from alignx.backbone import torch_threads
    from alignx.cli import CLIError

    from alignx.learn.benchmarks import get_benchmark

    args.adapter = [a if "=" in a else f"pba={a}" for a in (args.adapter or [])]
    try:  # cheap checks before the model loads
        get_benchmark(args.benchmark).resolve_data(args.data)
    except (KeyError, FileNotFoundError) as exc:
        raise CLIError(exc.args[0]) from exc
    backbone = _backbone(args)

    def progress(done: int, total: int) -> None:
        print(f"  scored {done}/{total} profile variants", file=sys.stderr, flush=True)

    try:
        with torch_threads(args.threads):
            result = run_swap_study(backbone, args.benchmark, args.data, split=args.split, seed=args.seed,
                                    beta=args.beta, single_label=not args.no_single_label, limit=args.limit,
                                    batch_size=args.batch_size, chunk_size=args.chunk_size, progress=progress)
    except KeyError as exc:
        raise CLIError(exc.args[0] if exc.args else str(exc)) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from exc
    _finish(args, result, "swap")
    def fmt(x) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    for variant, s in result["summary"].items():
        se = s.get("directional_rate_stderr")
        se = f" ± {se:.3f}" if se is not None else ""
        print(f"{variant}: directional {fmt(s['directional_rate'])}{se}, flip {fmt(s['flip_rate'])}, flip to rejected "
              f"{fmt(s['flip_to_rejected_rate'])} (n {s['n']}, accuracy {fmt(s['accuracy_before'])} -> "
              f"{fmt(s['accuracy_after'])})", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    from alignx.cli import add_backbone_args

    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta of the implicit reward (default 0.1)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch CPU threads (use 1 on a busy machine)")
    p.add_argument("--out", type=Path, help="write the result JSON here")
    p.add_argument("--report", type=Path, help="write the report folder here (JSON, CSV, standalone HTML)")
    add_backbone_args(p)
    # The effects measured here are differences of a few tenths of a nat between margins; nf4 scores
    # move by up to ~0.2 nats with the batch shape on the CPU, fp32 scores by ~1e-5 (README, backbone).
    precision = next(a for a in p._actions if "--precision" in a.option_strings)
    precision.default = "fp32"
    precision.help = ("default fp32: nf4 scores move by up to ~0.2 nats with the batch shape, the size of the "
                      "effects measured here")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``control`` (with ``sweep`` and ``swap``) on an `argparse` subparsers object."""
    p = subparsers.add_parser("control", help="controllability studies: preference sweeps and persona swaps",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="control_command", required=True)

    s = sub.add_parser("sweep", help="sweep dimensions of a persona / vector and measure the effect",
                       description="Set one or more dimensions to each value, generate, score pole-specific "
                                   "probes and (with --pairs) benchmark pairs; print or write the result.")
    s.add_argument("--persona", type=Path, help="persona JSON (AlignX keys); ICA edits it, PBA starts from its vector")
    s.add_argument("--vector", type=Path, help="JSON file with the 90-number base vector (default: the persona's)")
    s.add_argument("--dims", help="dimensions: indices or labels, comma-separated (e.g. '73,16' or 'Likes humor')")
    s.add_argument("--values", default="0,0.5,1", help="values to sweep (default 0,0.5,1)")
    s.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    s.add_argument("--method", action="append", choices=METHODS, help="pba (default) and/or ica (repeatable)")
    s.add_argument("--pairs", type=Path, help="benchmark records file (prompt/chosen/rejected) for the flip rate")
    s.add_argument("--pairs-limit", type=int, help="first N pairs only")
    s.add_argument("--probes", type=Path, help='JSON {"<dim>": {"positive": text, "negative": text}}')
    s.add_argument("--joint", action="store_true", help="move all dimensions together")
    s.add_argument("--ica-edit", choices=ICA_EDITS, default="both", help="how ICA personas are edited")
    s.add_argument("--max-new-tokens", type=int, default=48)
    s.add_argument("--temperature", type=float, default=0.0)
    s.add_argument("--from-report", type=Path, help="rerun the exact settings of a previous sweep result JSON")
    _common(s)
    s.set_defaults(func=cmd_sweep)

    w = sub.add_parser("swap", help="the persona-swap study: directional and flip rates on held-out pairs",
                       description="PBA margins under each record's own profile vs a partner's of the other "
                                   "ground_truth_persona, and vs label edits (differing labels turned off).")
    w.add_argument("--benchmark", default="psoups-friendly_unfriendly", help="a registered benchmark")
    w.add_argument("--data", required=True, type=Path, help="the benchmark file (or the folder holding it)")
    w.add_argument("--split", help="held-out split name, e.g. psoups_friendly_unfriendly (default: all records)")
    w.add_argument("--limit", type=int, help="first N records only (smoke tests)")
    w.add_argument("--no-single-label", action="store_true", help="skip the one-label-at-a-time edits")
    w.add_argument("--chunk-size", type=int, default=64, help="records per scoring call (progress granularity)")
    _common(w)
    adapter = next(a for a in w._actions if "--adapter" in a.option_strings)
    adapter.metavar, adapter.help = "[NAME=]FOLDER", "LoRA adapter; a bare FOLDER is attached as pba"
    w.set_defaults(func=cmd_swap)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m alignx.explore.control sweep|swap ...``: the same as ``alignx control ...``."""
    from alignx.cli import main as cli_main

    return cli_main(["control", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
