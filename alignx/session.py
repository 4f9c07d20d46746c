"""One user's session: persona, preference vector, backbone and generation settings, seed.

A `Session` is small, plain and deep-copyable, so the app keeps one per browser tab in
``gr.State``. It is also the unit of sharing: `Session.to_json` writes everything needed to rerun
a comparison (persona, vector, prompt, model id, precision, adapters, template, decoding settings,
seed, and the last outputs), and `Session.from_json` reads it back, validating every field.

Usage::

    from alignx.session import Session
    s = Session(prompt="Any tips for a first marathon?")
    s.vector[73] = 1.0                     # "Likes humor"
    text = s.to_json()
    assert Session.from_json(text) == s
    s.profile()                            # the PBA profile of s.vector

File format (``"format": "alignx-session"``, ``"version": 1``)::

    {"format": "alignx-session", "version": 1, "prompt": "...",
     "persona": {AlignX persona keys}, "vector": [90 floats in [0, 1]],
     "backbone": {"model": "embedded", "gguf_file": null, "precision": "auto",
                  "adapters": {"ica": "assets/adapters/ica"}, "template": "auto"},
     "generation": {"max_new_tokens": 96, "temperature": 0.0, "top_p": 1.0},
     "seed": 0, "outputs": {"ica": "...", "pba": "...", "universal": "..."}}

Pure: stdlib, numpy and the other pure alignx modules; no torch, no gradio.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field, fields

from alignx.preferences import N_DIMS, NEUTRAL, VectorError, profile_from_vector, validate_vector
from alignx.schema import Persona, SchemaError, persona_from_dict, persona_to_dict

FORMAT = "alignx-session"
VERSION = 1
# Mirrors alignx.backbone (kept here so this module does not import torch); a test checks they agree.
PRECISIONS = ("auto", "fp32", "bf16", "int8", "nf4")
TEMPLATES = ("auto", "official-eval", "chat")
METHODS = ("ica", "pba", "universal")
MAX_NEW_TOKENS = 2048
MAX_TEMPERATURE = 5.0
MAX_SEED = 2**63 - 1


class SessionError(ValueError):
    """A session (or one of its fields) is invalid. ``field`` is a dotted path such as
    "generation.temperature"; the message says what is wrong and what is expected."""

    def __init__(self, field: str | None, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"session field {field!r}: {reason}" if field else f"session: {reason}")

    def __reduce__(self):
        return (type(self), (self.field, self.reason))


@dataclass
class BackboneSettings:
    """Which backbone to run (see `alignx.backbone.BackboneConfig`).

    Args:
        model (`str`, defaults to `"embedded"`): "embedded", a Hugging Face id or a local folder.
        gguf_file (`str`, *optional*): a GGUF file inside ``model``.
        precision (`str`, defaults to `"auto"`): auto, fp32, bf16, int8 or nf4.
        adapters (`dict[str, str]`): LoRA adapter folders by name ("ica", "pba").
        template (`str`, defaults to `"auto"`): auto, official-eval or chat.
    """

    model: str = "embedded"
    gguf_file: str | None = None
    precision: str = "auto"
    adapters: dict[str, str] = field(default_factory=dict)
    template: str = "auto"

    def __post_init__(self):
        _check_backbone(self)

    def to_config(self, **overrides):
        """The `alignx.backbone.BackboneConfig` for these settings (imports torch)."""
        from alignx.backbone import BackboneConfig

        return BackboneConfig(model=self.model, gguf_file=self.gguf_file, precision=self.precision,
                              adapters=dict(self.adapters), template=self.template, **overrides)


@dataclass
class GenerationSettings:
    """Decoding settings of a comparison.

    Args:
        max_new_tokens (`int`, defaults to 96): 1 to 2048.
        temperature (`float`, defaults to 0.0): 0 is greedy; at most 5.
        top_p (`float`, defaults to 1.0): nucleus sampling mass, in (0, 1].
    """

    max_new_tokens: int = 96
    temperature: float = 0.0
    top_p: float = 1.0

    def __post_init__(self):
        _check_generation(self)


@dataclass
class Session:
    """Everything one user has set up. Deep-copyable; `copy` returns an independent copy.

    Args:
        persona (`dict`): the persona in AlignX key format (`alignx.schema.persona_to_dict`).
        vector (`list[float]`): the 90-dim preference vector the sliders show; PBA sees its
            profile.
        prompt (`str`): the post to respond to.
        backbone (`BackboneSettings`), generation (`GenerationSettings`), seed (`int`).
        outputs (`dict[str, str]`): the last outputs by method ("ica", "pba", "universal").
    """

    persona: dict = field(default_factory=lambda: persona_to_dict(Persona()))
    vector: list[float] = field(default_factory=lambda: [NEUTRAL] * N_DIMS)
    prompt: str = ""
    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int = 0
    outputs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        # Normalise and validate, so every Session in the app is a valid one.
        self.persona = persona_to_dict(_persona(self.persona, "persona"))
        self.vector = _vector(self.vector, "vector")
        if not isinstance(self.prompt, str):
            raise SessionError("prompt", f"expected a string, got {type(self.prompt).__name__}")
        self.seed = _seed(self.seed)
        if not isinstance(self.outputs, dict) or any(
                k not in METHODS or not isinstance(v, str) for k, v in self.outputs.items()):
            raise SessionError("outputs", f"expected an object mapping {list(METHODS)} to strings")

    # -- derived values --------------------------------------------------------------------

    def persona_obj(self) -> Persona:
        """The persona as an `alignx.schema.Persona`."""
        return persona_from_dict(self.persona)

    def profile(self) -> str:
        """The PBA profile of the current vector (`alignx.preferences.profile_from_vector`)."""
        return profile_from_vector(self.vector)

    def copy(self, **changes) -> Session:
        """A deep copy with some fields replaced (each replaced value is validated)."""
        new = copy.deepcopy(self)
        for name, value in changes.items():
            if name not in {f.name for f in fields(self)}:
                raise TypeError(f"Session has no field {name!r}")
            setattr(new, name, copy.deepcopy(value))
        new.__post_init__()
        return new

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A plain dict in the session file format."""
        d = asdict(self)
        return {"format": FORMAT, "version": VERSION, "prompt": d.pop("prompt"), **d}

    def to_json(self) -> str:
        """The session file text (UTF-8 JSON, each list of numbers on one line)."""
        from alignx.personas import dumps

        return dumps(self.to_dict()) + "\n"

    @classmethod
    def from_dict(cls, d) -> Session:
        """Validate a session dict (see the module docstring); missing keys take defaults.

        Raises:
            SessionError: the wrong format or version, an unknown key, or a bad field; the
                message names the field and what was expected.
        """
        if not isinstance(d, dict):
            raise SessionError(None, f"expected a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise SessionError("format", f"expected {FORMAT!r}, got {d.get('format')!r}: "
                                         "this is not an alignx session file")
        if d.get("version") != VERSION:
            raise SessionError("version", f"expected {VERSION}, got {d.get('version')!r}")
        known = {f.name for f in fields(cls)} | {"format", "version"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SessionError(unknown[0], f"unknown key; expected only {sorted(known)}")
        kwargs = {k: v for k, v in d.items() if k not in ("format", "version")}
        kwargs["backbone"] = _sub(BackboneSettings, d.get("backbone", {}), "backbone")
        kwargs["generation"] = _sub(GenerationSettings, d.get("generation", {}), "generation")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> Session:
        """Parse and validate session file text.

        Raises:
            SessionError: invalid JSON (with line and column) or an invalid field.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SessionError(None, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
        except UnicodeDecodeError as exc:
            raise SessionError(None, f"not UTF-8 text ({exc})") from exc
        return cls.from_dict(d)


# ---------------------------------------------------------------------------- validation helpers


def _sub(cls, d, name: str):
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise SessionError(name, f"expected an object, got {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise SessionError(f"{name}.{unknown[0]}", f"unknown key; expected only {sorted(known)}")
    try:
        return cls(**d)
    except SessionError as exc:
        raise SessionError(f"{name}.{exc.field}", exc.reason) from None


def _persona(value, name: str) -> Persona:
    if isinstance(value, Persona):
        return value
    try:
        return persona_from_dict(value, source=name)
    except SchemaError as exc:
        raise SessionError(name if exc.field is None else f"{name}.{exc.field}", exc.reason) from None


def _vector(value, name: str) -> list[float]:
    try:
        return [float(x) for x in validate_vector(value, what=name)]
    except VectorError as exc:
        raise SessionError(name, exc.reason) from None


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise SessionError("seed", f"expected a whole number, got {value!r}")
    if not 0 <= value <= MAX_SEED:
        raise SessionError("seed", f"expected 0 to 2**63 - 1, got {value}")
    return value


def _check_backbone(b: BackboneSettings) -> None:
    if not isinstance(b.model, str) or not b.model.strip():
        raise SessionError("model", "expected a non-empty model id, folder or 'embedded'")
    b.model = b.model.strip()
    if b.gguf_file is not None and (not isinstance(b.gguf_file, str)):
        raise SessionError("gguf_file", f"expected a file name or null, got {b.gguf_file!r}")
    b.gguf_file = (b.gguf_file or "").strip() or None
    if b.precision not in PRECISIONS:
        raise SessionError("precision", f"expected one of {list(PRECISIONS)}, got {b.precision!r}")
    if b.template not in TEMPLATES:
        raise SessionError("template", f"expected one of {list(TEMPLATES)}, got {b.template!r}")
    if not isinstance(b.adapters, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in b.adapters.items()):
        raise SessionError("adapters", "expected an object mapping adapter names to folders, "
                                       'e.g. {"ica": "assets/adapters/ica"}')


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SessionError(name, f"expected a finite number, got {value!r}")
    return value


def _check_generation(g: GenerationSettings) -> None:
    n = _number(g.max_new_tokens, "max_new_tokens")
    if not float(n).is_integer() or not 1 <= n <= MAX_NEW_TOKENS:
        raise SessionError("max_new_tokens", f"expected a whole number from 1 to {MAX_NEW_TOKENS}, got {n!r}")
    g.max_new_tokens = int(n)
    t = _number(g.temperature, "temperature")
    if not 0 <= t <= MAX_TEMPERATURE:
        raise SessionError("temperature", f"expected 0 (greedy) to {MAX_TEMPERATURE}, got {t!r}")
    g.temperature = float(t)
    p = _number(g.top_p, "top_p")
    if not 0 < p <= 1:
        raise SessionError("top_p", f"expected a number in (0, 1], got {p!r}")
    g.top_p = float(p)
