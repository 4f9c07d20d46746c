"""The three-way comparison: ICA | PBA | universal from one batched, streamed generation.

ICA sees the raw persona (with the `ica` adapter when loaded), PBA the profile of the preference
vector (with the `pba` adapter), universal the bare post (no adapter). The three prompts go to
`Backbone.stream` as one batch, so the columns grow together.

Usage::

    from alignx.compare import parse_request, stream_compare
    req = parse_request(persona_json, vector_json, "Any tips for a first marathon?", 96, 0.0, 0)
    for step in stream_compare(backbone, req):
        print(step.texts)            # [ica, pba, universal] so far
    step.prompts, step.adapters      # exactly what each row received

Before and after for one user: `user_adapter_settings` adds a finished per-user adapter (trained on
the Annotate tab, `alignx.annotation`) to the session's backbone, and `stream_user_compare` runs the
PBA prompt on the bare backbone and with that adapter, as one batch of two.

`parse_request` does the cheap validation (no model); `load` wraps model loading so a failure
is one clear `ModelLoadError`. Nothing here imports gradio; torch only through `alignx.backbone`,
imported when a model is needed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from alignx.personas import derive_vector
from alignx.preferences import VectorError, profile_from_vector, validate_vector
from alignx.schema import Persona, SchemaError, persona_from_dict
from alignx.session import METHODS, BackboneSettings, GenerationSettings, SessionError, _seed


class InputError(ValueError):
    """A comparison input is invalid; the message is meant to be shown to the user as is."""


# Far beyond any context window, refused before tokenizing (a public server must not spend seconds
# on a megabyte of text); texts under these caps that still do not fit get `too_long_text`.
MAX_PROMPT_CHARS = 50_000
MAX_PERSONA_CHARS = 1_000_000


class ModelLoadError(RuntimeError):
    """The backbone could not be loaded; the message says which model and why."""


# Public hosting: with ALIGNX_LOCK_SETTINGS=1 the backbone (model id, GGUF file, precision, template
# and adapter folders) is whatever the host set through the environment; no request can change it, so
# no request can make the server read a folder of its choosing.
LOCK_ENV = "ALIGNX_LOCK_SETTINGS"
# The host's backbone (`set_host_backbone`, called once at start-up by app.py); read-only afterwards.
_HOST_BACKBONE: list[BackboneSettings] = []


class SettingsLockedError(InputError):
    """A request tried to change the backbone settings on a server that locks them."""


def settings_locked() -> bool:
    """True when ``$ALIGNX_LOCK_SETTINGS`` is set to 1 / true / yes / on."""
    return os.environ.get(LOCK_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def set_host_backbone(settings: BackboneSettings) -> None:
    """Record the backbone the host configured (the only one a locked server runs)."""
    _HOST_BACKBONE[:] = [settings]


def host_backbone() -> BackboneSettings:
    """The backbone recorded by `set_host_backbone` (the embedded model if none was)."""
    return _HOST_BACKBONE[0] if _HOST_BACKBONE else BackboneSettings()


def check_settings_unlocked(what: str = "The backbone settings") -> None:
    """Refuse a settings change on a locked server.

    Raises:
        SettingsLockedError: ``$ALIGNX_LOCK_SETTINGS`` is set; the message says so.
    """
    if settings_locked():
        raise SettingsLockedError(f"{what} are locked on this server ({LOCK_ENV}=1): the host fixes the model "
                                  "and adapter folders, so they cannot be changed from the app.")


def check_backbone_allowed(settings: BackboneSettings) -> None:
    """On a locked server, only the host's backbone runs (plus a per-user adapter trained into the
    data folder, for the before / after comparison). A no-op when the server is not locked.

    Raises:
        SettingsLockedError: the settings (e.g. from an imported session file) name another model,
            precision, template or adapter folder.
    """
    if not settings_locked():
        return
    from alignx.store import data_dir

    host = host_backbone()
    extra = dict(settings.adapters)
    user = extra.pop(USER_ADAPTER, None)
    same = (settings.model, settings.gguf_file, settings.precision, settings.template, extra) == \
        (host.model, host.gguf_file, host.precision, host.template, host.adapters)
    user_ok = user is None or _inside(Path(user), data_dir() / "adapters")
    if not (same and user_ok):
        check_settings_unlocked(f"This backbone ({settings.model!r}, adapters "
                                f"{sorted(settings.adapters) or 'none'}) is not the host's; the backbone settings")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.expanduser().resolve().relative_to(folder.resolve())
        return True
    except (OSError, ValueError):
        return False


@dataclass
class CompareRequest:
    """A validated comparison: what each method gets and how to decode."""

    prompt: str
    persona: Persona
    vector: list[float]
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    seed: int = 0

    @property
    def profile(self) -> str:
        """The PBA profile of `vector`."""
        return profile_from_vector(self.vector)


@dataclass
class CompareStep:
    """One streamed update: every column's text so far, and what produced it.

    Attributes:
        texts: ICA, PBA and universal text so far. prompts / adapters: per row, the exact prompt
        and the adapter (None = bare backbone). first_token_s: seconds from the call to the first
        generated token (prefill included). elapsed_s: seconds so far. done: the last step.
    """

    texts: list[str]
    prompts: list[str]
    adapters: list[str | None]
    first_token_s: float | None
    elapsed_s: float
    done: bool = False


# ---------------------------------------------------------------------------- cheap validation


def parse_persona(text: str | dict | None) -> Persona:
    """A persona from AlignX-format JSON text (or a dict); blank means an empty persona.

    Raises:
        InputError: not JSON, or not a valid persona (names the field).
    """
    if isinstance(text, dict):
        data = text
    else:
        text = (text or "").strip()
        if not text:
            return Persona()
        if len(text) > MAX_PERSONA_CHARS:
            raise InputError(f"Persona is {len(text):,} characters; at most {MAX_PERSONA_CHARS:,} are accepted "
                             "(far more than any backbone's context window).")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"Persona is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                             f"{exc.msg}).") from exc
    try:
        return persona_from_dict(data, source="persona")
    except SchemaError as exc:
        raise InputError(f"Persona is not valid: {exc}") from exc


def parse_vector(text: str | list | None, persona: Persona | None = None) -> list[float]:
    """A 90-float vector from a JSON list (text or list). Blank means "derive it from the
    persona's directions".

    Raises:
        InputError: not JSON, the wrong length, a value outside [0, 1], or blank with a persona
            that carries no directions.
    """
    if isinstance(text, str):
        text = text.strip()
        if not text:
            vector = None if persona is None else derive_vector(persona)
            if vector is None:
                raise InputError("Vector is empty and the persona has no preference directions to "
                                 "derive it from: pass a JSON list of 90 numbers in [0, 1].")
            return vector
        try:
            text = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"Vector is not valid JSON (column {exc.colno}: {exc.msg}); pass a "
                             "JSON list of 90 numbers in [0, 1].") from exc
    try:
        return [float(x) for x in validate_vector(text, what="Vector")]
    except VectorError as exc:
        raise InputError(f"{exc}.") from exc


def parse_request(persona_json, vector_json, prompt: str, max_new_tokens, temperature, seed,
                  top_p: float = 1.0) -> CompareRequest:
    """Validate the inputs of a comparison, without touching a model.

    Args:
        persona_json (`str` or `dict`): the persona in AlignX key format; blank = empty persona.
        vector_json (`str` or `list`): 90 numbers in [0, 1]; blank = derived from the persona.
        prompt (`str`): the post; must not be blank.
        max_new_tokens, temperature, seed, top_p: decoding settings (see `GenerationSettings`).

    Raises:
        InputError: a clear, user-facing message naming the bad field.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("Prompt is empty: write the post the three methods should answer.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InputError(f"Prompt is {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,} are accepted "
                         "(far more than any backbone's context window).")
    persona = parse_persona(persona_json)
    vector = parse_vector(vector_json, persona)
    try:
        if isinstance(max_new_tokens, float) and max_new_tokens.is_integer():
            max_new_tokens = int(max_new_tokens)
        generation = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        seed = _seed(seed)
    except SessionError as exc:
        raise InputError(f"{exc.field.replace('_', ' ').capitalize()}: {exc.reason}.") from exc
    return CompareRequest(prompt=prompt, persona=persona, vector=vector, generation=generation, seed=seed)


