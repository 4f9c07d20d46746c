"""Bad input, table-driven: every case gets a clear message, nothing crashes, nothing stored is lost.

Three surfaces:

- the app's named endpoints, through `gradio_client` against the one shared `python app.py`
  (tests/appserver.py). After every case the same client session calls ``/profile`` to show the
  server (and that session) still works; at the end the store passes ``PRAGMA integrity_check``
  and the rows saved before the first case are all still there, unchanged;
- the library loaders (persona, records, session, queue files, adapter folders, uploads), in-process;
- the command line, in-process through `alignx.cli.main` (exit code 2 and one ``error:`` line).

Files under tests/fixtures/bad/ are small hand-written broken inputs; adapter folders are built in a
temp folder per test run. The README's "Reliability and security" section summarises the cases.
"""

from __future__ import annotations

import io
import json
import pickle
import sqlite3
import struct
import urllib.error
import urllib.request
import uuid
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from alignx import annotation, backbone, preferences, privacy, schema, session, store
from alignx.learn import benchmarks
from alignx.store import Store
from alignx.ui import common as ui_common


BAD = Path(__file__).parent / "fixtures" / "bad"
PERSONA_EXAMPLE = Path(__file__).parent / "fixtures" / "persona_example.json"
NEUTRAL = json.dumps([0.5] * preferences.N_DIMS)
HUMOR = json.dumps([0.5] * 73 + [1.0] + [0.5] * 16)  # reads "Likes humor"
SQL_NAME = "Robert'); DROP TABLE annotators;--"
UNICODE_NAME = "Zoë 李 مرحبا e\u0301 👩🏽\u200d🚀"
XSS = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
LONG_COMMENT = "word " * 12_000  # about 12k tokens: over the embedded model's 8,192-token context


# ---------------------------------------------------------------------------- adapter folders


def _safetensors_bytes() -> bytes:
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    return struct.pack("<Q", len(header)) + header


def make_adapter(folder: Path, kind: str) -> str:
    """An adapter folder that is wrong in one way (``kind``)."""
    folder.mkdir(parents=True, exist_ok=True)
    lora = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}
    if kind == "not_lora":
        (folder / "README.md").write_text("just some notes\n")
    elif kind == "pickle":
        (folder / "adapter_config.json").write_text(json.dumps(lora))
        (folder / "adapter_model.bin").write_bytes(pickle.dumps({"lora_A": [0.0]}))
    elif kind == "pickle_beside":
        (folder / "adapter_config.json").write_text(json.dumps(lora))
        (folder / "adapter_model.safetensors").write_bytes(_safetensors_bytes())
        (folder / "adapter_model.bin").write_bytes(pickle.dumps({"lora_A": [0.0]}))
    elif kind == "prefix":
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "PREFIX_TUNING"}))
        (folder / "adapter_model.safetensors").write_bytes(_safetensors_bytes())
    elif kind == "fake_safetensors":
        (folder / "adapter_config.json").write_text(json.dumps(lora))
        (folder / "adapter_model.safetensors").write_bytes(b"\x80\x04not really safetensors" * 4)
    elif kind == "bad_config":
        (folder / "adapter_config.json").write_text("{not json")
        (folder / "adapter_model.safetensors").write_bytes(_safetensors_bytes())
    return str(folder)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-adapters")
    kinds = ("not_lora", "pickle", "pickle_beside", "prefix", "fake_safetensors", "bad_config")
    return {k: make_adapter(root / k, k) for k in kinds}


# ---------------------------------------------------------------------------- the endpoint cases

