"""What the tab builders share: the read-only app context, the `View` each builder returns, the
error adapter that turns library errors into visible messages, and the page-refresh wiring."""

from __future__ import annotations

import functools
import inspect
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from alignx.compare import ModelLoadError
from alignx.schema import Persona
from alignx.session import Session

# Cheap listeners that read and write the session run one at a time (they take milliseconds):
# each reads the session the previous one wrote, so two quick slider moves cannot lose an update.
SESSION_QUEUE = dict(concurrency_id="session", concurrency_limit=1)
# Not part of the API; QUIET also shows no spinner (listeners that only repaint the page).
PRIVATE = dict(api_visibility="private", **SESSION_QUEUE)
QUIET = dict(PRIVATE, show_progress="hidden")
# Every listener that runs the model shares one queue slot (see README "The app").
MODEL_QUEUE = dict(concurrency_id="model", concurrency_limit=1)
# Uploads (persona, session and queue files) are small JSON / JSONL / CSV: `read_upload` refuses
# anything larger. The server refuses any upload over MAX_SERVER_UPLOAD_BYTES before a handler runs
# (`launch(max_file_size=...)` in app.py): the largest upload, a benchmark file for the Map tab.
MAX_UPLOAD_BYTES = 2_000_000
MAX_SERVER_UPLOAD_BYTES = 20 * 2**20


@dataclass(frozen=True)
class AppContext:
    """Read-only things every tab may use. Built once by `app.py`; never mutated by handlers.

    Args:
        models: the one `alignx.backbone.BackboneCache` shared by all sessions.
        defaults (`Session`): the session a new browser tab starts from (deep-copied by gr.State).
        db_path (`str`): the SQLite store (`alignx.store.Store.open`).
        examples (`dict[str, Persona]`): the example personas by name (assets/personas).
        example_prompts (`tuple[str, ...]`): prompts offered under the prompt box.
    """

    models: Any
    defaults: Session
    db_path: str
    examples: dict[str, Persona] = field(default_factory=dict)
    example_prompts: tuple[str, ...] = ()


@dataclass
class View:
    """What a `build_<tab>()` returns to `build_demo`.

    Args:
        outputs: components that show the session; `fill(session)` gives their values in order.
        fill: session -> list of values (or updates) for ``outputs``.
        reloads: events after which the whole page is refilled from the new session (loading a
            persona, importing a session): `connect_reloads` chains them.
        components: named components other tabs use as inputs (e.g. "persona_json").
    """

    outputs: list = field(default_factory=list)
    fill: Callable[[Session], list] = lambda session: []
    reloads: list = field(default_factory=list)
    components: dict = field(default_factory=dict)


def connect_reloads(state: gr.State, views: list[View]) -> None:
    """After any view's reload event, refill every view from the session in one step."""
    outputs = [c for v in views for c in v.outputs]

    def fill_all(session: Session) -> list:
        return [value for v in views for value in v.fill(session)]

    for view in views:
        for event in view.reloads:
            event.success(fill_all, [state], outputs, **QUIET)


def shows_errors(fn: Callable) -> Callable:
    """Turn the library's user-facing errors (`ValueError` subclasses: bad JSON, bad vector,
    schema, store and session errors; `ModelLoadError`) into a visible ``gr.Error``, so a bad
    input is a clear message and the server keeps serving. Works for generator handlers too."""
    expected = (ValueError, KeyError, ModelLoadError, FileNotFoundError)

    def message(exc: BaseException) -> str:
        return exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except expected as exc:
                raise gr.Error(message(exc), print_exception=False) from exc
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except expected as exc:
            raise gr.Error(message(exc), print_exception=False) from exc
    return wrapper


def write_download(data: dict | str, stem: str) -> str:
    """Write JSON (a dict, or ready text) to a fresh temp file for a download; returns its path."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    folder = Path(tempfile.mkdtemp(prefix="alignx-"))
    path = folder / f"{stem}.json"
    path.write_text(text, encoding="utf-8")
    return str(path)


def read_upload(file, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """The text of an uploaded file (a path string or a gradio file object); clear errors for
    a missing, oversized or non-UTF-8 file."""
    if file is None:
        raise ValueError("No file was uploaded.")
    path = Path(getattr(file, "name", file))
    if not path.is_file():
        raise ValueError(f"The uploaded file {path.name} is gone: upload it again.")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path.name} is {size:,} bytes; uploads are capped at {max_bytes:,} bytes.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name} is not UTF-8 text: upload a .json file.") from exc