def check_backbone_settings(settings: BackboneSettings) -> None:
    """Cheap checks before a load: adapter folders are valid LoRA folders (safetensors only) and
    a model given as a path exists.

    Raises:
        InputError: with the folder and what is wrong. SettingsLockedError: on a locked server,
            settings other than the host's (`check_backbone_allowed`).
    """
    from alignx.backbone import check_adapter_dir

    check_backbone_allowed(settings)
    for name, folder in settings.adapters.items():
        try:
            check_adapter_dir(Path(folder).expanduser())
        except (OSError, ValueError) as exc:
            raise InputError(f"Adapter {name!r}: {exc}") from exc
    model = settings.model
    if model.startswith((".", os.sep, "~")) and not Path(model).expanduser().exists():
        raise InputError(f"Model folder not found: {model}")


# ---------------------------------------------------------------------------- model


def load(models, settings: BackboneSettings):
    """Get the backbone for ``settings`` from the shared cache, loading it on first use.

    Args:
        models (`alignx.backbone.BackboneCache`): the app's one read-only cache.
        settings (`BackboneSettings`): the session's backbone.

    Raises:
        InputError: bad adapter folders or model path (see `check_backbone_settings`).
        ModelLoadError: anything else that stopped the load, with the model id and a hint.
    """
    check_backbone_settings(settings)
    try:
        return models.get(settings.to_config())
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear message
        hint = ""
        if isinstance(exc, (OSError, ValueError)) and settings.model != "embedded":
            hint = (" A hub id loads only where the Hugging Face Hub (or its local cache) is "
                    "reachable; a local folder must hold config.json and the weights.")
        reason = " ".join(str(exc).split()).rstrip(".")
        raise ModelLoadError(f"Could not load the backbone {settings.model!r} "
                             f"({settings.precision}): {type(exc).__name__}: {reason}.{hint}") from exc