# (id, endpoint, arguments, expected message fragment). "{adapter:KIND}" is replaced by that
# adapter folder. A fragment of None means the call succeeds (checked separately below).
ENDPOINT_CASES = [
    ("compare-malformed-persona", "/compare", ("{oops", "", "hi", 8, 0.0, 0), "Persona is not valid JSON"),
    ("compare-wrong-key", "/compare", ((BAD / "wrong_keys_persona.json").read_text(), NEUTRAL, "hi", 8, 0.0, 0),
     "unknown persona key"),
    ("compare-persona-not-object", "/compare", ("[1, 2]", NEUTRAL, "hi", 8, 0.0, 0), "Persona is not valid"),
    ("compare-vector-short", "/compare", ("", json.dumps([0.5] * 89), "hi", 8, 0.0, 0), "expected 90 values, got 89"),
    ("compare-vector-long", "/compare", ("", json.dumps([0.5] * 91), "hi", 8, 0.0, 0), "expected 90 values, got 91"),
    ("compare-vector-nan", "/compare", ("", "[NaN" + ", 0.5" * 89 + "]", "hi", 8, 0.0, 0),
     "index 0: expected a finite number"),
    ("compare-vector-inf", "/compare", ("", "[0.5" * 1 + ", Infinity" + ", 0.5" * 88 + "]", "hi", 8, 0.0, 0),
     "index 1: expected a finite number"),
    ("compare-vector-negative", "/compare", ("", json.dumps([0.5] * 89 + [-0.1]), "hi", 8, 0.0, 0),
     "index 89: value -0.1 is outside [0, 1]"),
    ("compare-vector-string", "/compare", ("", json.dumps(["high"] + [0.5] * 89), "hi", 8, 0.0, 0),
     "index 0: expected a number"),
    ("compare-vector-object", "/compare", ("", '{"humor": 1}', "hi", 8, 0.0, 0), "expected a list of 90 numbers"),
    ("compare-empty-persona", "/compare", ("", "", "hi", 8, 0.0, 0), "Vector is empty and the persona has no"),
    ("compare-empty-prompt", "/compare", ("", NEUTRAL, " \n\t ", 8, 0.0, 0), "Prompt is empty"),
    ("compare-huge-prompt", "/compare", ("", NEUTRAL, "x" * 60_000, 8, 0.0, 0), "Prompt is 60,000 characters"),
    ("compare-beyond-context", "/compare",
     (json.dumps({"User-Generated Content": [{"prompt": "p", "comment": LONG_COMMENT}]}), NEUTRAL, "hi", 8, 0.0, 0),
     "nothing was truncated"),
    ("compare-tokens-string", "/compare", ("", NEUTRAL, "hi", "lots", 0.0, 0), "Expected a `float`"),
    ("compare-seed-negative", "/compare", ("", NEUTRAL, "hi", 8, 0.0, -5), "minimum"),
    ("profile-not-json", "/profile", ("hello",), "Vector is not valid JSON"),
    ("profile-nan", "/profile", ("[NaN" + ", 0.5" * 89 + "]",), "expected a finite number"),
    ("load-unknown-precision", "/load_model", ("embedded", "", "fp8", "auto", "", ""), "fp8"),
    ("load-not-lora", "/load_model", ("embedded", "", "auto", "auto", "{adapter:not_lora}", ""),
     "is not a LoRA adapter: adapter_config.json is missing"),
    ("load-pickle", "/load_model", ("embedded", "", "auto", "auto", "{adapter:pickle}", ""),
     "pickled weights are refused"),
    ("load-pickle-beside-safetensors", "/load_model", ("embedded", "", "auto", "auto", "", "{adapter:pickle_beside}"),
     "Adapter 'pba'"),
    ("load-prefix-tuning", "/load_model", ("embedded", "", "auto", "auto", "{adapter:prefix}", ""),
     "expected 'LORA'"),
    ("load-fake-safetensors", "/load_model", ("embedded", "", "auto", "auto", "{adapter:fake_safetensors}", ""),
     "is not a safetensors file"),
    ("load-bad-adapter-config", "/load_model", ("embedded", "", "auto", "auto", "{adapter:bad_config}", ""),
     "adapter_config.json is not valid JSON"),
    ("load-missing-adapter", "/load_model", ("embedded", "", "auto", "auto", "/nonexistent/ica", ""),
     "adapter folder not found"),
    ("load-traversal-model", "/load_model", ("../../../../../nonexistent-model", "", "auto", "auto", "", ""),
     "Model folder not found"),
    ("load-unknown-hub-model", "/load_model", ("nobody/no-such-model", "", "auto", "auto", "", ""),
     "Could not load the backbone 'nobody/no-such-model'"),
    ("annotator-blank", "/annotator", ("   ", "", NEUTRAL), "Give the annotator a name"),
    ("annotator-too-long", "/annotator", ("n" * 150, "", NEUTRAL), "at most 100 characters"),
    ("annotator-control-char", "/annotator", ("ann\x00ie", "", NEUTRAL), "control characters (found U+0000)"),
    ("annotator-vector-out-of-range", "/annotator", ("ok name", "", json.dumps([2.0] * 90)), "outside [0, 1]"),
    ("annotator-malformed-persona", "/annotator", ("ok name", (BAD / "malformed_persona.json").read_text(), NEUTRAL),
     "Persona is not valid JSON"),
    ("next-unknown-queue", "/next_item", ("keeper", "../../etc/passwd", "api", "", ""), "No queue named"),
    ("next-unknown-annotator", "/next_item", ("nobody at all", "bad-input-ready", "api", "", ""),
     "No annotator named 'nobody at all'"),
    ("next-settings-not-json", "/next_item", ("keeper", "bad-input-ready", "api", "", "{bad"),
     "Study settings are not valid JSON"),
    ("next-unknown-method", "/next_item", ("keeper", "bad-input-ready", "api", "", '{"method_1": "dpo"}'),
     "Study setting method_1: expected one of"),
    ("next-unknown-setting", "/next_item", ("keeper", "bad-input-ready", "api", "", '{"beam": 4}'),
     "Unknown study setting 'beam'"),
    ("next-unknown-target", "/next_item", ("keeper", "bad-input-ready", "api", "nobody", ""),
     "Unknown target persona 'nobody'"),
    ("save-bad-choice", "/save_choice", ("keeper", 1, "12", "maybe", "", "api", ""), "Choice must be one of"),
    ("save-unknown-pair", "/save_choice", ("keeper", 999_999, "12", "A", "", "api", ""), "999999"),
    ("save-bad-order", "/save_choice", ("keeper", 1, "xy", "A", "", "api", ""), "order"),
    ("export-unknown-format", "/export_annotations", ("", "xml", "preferences"), "xml"),
    ("agreement-unknown-queue", "/agreement", ("no such queue",), "no such queue"),
    ("infer-malformed", "/infer", ("{oops",), "Persona is not valid JSON"),
    ("infer-nothing", "/infer", ("{}",), "nothing to infer from"),
    ("user-compare-no-adapter", "/compare_user", ("", NEUTRAL, "hi", 8, 0.0, 0, ""), "Pick a per-user adapter first"),
    ("user-compare-unknown-adapter", "/compare_user", ("", NEUTRAL, "hi", 8, 0.0, 0, "99999"),
     "No per-user adapter with id 99999"),
    ("my-data-unknown", "/export_my_data", ("nobody at all",), "Nothing is stored under the annotator name"),
    ("my-data-blank", "/export_my_data", ("",), "Give the annotator a name"),
    ("delete-unconfirmed", "/delete_my_data", ("keeper", False), "Tick the confirmation box"),
]


