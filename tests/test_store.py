"""Tests for alignx.store: migrations, WAL, exact schema, persona save / load / list / delete."""

from __future__ import annotations

import sqlite3

import pytest

from alignx.prompts import EXAMPLE_PERSONA
from alignx.schema import Persona, SchemaError
from alignx.store import MIGRATIONS, Store, StoreError, default_path

PERSONAS_SQL = """CREATE TABLE "personas" (
   "name" TEXT PRIMARY KEY,
   "persona" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "updated_at" TEXT NOT NULL
)"""
MIGRATIONS_SQL = """CREATE TABLE "_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
)"""


@pytest.fixture
def fresh_store():
    store = Store.open(":memory:")
    yield store
    store.close()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "sub" / "alignx.db"


ALL = ["m001_personas", "m002_annotators", "m003_annotation_queues", "m004_annotation_choices", "m005_user_adapters"]


def test_exact_schema(fresh_store):
    assert fresh_store.db.table_names()[:2] == ["_migrations", "personas"]
    assert fresh_store.db["personas"].schema == PERSONAS_SQL
    assert fresh_store.db["_migrations"].schema == MIGRATIONS_SQL


def test_migrations_are_recorded_and_idempotent(db_path):
    with Store.open(db_path) as store:
        assert store.applied_migrations() == ALL  # named, in order
        assert store.migrate() == []  # nothing pending
    with Store.open(db_path) as store:  # reopening applies nothing twice
        rows = list(store.db.query("select migration_set, name from _migrations"))
        assert rows == [{"migration_set": "alignx", "name": name} for name in ALL]
        assert store.migrate() == []


def test_a_new_migration_upgrades_an_old_database(db_path):
    with Store.open(db_path) as store:
        store.save_persona("kept", EXAMPLE_PERSONA)

    def m999_notes(db):
        db["notes"].create({"id": int, "text": str}, pk="id")

    MIGRATIONS()(m999_notes)
    try:
        with Store.open(db_path) as store:
            assert store.applied_migrations() == [*ALL, "m999_notes"]
            assert "notes" in store.db.table_names()
            assert store.load_persona("kept") == EXAMPLE_PERSONA  # data survives the upgrade
    finally:
        MIGRATIONS._migrations.pop()


def test_failed_migration_rolls_back_and_stays_pending(db_path):
    Store.open(db_path).close()

    def m998_broken(db):
        db["half"].create({"id": int}, pk="id")
        raise RuntimeError("boom")

    MIGRATIONS()(m998_broken)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            Store.open(db_path)
        with sqlite3.connect(db_path) as conn:
            tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
            names = [r[0] for r in conn.execute("select name from _migrations")]
        assert "half" not in tables and names == ALL
    finally:
        MIGRATIONS._migrations.pop()


def test_wal_is_on_for_files(db_path):
    with Store.open(db_path) as store:
        assert store.db.journal_mode == "wal"
    with sqlite3.connect(db_path) as conn:  # persistent: any later connection sees WAL
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_persona_round_trip(fresh_store):
    assert fresh_store.save_persona("outdoorsy", EXAMPLE_PERSONA) is False
    assert fresh_store.load_persona("outdoorsy") == EXAMPLE_PERSONA
    # the stored text is the AlignX persona format
    row = fresh_store.db["personas"].get("outdoorsy")
    assert '"Demographic Information"' in row["persona"] and row["created_at"] == row["updated_at"]


def test_persona_with_directions_round_trip(fresh_store):
    from alignx.personas import load_examples

    for name, persona in load_examples().items():
        fresh_store.save_persona(name, persona)
        assert fresh_store.load_persona(name) == persona


def test_save_replaces_and_keeps_created_at(fresh_store):
    fresh_store.save_persona("p", Persona(demographics="A chef."))
    created = fresh_store.db["personas"].get("p")["created_at"]
    assert fresh_store.save_persona("  p ", {"Demographic Information": "A baker."}) is True
    assert fresh_store.load_persona("p").demographics == "A baker."
    assert fresh_store.db["personas"].get("p")["created_at"] == created
    assert fresh_store.db["personas"].count == 1


def test_list_and_delete(fresh_store):
    for name in ["beta", "Alpha", "gamma  two"]:
        fresh_store.save_persona(name, Persona())
    assert fresh_store.list_personas() == ["Alpha", "beta", "gamma two"]
    fresh_store.delete_persona("beta")
    assert fresh_store.list_personas() == ["Alpha", "gamma two"]
    with pytest.raises(StoreError, match="No saved persona named 'beta'"):
        fresh_store.delete_persona("beta")


@pytest.mark.parametrize("name", ["", "   ", None, "x" * 101])
def test_bad_names_are_clear_errors(fresh_store, name):
    with pytest.raises(StoreError, match="name|at most 100"):
        fresh_store.save_persona(name, Persona())


def test_unknown_and_invalid_personas(fresh_store):
    fresh_store.save_persona("a", Persona())
    with pytest.raises(StoreError, match=r"No saved persona named 'nobody' \(saved: 'a'\)"):
        fresh_store.load_persona("nobody")
    with pytest.raises(SchemaError, match="unknown persona key"):
        fresh_store.save_persona("b", {"Favourite colour": "blue"})
    fresh_store.db["personas"].update("a", {"persona": "{not json"})
    with pytest.raises(SchemaError, match="stored JSON is corrupt"):
        fresh_store.load_persona("a")


def test_default_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ALIGNX_DB", str(tmp_path / "x.db"))
    assert default_path() == tmp_path / "x.db"
    monkeypatch.delenv("ALIGNX_DB")
    assert default_path().parts[-3:] == ("share", "alignx", "alignx.db")