def describe(backbone) -> str:
    """One line on a loaded backbone: name, precision, template, adapters."""
    info = backbone.info()
    adapters = ", ".join(f"{k} ({v})" for k, v in info["adapters"].items()) or "none"
    return (f"{info['model']} · {info['precision']} on {info['device']} · template "
            f"{info['template']} · adapters: {adapters}")


# ---------------------------------------------------------------------------- generation


def stream_compare(backbone, request: CompareRequest) -> Iterator[CompareStep]:
    """Stream ICA, PBA and universal from ONE batched `Backbone.stream` call.

    Yields:
        `CompareStep` after every generated token; the last one has ``done=True``.

    Raises:
        InputError: the prompts do not fit the backbone's context (or another bad value).
    """
    t0 = time.perf_counter()
    try:
        prompts, adapters = backbone.compare_batch(request.prompt, persona=request.persona,
                                                   profile=request.profile, methods=METHODS)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    yield from _stream_steps(backbone, prompts, adapters, request, METHODS, t0)


def _stream_steps(backbone, prompts, adapters, request: CompareRequest, methods, t0: float) -> Iterator[CompareStep]:
    """One batched `Backbone.stream` of ``prompts`` as `CompareStep`s (times from ``t0``); the last
    has ``done=True``. A prompt that does not fit is an `InputError` naming its method."""
    g = request.generation
    texts, first = [""] * len(prompts), None
    try:
        for texts in backbone.stream(prompts, adapters, max_new_tokens=g.max_new_tokens,
                                     temperature=g.temperature, top_p=g.top_p, seed=request.seed):
            now = time.perf_counter() - t0
            first = now if first is None else first
            yield CompareStep(list(texts), prompts, adapters, first, now)
    except ValueError as exc:  # PromptTooLongError and friends
        raise InputError(too_long_text(exc, methods, g.max_new_tokens) or str(exc)) from exc
    yield CompareStep(list(texts), prompts, adapters, first, time.perf_counter() - t0, done=True)