@pytest.fixture(scope="module")
def saved_before(server, client) -> dict:
    """Rows saved before the bad inputs: an annotator (through the app), a queue of ready pairs and
    one choice. Returns what must still be there afterwards."""
    with Store.open(server.folder / "alignx.db") as store:
        if "bad-input-ready" not in {q["name"] for q in store.list_queues()}:
            store.add_queue("bad-input-ready", [{"prompt": f"ready prompt {i}", "responses": [f"one {i}", f"two {i}"]}
                                                for i in range(3)])
    persona = PERSONA_EXAMPLE.read_text()
    assert "annotator 'keeper'" in client.predict("keeper", persona, HUMOR, api_name="/annotator")
    item = client.predict("keeper", "bad-input-ready", "api", "", "", api_name="/next_item")
    saved = client.predict("keeper", item["pair_id"], item["order"], "A", "kept", "api", "",
                           api_name="/save_choice")
    with Store.open(server.folder / "alignx.db") as store:
        return {"annotator": store.load_annotator("keeper"), "choice": store.choices(choice_id=saved["id"])[0]}


def _args(args: tuple, adapters: dict) -> tuple:
    out = []
    for a in args:
        if isinstance(a, str) and a.startswith("{adapter:"):
            a = adapters[a[len("{adapter:"):-1]]
        out.append(a)
    return tuple(out)


