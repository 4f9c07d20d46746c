"""Privacy: everything stored under an annotator name can be exported and deleted, from the library,
the CLI and the app; nothing else is touched; the app says what it stores and runs without analytics.

Library and CLI tests use a real SQLite file in a temp folder; the app tests use the one shared
`python app.py` (tests/appserver.py) through `gradio_client`.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from alignx import privacy
from alignx.store import Store, data_dir

from test_bad_input import run_main

PERSONA = Path(__file__).parent / "fixtures" / "persona_example.json"
VECTOR = [0.5] * 90


def fill_store(db: Path) -> dict:
    """Two annotators, each with an identity, choices on a given and a generated pair, and one adapter
    folder; returns the ids."""
    persona = json.loads(PERSONA.read_text())
    with Store.open(db) as store:
        store.add_queue("q", [{"prompt": "given prompt", "responses": ["r1", "r2"]}, {"prompt": "generated prompt"}])
        items = {r["prompt"]: r["id"] for r in store.db.query("select id, prompt from annotation_items")}
        ids = {}
        for who in ("ada", "bob"):
            store.save_annotator(who, {**persona, "Demographic Information": f"{who} demographics"}, VECTOR)
            given = store.find_pair(items["given prompt"], "x")
            mine = store.add_pair(items["generated prompt"], f"cond-{who}", [f"{who} a", f"{who} b"], ["ica", "pba"], {})
            c1 = store.add_choice(pair_id=given["id"], annotator=who, session_id="s", shown_order="12", choice="A",
                                  rationale=f"{who} why", persona_mode="own", persona=persona, vector=VECTOR)
            c2 = store.add_choice(pair_id=mine["id"], annotator=who, session_id="s", shown_order="21", choice="B",
                                  rationale="", persona_mode="own", persona=persona, vector=VECTOR)
            folder = data_dir(db) / "adapters" / who / "s"
            folder.mkdir(parents=True)
            (folder / "adapter_model.safetensors").write_bytes(b"x")
            adapter = store.add_user_adapter(who, "s", str(folder), 2)
            ids[who] = {"choices": [c1, c2], "pair": mine["id"], "given": given["id"], "adapter": adapter,
                        "folder": folder}
    return ids


def test_export_holds_everything_under_the_name_and_nothing_else(tmp_path):
    db = tmp_path / "alignx.db"
    ids = fill_store(db)
    data = privacy.export_user(db, "  ada ")
    assert data["annotator"] == "ada"
    assert data["identity"]["persona"]["Demographic Information"] == "ada demographics"
    assert [c["id"] for c in data["choices"]] == ids["ada"]["choices"]
    assert {c["rationale"] for c in data["choices"]} == {"ada why", ""}
    assert [a["id"] for a in data["adapters"]] == [ids["ada"]["adapter"]]
    assert "bob" not in json.dumps(data)
    out = privacy.write_export(db, "ada", tmp_path / "out" / "ada.json")
    assert json.loads(out.read_text(encoding="utf-8"))["choices"] == json.loads(json.dumps(data["choices"]))


def test_delete_removes_only_that_annotator(tmp_path):
    db = tmp_path / "alignx.db"
    ids = fill_store(db)
    outside = tmp_path / "not-in-data-dir"
    outside.mkdir()
    with Store.open(db) as store:  # an adapter row pointing outside the data folder is never rmtree'd
        store.add_user_adapter("ada", "s2", str(outside), 0)

    result = privacy.delete_user(db, "ada")
    assert result == {"annotator": "ada", "identity": 1, "choices": 2, "adapters": 2, "pairs": 1, "folders": 1}
    assert outside.is_dir() and not ids["ada"]["folder"].exists() and ids["bob"]["folder"].is_dir()
    with Store.open(db) as store:
        assert store.list_annotators() == ["bob"]
        assert store.choices(annotator="ada", include_undone=True) == []
        assert len(store.choices(annotator="bob")) == 2
        pairs = {r["id"] for r in store.db.query("select id from annotation_pairs")}
        assert ids["ada"]["pair"] not in pairs  # generated from ada's persona: gone
        assert {ids["bob"]["pair"], ids["ada"]["given"]} <= pairs  # bob's, and the queue file's own pair: kept
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with pytest.raises(privacy.PrivacyError, match="Nothing is stored under the annotator name 'ada'"):
        privacy.delete_user(db, "ada")


def test_cli_export_and_delete(tmp_path):
    db = tmp_path / "alignx.db"
    fill_store(db)
    out = tmp_path / "bob.json"
    code, stdout, err = run_main(["privacy", "export", "--annotator", "bob", "--db", str(db), "--out", str(out)])
    assert code == 0, err
    assert "wrote 2 choices, 1 adapters and the identity of 'bob'" in stdout
    assert json.loads(out.read_text())["annotator"] == "bob"

    code, _, err = run_main(["privacy", "delete", "--annotator", "bob", "--db", str(db)])
    assert code == 2 and "this would delete the identity, 2 choices and 1 adapters of 'bob'; add --yes" in err
    assert Store.open(db).list_annotators() == ["ada", "bob"]  # nothing deleted without --yes

    code, stdout, err = run_main(["privacy", "delete", "--annotator", "bob", "--db", str(db), "--yes"])
    assert code == 0, err
    assert stdout.startswith("Deleted everything stored under 'bob': 1 identity, 2 choices")
    assert Store.open(db).list_annotators() == ["ada"]


def test_app_export_then_delete_my_data(client):
    name = "privacy app user"
    persona = json.loads(PERSONA.read_text())
    persona["Demographic Information"] = "the privacy test's own persona"
    client.predict(name, json.dumps(persona), json.dumps(VECTOR), api_name="/annotator")
    exported = json.loads(Path(client.predict(name, api_name="/export_my_data")).read_text(encoding="utf-8"))
    assert exported["annotator"] == name
    assert exported["identity"]["persona"]["Demographic Information"] == "the privacy test's own persona"

    with pytest.raises(Exception, match="Tick the confirmation box"):
        client.predict(name, False, api_name="/delete_my_data")
    assert "Deleted everything stored under 'privacy app user': 1 identity" in \
        client.predict(name, True, api_name="/delete_my_data")
    with pytest.raises(Exception, match="Nothing is stored under the annotator name"):
        client.predict(name, api_name="/export_my_data")


def test_notice_is_shown_and_analytics_are_off(server):
    with urllib.request.urlopen(f"{server.url}config", timeout=30) as r:
        config = json.loads(r.read().decode())
    assert config["analytics_enabled"] is False
    texts = [c.get("props", {}).get("value") for c in config["components"]]
    notice = next(t for t in texts if isinstance(t, str) and t.startswith("**What is stored, and where.**"))
    assert notice == privacy.NOTICE
    assert "local SQLite" in notice and "analytics are off" in notice and "sensitive" in notice and "age" in notice
    labels = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {"export-my-data", "delete-my-data", "confirm-delete"} <= labels