def too_long_text(exc: Exception, methods, max_new_tokens: int) -> str | None:
    """The user-facing message of a `PromptTooLongError` (None for other errors): which method's
    prompt, how many tokens, the limit; and that nothing was truncated."""
    index, tokens, limit = (getattr(exc, k, None) for k in ("index", "tokens", "limit"))
    if index is None or tokens is None or limit is None or not 0 <= index < len(methods):
        return None
    return (f"The {methods[index].upper()} prompt needs {tokens:,} tokens ({max_new_tokens} of them new), over "
            f"the backbone's {limit:,}-token context. Nothing was generated and nothing was truncated: "
            "shorten the persona (its UGC and pair texts) or the prompt, or ask for fewer new tokens.")


def sequential_compare(backbone, request: CompareRequest) -> dict:
    """The same three generations as three separate `stream` calls, one after the other.

    For measuring against `stream_compare`; returns ``{"texts", "first_token_s",
    "last_first_token_s", "total_s"}`` where ``first_token_s`` is when the first column starts
    and ``last_first_token_s`` when the last column starts.
    """
    prompts, adapters = backbone.compare_batch(request.prompt, persona=request.persona,
                                               profile=request.profile, methods=METHODS)
    g, t0, firsts, texts = request.generation, time.perf_counter(), [], []
    for prompt, adapter in zip(prompts, adapters):
        out = [""]
        for i, out in enumerate(backbone.stream([prompt], [adapter], max_new_tokens=g.max_new_tokens,
                                                temperature=g.temperature, top_p=g.top_p, seed=request.seed)):
            if i == 0:
                firsts.append(time.perf_counter() - t0)
        texts.append(out[0])
    return {"texts": texts, "first_token_s": firsts[0], "last_first_token_s": firsts[-1],
            "total_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------------- one user's adapter

USER_ADAPTER = "user"


def user_adapters(db_path) -> list[tuple[str, int]]:
    """(label, id) of the finished per-user adapters in the store, newest first (for a dropdown)."""
    from alignx.store import Store

    with Store.open(db_path) as store:
        rows = store.user_adapters(status="done")
    return [(f"#{r['id']} {r['annotator']} · session {r['session_id']} · {r['n_pairs']} pairs", r["id"])
            for r in rows]


def user_adapter_settings(db_path, settings: BackboneSettings, adapter_id) -> BackboneSettings:
    """The session's backbone plus a finished per-user adapter, loaded under the name ``user``.

    Raises:
        InputError: no adapter picked, an unknown id, or a job that has not finished.
    """
    from alignx.store import Store, StoreError

    if adapter_id in (None, ""):
        raise InputError("Pick a per-user adapter first (train one on the Annotate tab).")
    try:
        with Store.open(db_path) as store:
            row = store.user_adapter(int(adapter_id))
    except (StoreError, ValueError) as exc:
        raise InputError(str(exc)) from exc
    if row["status"] != "done":
        raise InputError(f"Adapter #{row['id']} is {row['status']}, not ready: {row['message']}")
    return BackboneSettings(model=settings.model, gguf_file=settings.gguf_file, precision=settings.precision,
                            adapters={**settings.adapters, USER_ADAPTER: row["path"]}, template=settings.template)


def stream_user_compare(backbone, request: CompareRequest, adapter: str = USER_ADAPTER) -> Iterator[CompareStep]:
    """Before and after for one user: the PBA prompt (the request's profile) twice in ONE batch,
    row 1 on the bare backbone, row 2 with the user's adapter.

    Yields:
        `CompareStep` with two texts (before, after); the last one has ``done=True``.
    """
    t0 = time.perf_counter()
    prompt = backbone.build_prompt("pba", request.prompt, profile=request.profile)
    yield from _stream_steps(backbone, [prompt, prompt], [None, adapter], request, ("pba", "pba"), t0)