@pytest.mark.parametrize("case_id,endpoint,args,fragment", ENDPOINT_CASES, ids=[c[0] for c in ENDPOINT_CASES])
def test_endpoint_bad_input_is_a_clear_message(client, saved_before, adapters, case_id, endpoint, args, fragment):
    with pytest.raises(Exception) as info:
        client.predict(*_args(args, adapters), api_name=endpoint)
    message = str(info.value)
    assert fragment in message, f"{case_id}: {message[:500]}"
    assert "Traceback" not in message
    # the same session keeps working
    assert client.predict(HUMOR, api_name="/profile") == "Likes humor"


def test_html_sql_and_unicode_are_stored_and_returned_verbatim(client, server, saved_before):
    """Not errors: HTML, SQL-looking and mixed-Unicode text is data. It is stored with query
    parameters (the tables survive), returned exactly, and shown escaped (tests/test_browser_security.py)."""
    xss = (BAD / "xss_persona.json").read_text()
    weird = (BAD / "sql_unicode_persona.json").read_text()
    for name, persona in ((SQL_NAME, weird), (UNICODE_NAME, xss)):
        assert "Saved annotator" in client.predict(name, persona, NEUTRAL, api_name="/annotator")
    with Store.open(server.folder / "alignx.db") as store:
        names = store.list_annotators()
        assert SQL_NAME in names and UNICODE_NAME in names and "keeper" in names
        assert store.load_annotator(UNICODE_NAME)[0].demographics == XSS
        assert "Robert'); DROP TABLE" in store.load_annotator(SQL_NAME)[0].demographics
    out = client.predict(xss, NEUTRAL, "Say hi.", 8, 0.0, 0, api_name="/compare")
    assert XSS in out[3]  # the ICA prompt holds the persona text exactly (the page escapes it)
    exported = json.loads(Path(client.predict(SQL_NAME, api_name="/export_my_data")).read_text(encoding="utf-8"))
    assert exported["annotator"] == SQL_NAME and "👩🏽‍🚀" in exported["identity"]["persona"]["Demographic Information"]


def test_oversized_upload_is_refused(server, client):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.json\"\r\n"
            "Content-Type: application/json\r\n\r\n").encode() + b"[" + b"0.5, " * 4_300_000 + b"0.5]\r\n" + \
        f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{server.url}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == 413 and "maximum" in info.value.read().decode().lower()
    assert client.predict(HUMOR, api_name="/profile") == "Likes humor"


def test_store_is_intact_after_every_case(server, client, saved_before):
    """Runs last in this file: the store passes integrity_check and what was saved first is unchanged."""
    db = server.folder / "alignx.db"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    assert {"personas", "annotators", "annotation_choices", "annotation_pairs", "user_adapters"} <= tables
    with Store.open(db) as store:
        assert store.load_annotator("keeper") == saved_before["annotator"]
        assert store.choices(choice_id=saved_before["choice"]["id"])[0] == saved_before["choice"]
    assert client.predict(HUMOR, api_name="/profile") == "Likes humor"


# ---------------------------------------------------------------------------- library loaders


def _raises(fn, fragment: str):
    with pytest.raises((ValueError, KeyError, OSError)) as info:
        fn()
    message = info.value.args[0] if isinstance(info.value, KeyError) else str(info.value)
    assert fragment in message, message
    return message


def _not_utf8(tmp: Path) -> Path:
    path = tmp / "latin1.json"
    path.write_bytes('{"Demographic Information": "caf\xe9"}'.encode("latin-1"))
    return path


def _oversized(tmp: Path) -> Path:
    path = tmp / "big.json"
    path.write_bytes(b" " * 2_100_000)
    return path


def _session_text(**changes) -> str:
    data = json.loads(session.Session().to_json())
    data.update(changes)
    return json.dumps(data)


