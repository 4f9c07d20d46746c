"""The SQLite store (sqlite-utils): saved personas now, annotations and sessions later.

One file, in WAL mode, opened per use. The schema is built by ordered, named migrations recorded
in a ``_migrations`` table (sqlite-utils' `Migrations`), so opening an older database upgrades
it and reopening is a no-op. A later feature adds a table by appending one function::

    @MIGRATIONS()
    def m002_annotations(db):
        db["annotations"].create({...}, pk="id")

Usage::

    from alignx.store import Store
    with Store.open("alignx.db") as store:      # or Store.open(":memory:") in tests
        store.save_persona("outdoor guide", persona)
        store.list_personas()                    # ["outdoor guide"]
        store.load_persona("outdoor guide")      # -> alignx.schema.Persona

The path defaults to ``$ALIGNX_DB``, else ``~/.local/share/alignx/alignx.db`` (`default_path`).
A connection belongs to the thread that opened it, so a server opens one per request; that is
cheap (a few file operations, and a single query when there is nothing to migrate).
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import sqlite_utils
from sqlite_utils.migrations import Migrations

from alignx.schema import Persona, SchemaError, persona_from_dict, persona_to_dict

MAX_NAME = 100


class StoreError(ValueError):
    """A store request cannot be done (bad name, unknown persona); the message says why."""


class _AlignxMigrations(Migrations):
    migrations_table = "_migrations"


MIGRATIONS = _AlignxMigrations("alignx")


@MIGRATIONS()
def m001_personas(db: sqlite_utils.Database) -> None:
    """Saved personas: the AlignX-format JSON, by unique name."""
    db["personas"].create(
        {"name": str, "persona": str, "created_at": str, "updated_at": str},
        pk="name", not_null={"persona", "created_at", "updated_at"},
    )


def default_path() -> Path:
    """``$ALIGNX_DB``, else ``~/.local/share/alignx/alignx.db``."""
    env = os.environ.get("ALIGNX_DB")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "alignx" / "alignx.db"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise StoreError("Give the persona a name (1 to 100 characters).")
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise StoreError(f"Persona names have at most {MAX_NAME} characters; this one has {len(name)}.")
    return name


class Store:
    """A sqlite-utils database with the alignx schema applied.

    Args:
        db (`sqlite_utils.Database`): an open database; `Store.open` is the usual way in.
    """

    def __init__(self, db: sqlite_utils.Database):
        self.db = db

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> Store:
        """Open (creating if needed) the database at ``path``, enable WAL and apply migrations.

        Args:
            path: a file path, ``":memory:"`` for a private in-memory database, or `None` for
                `default_path`. Parent folders are created.
        """
        path = default_path() if path is None else path
        if str(path) == ":memory:":
            db = sqlite_utils.Database(memory=True)
        else:
            path = Path(path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite_utils.Database(path)
            db.enable_wal()
        store = cls(db)
        store.migrate()
        return store

    def migrate(self) -> list[str]:
        """Apply pending migrations in order; returns the names applied (empty when current)."""
        pending = [m.name for m in MIGRATIONS.pending(self.db)]
        if pending:
            MIGRATIONS.apply(self.db)
        return pending

    def applied_migrations(self) -> list[str]:
        """Names of the migrations recorded in ``_migrations``, in the order applied."""
        return [m.name for m in MIGRATIONS.applied(self.db)]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- personas ----------------------------------------------------------------------------

    def save_persona(self, name: str, persona: Persona | dict) -> bool:
        """Save a persona under ``name`` (whitespace collapsed), replacing one of the same name.

        Returns:
            `bool`: True if it replaced an existing persona.

        Raises:
            StoreError: a blank or too long name. SchemaError: an invalid persona dict.
        """
        name = _check_name(name)
        if not isinstance(persona, Persona):
            persona = persona_from_dict(persona)
        data = json.dumps(persona_to_dict(persona), ensure_ascii=False)
        table, now = self.db["personas"], _now()
        with self.db.atomic():
            try:
                created = table.get(name)["created_at"]
                existed = True
            except sqlite_utils.db.NotFoundError:
                created, existed = now, False
            table.upsert({"name": name, "persona": data, "created_at": created, "updated_at": now}, pk="name")
        return existed

    def load_persona(self, name: str) -> Persona:
        """The persona saved under ``name``.

        Raises:
            StoreError: no persona of that name (the message lists the saved ones).
            SchemaError: the stored JSON is no longer a valid persona.
        """
        name = _check_name(name)
        try:
            row = self.db["personas"].get(name)
        except sqlite_utils.db.NotFoundError:
            saved = ", ".join(repr(n) for n in self.list_personas()) or "none yet"
            raise StoreError(f"No saved persona named {name!r} (saved: {saved}).") from None
        try:
            return persona_from_dict(json.loads(row["persona"]), source=f"store:{name}")
        except json.JSONDecodeError as exc:
            raise SchemaError(f"stored JSON is corrupt: {exc}", source=f"store:{name}") from exc

    def list_personas(self) -> list[str]:
        """Saved persona names, sorted case-insensitively."""
        return [r["name"] for r in self.db.query("select name from personas order by lower(name), name")]

    def delete_persona(self, name: str) -> None:
        """Delete a saved persona. Raises `StoreError` if there is none of that name."""
        name = _check_name(name)
        with self.db.atomic():
            if self.db.execute("delete from personas where name = ?", [name]).rowcount == 0:
                raise StoreError(f"No saved persona named {name!r}.")