LIBRARY_CASES = [
    ("persona-missing-file", lambda t: schema.load_persona(t / "nope.json"), "nope.json"),
    ("persona-malformed", lambda t: schema.load_persona(BAD / "malformed_persona.json"),
     "invalid JSON"),
    ("persona-wrong-keys", lambda t: schema.load_persona(BAD / "wrong_keys_persona.json"),
     "unknown persona key"),
    ("records-bad-jsonl-line", lambda t: schema.load_records(BAD / "records_bad_line.jsonl"),
     "line 2: invalid JSON"),
    ("records-wrong-keys", lambda t: schema.load_records(BAD / "records_wrong_keys.jsonl"),
     "missing required key 'prompt'"),
    ("session-not-json", lambda t: session.Session.from_json("{nope"), "JSON"),
    ("session-bad-vector", lambda t: session.Session.from_json(
        _session_text(vector=[0.5] * 3)), "vector"),
    ("session-unknown-precision", lambda t: session.Session.from_json(
        _session_text(backbone={"model": "embedded", "precision": "fp8"})), "precision"),
    ("queue-bad-row", lambda t: annotation.read_queue_file(BAD / "queue_bad.jsonl"),
     "line 2"),
    ("queue-oversized", lambda t: annotation.read_queue_file(
        BAD / "queue_bad.jsonl", max_bytes=10), "capped at 10 bytes"),
    ("queue-wrong-extension", lambda t: annotation.read_queue_file(
        BAD / "malformed_persona.json"), "upload a .jsonl or .csv file"),
    ("upload-oversized", lambda t: ui_common.read_upload(str(_oversized(t))),
     "uploads are capped at 2,000,000 bytes"),
    ("upload-not-utf8", lambda t: ui_common.read_upload(str(_not_utf8(t))),
     "is not UTF-8 text"),
    ("upload-gone", lambda t: ui_common.read_upload(str(t / "gone.json")), "is gone"),
    ("adapter-not-a-folder", lambda t: backbone.check_adapter_dir(t / "nope"),
     "adapter folder not found"),
    ("adapter-not-lora", lambda t: backbone.check_adapter_dir(
        make_adapter(t / "a1", "not_lora")), "adapter_config.json is missing"),
    ("adapter-pickle", lambda t: backbone.check_adapter_dir(
        make_adapter(t / "a2", "pickle")), "adapter_model.bin: pickled weights are refused"),
    ("adapter-pickle-beside", lambda t: backbone.check_adapter_dir(
        make_adapter(t / "a3", "pickle_beside")), "pickled weights are refused"),
    ("adapter-fake-safetensors", lambda t: backbone.check_adapter_dir(
        make_adapter(t / "a4", "fake_safetensors")), "is not a safetensors file"),
    ("benchmark-unknown", lambda t: benchmarks.get_benchmark("nope-bench"),
     "unknown benchmark 'nope-bench'"),
    ("privacy-unknown-annotator", lambda t: privacy.export_user(t / "p.db", "ghost"),
     "Nothing is stored"),
    ("store-control-char-name", lambda t: store.Store.open(":memory:").save_persona(
        "bell\x07", {}), "control characters"),
]


@pytest.mark.parametrize("case_id,call,fragment", LIBRARY_CASES, ids=[c[0] for c in LIBRARY_CASES])
def test_library_bad_input_is_a_clear_error(tmp_path, case_id, call, fragment):
    _raises(lambda: call(tmp_path), fragment)


# ---------------------------------------------------------------------------- command line


def run_main(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """`alignx.cli.main` in-process: (exit code, stdout, stderr); argparse exits are caught."""
    import sys

    from alignx.cli import main

    out, err, old_stdin = io.StringIO(), io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def _cli_cases(tmp: Path) -> list[tuple[str, list[str], str, str]]:
    pickle_dir = make_adapter(tmp / "cli-pickle", "pickle")
    db = tmp / "cli.db"
    Store.open(db).close()
    return [
        ("profile-nan", ["profile"], "[[NaN" + ", 0.5" * 89 + "]]", "expected a finite number"),
        ("profile-not-json", ["profile"], "{oops", "stdin is not JSON"),
        ("profile-parse-unknown-label", ["profile", "--parse"], "Likes volcanoes", "Likes volcanoes"),
        ("generate-missing-persona", ["generate", "--persona", str(tmp / "missing.json"), "--prompt", "hi"], "",
         "missing.json"),
        ("generate-unknown-method", ["generate", "--method", "dpo", "--prompt", "hi"], "", "invalid choice: 'dpo'"),
        ("generate-bad-adapter-spec", ["generate", "--method", "universal", "--prompt", "hi", "--adapter", "ica"], "",
         "NAME=FOLDER"),
        ("generate-pickle-adapter", ["generate", "--method", "universal", "--prompt", "hi", "--adapter",
                                     f"ica={pickle_dir}"], "", "pickled weights are refused"),
        ("infer-malformed", ["infer", "--persona", str(BAD / "malformed_persona.json")], "", "invalid JSON"),
        ("evaluate-unknown-benchmark", ["eval", "--benchmark", "nope-bench", "--data", str(tmp), "--method", "pba"],
         "", "nope-bench"),
        ("privacy-missing-store", ["privacy", "export", "--annotator", "a", "--db", str(tmp / "none.db")], "",
         "no alignx store at"),
        ("privacy-unknown-annotator", ["privacy", "export", "--annotator", "ghost", "--db", str(db)], "",
         "Nothing is stored under the annotator name 'ghost'"),
        ("privacy-unknown-action", ["privacy", "erase", "--annotator", "a"], "", "invalid choice: 'erase'"),
    ]


def test_cli_bad_input_is_one_clear_error(tmp_path):
    for case_id, argv, stdin, fragment in _cli_cases(tmp_path):
        code, out, err = run_main(argv, stdin)
        assert code == 2, f"{case_id}: exit {code}, stderr {err!r}"
        assert fragment in err, f"{case_id}: {err!r}"
        assert "Traceback" not in err, case_id


# ---------------------------------------------------------------------------- locked settings


@pytest.fixture
def locked(monkeypatch, tmp_path):
    """A server locked with ALIGNX_LOCK_SETTINGS=1 whose host runs the embedded model with one adapter."""
    from alignx import compare
    from alignx.session import BackboneSettings

    monkeypatch.setenv("ALIGNX_LOCK_SETTINGS", "1")
    monkeypatch.setenv("ALIGNX_DB", str(tmp_path / "alignx.db"))
    host = BackboneSettings(adapters={"ica": "assets/adapters/ica"})
    monkeypatch.setattr(compare, "_HOST_BACKBONE", [host])
    return host


def test_locked_settings_refuse_any_other_backbone(locked, tmp_path):
    from alignx import compare
    from alignx.session import BackboneSettings

    compare.check_backbone_allowed(locked)  # the host's own backbone runs
    trained = str(tmp_path / "adapters" / "ada" / "s1")  # a per-user adapter trained into the data folder
    compare.check_backbone_allowed(BackboneSettings(adapters={**locked.adapters, "user": trained}))
    others = [BackboneSettings(model="/etc"), BackboneSettings(model="nobody/other-model", adapters=locked.adapters),
              BackboneSettings(adapters={"ica": "../../../../tmp/evil"}), BackboneSettings(precision="fp32",
                                                                                         adapters=locked.adapters),
              BackboneSettings(adapters={**locked.adapters, "user": "/tmp/elsewhere"})]
    for settings in others:  # e.g. from an imported session file: refused before any file is read
        with pytest.raises(compare.SettingsLockedError, match="locked on this server .ALIGNX_LOCK_SETTINGS=1."):
            compare.check_backbone_settings(settings)
    with pytest.raises(compare.SettingsLockedError, match="cannot be changed from the app"):
        compare.load(None, BackboneSettings(model="/etc"))


def test_locked_settings_tab_is_read_only_and_load_model_refuses(locked):
    import gradio as gr

    from alignx.backbone import BackboneCache
    from alignx.session import Session
    from alignx.ui.common import AppContext
    from alignx.ui.settings import build_settings

    start = Session(backbone=locked)
    with gr.Blocks() as demo:
        view = build_settings(AppContext(models=BackboneCache(), defaults=start, db_path=":memory:"), gr.State(start))
    assert all(box.interactive is False for box in view.outputs)
    load_model = next(f for f in demo.fns.values() if f.api_name == "load_model")
    with pytest.raises(gr.Error, match="locked on this server"):
        load_model.fn("/etc", "", "auto", "auto", "", "", start)
