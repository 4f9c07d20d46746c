"""The SQLite store (sqlite-utils): saved personas, annotators, annotation queues, choices and
per-user adapters.

One file, in WAL mode, opened per use. The schema is built by ordered, named migrations recorded
in a ``_migrations`` table (sqlite-utils' `Migrations`), so opening an older database upgrades
it and reopening is a no-op. A later feature adds a table by appending one function::

    @MIGRATIONS()
    def m006_notes(db):
        db["notes"].create({...}, pk="id")

Usage::

    from alignx.store import Store
    with Store.open("alignx.db") as store:      # or Store.open(":memory:") in tests
        store.save_persona("outdoor guide", persona)
        store.list_personas()                    # ["outdoor guide"]
        store.load_persona("outdoor guide")      # -> alignx.schema.Persona
        store.add_queue("trip prompts", [{"prompt": "Any tips for a weekend trip?"}])
        store.export_jsonl("annotations.jsonl") # AlignX-format records, one per choice

The path defaults to ``$ALIGNX_DB``, else ``~/.local/share/alignx/alignx.db`` (`default_path`).
A connection belongs to the thread that opened it, so a server opens one per request; that is
cheap (a few file operations, and a single query when there is nothing to migrate).

**Durability.** Every write is one transaction, committed before the method returns. File
databases run WAL with ``synchronous=FULL``: the WAL is fsynced at every commit, so a choice the
app has acknowledged survives a killed process *and* a power cut. ``NORMAL`` would survive only
the former (WAL commits after the last checkpoint can roll back on power loss); one fsync per
human click is cheap, so FULL it is.

**Annotations** (the tables of m002-m005). A *queue* is an ordered list of prompts (*items*). A
*pair* is the two responses shown for an item, generated once per *condition* (the methods,
decoding settings and persona that produced them) and shared by every annotator under that
condition, which is what makes agreement measurable. A *choice* is one annotator's judgement of
one pair: the order the pair was shown in (``"12"``: response 1 was A), ``A`` / ``B`` / ``tie`` /
``both_bad`` / ``skip``, an optional rationale, and a snapshot of the persona and the 90-dim
preference vector the annotator judged as. Undo marks a choice ``undone_at``; it is then left out
of progress, export and agreement.

**Export** writes one AlignX record per active choice: ``prompt``, ``chosen``, ``rejected``,
``Preference Direction`` (the annotator's vector), ``Demographic Information``,
``User-Generated Content`` and ``Pair-wise Comparative Feedback`` (the persona), plus an
``Annotation`` object (annotator, session, queue, position, condition, sources, settings, shown
order, choice, rationale, persona mode, time) from which `import_records` rebuilds the rows, so
export -> import -> export is byte-identical.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import threading
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

import sqlite_utils
from sqlite_utils.migrations import Migrations

from alignx.preferences import N_DIMS, NEUTRAL, VectorError, validate_vector
from alignx.schema import (KEY_DEMOGRAPHICS, KEY_PAIRS, KEY_UGC, Persona, Record, SchemaError,
                           persona_from_dict, persona_to_dict, record_to_dict, save_records)

MAX_NAME = 100
# How long a writer waits for another's transaction before "database is locked".
BUSY_TIMEOUT_MS = 30_000
MAX_RATIONALE = 2000
CHOICES = ("A", "B", "tie", "both_bad", "skip")
ORDERS = ("12", "21")
PERSONA_MODES = ("own", "target")
INCLUDE = ("preferences", "all")
ADAPTER_STATUSES = ("queued", "running", "done", "failed")
KEY_ANNOTATION = "Annotation"

_MIGRATE_LOCK = threading.Lock()


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


@MIGRATIONS()
def m002_annotators(db: sqlite_utils.Database) -> None:
    """Annotators by unique name, with their own persona (AlignX JSON) and 90-dim vector (JSON)."""
    db["annotators"].create(
        {"name": str, "persona": str, "vector": str, "created_at": str, "updated_at": str},
        pk="name", not_null={"persona", "vector", "created_at", "updated_at"},
    )


@MIGRATIONS()
def m003_annotation_queues(db: sqlite_utils.Database) -> None:
    """Queues of prompts (items) and the response pairs generated for them, one per condition."""
    db["annotation_queues"].create({"name": str, "source": str, "created_at": str}, pk="name",
                                   not_null={"source", "created_at"})
    db["annotation_items"].create(
        {"id": int, "queue": str, "position": int, "prompt": str}, pk="id",
        not_null={"queue", "position", "prompt"}, foreign_keys=[("queue", "annotation_queues", "name")],
    )
    db["annotation_items"].create_index(["queue", "position"], unique=True)
    db["annotation_pairs"].create(
        {"id": int, "item_id": int, "condition": str, "response_1": str, "response_2": str, "source_1": str,
         "source_2": str, "settings": str, "created_at": str}, pk="id",
        not_null={"item_id", "condition", "response_1", "response_2", "source_1", "source_2", "settings",
                  "created_at"},
        foreign_keys=[("item_id", "annotation_items", "id")],
    )
    db["annotation_pairs"].create_index(["item_id", "condition"], unique=True)


@MIGRATIONS()
def m004_annotation_choices(db: sqlite_utils.Database) -> None:
    """One row per judgement: the shown order, the choice, the rationale and the persona snapshot.
    At most one active (not undone) choice per pair and annotator."""
    db["annotation_choices"].create(
        {"id": int, "pair_id": int, "annotator": str, "session_id": str, "shown_order": str, "choice": str,
         "rationale": str, "persona_mode": str, "persona": str, "vector": str, "created_at": str,
         "undone_at": str}, pk="id",
        not_null={"pair_id", "annotator", "session_id", "shown_order", "choice", "rationale", "persona_mode",
                  "persona", "vector", "created_at"},
        foreign_keys=[("pair_id", "annotation_pairs", "id")],
    )
    db["annotation_choices"].create_index(["annotator", "session_id"])
    db.execute('CREATE UNIQUE INDEX "idx_annotation_choices_active" ON "annotation_choices" '
               '("pair_id", "annotator") WHERE "undone_at" IS NULL')


@MIGRATIONS()
def m005_user_adapters(db: sqlite_utils.Database) -> None:
    """Per-user LoRA adapters trained on one annotator's choices: folder, job status and metrics."""
    db["user_adapters"].create(
        {"id": int, "annotator": str, "session_id": str, "path": str, "status": str, "progress": float,
         "n_pairs": int, "message": str, "metrics": str, "pid": int, "created_at": str, "updated_at": str},
        pk="id", not_null={"annotator", "session_id", "path", "status", "progress", "n_pairs", "message",
                           "metrics", "created_at", "updated_at"},
    )
    db["user_adapters"].create_index(["annotator", "session_id"])


def default_path() -> Path:
    """``$ALIGNX_DB``, else ``~/.local/share/alignx/alignx.db``."""
    env = os.environ.get("ALIGNX_DB")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "alignx" / "alignx.db"


def data_dir(db_path: str | os.PathLike | None = None) -> Path:
    """The alignx data folder: the folder of the store (``$ALIGNX_DB``'s folder, else
    ``~/.local/share/alignx``). Per-user adapters live under ``<data_dir>/adapters``."""
    path = default_path() if db_path is None or str(db_path) == ":memory:" else Path(db_path).expanduser()
    return path.parent


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _check_name(name, what: str = "persona") -> str:
    if not isinstance(name, str) or not name.strip():
        raise StoreError(f"Give the {what} a name (1 to {MAX_NAME} characters).")
    name = " ".join(name.split())
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise StoreError(f"{what.capitalize()} names cannot hold control characters (found U+{ord(control):04X}).")
    if len(name) > MAX_NAME:
        raise StoreError(f"{what.capitalize()} names have at most {MAX_NAME} characters; this one has {len(name)}.")
    return name


def _check_vector(vector, what: str = "vector") -> list[float]:
    try:
        return [float(x) for x in validate_vector(vector, what=what)]
    except VectorError as exc:
        raise StoreError(f"{exc}.") from exc


def _as_persona(persona) -> Persona:
    return persona if isinstance(persona, Persona) else persona_from_dict(persona)


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


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
            db.execute("PRAGMA synchronous=FULL")  # see "Durability" in the module docstring
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # writers queue behind one another
        db.execute("PRAGMA foreign_keys=ON")
        store = cls(db)
        store.migrate()
        return store

    def migrate(self) -> list[str]:
        """Apply pending migrations in order; returns the names applied (empty when current)."""
        pending = [m.name for m in MIGRATIONS.pending(self.db)]
        if pending:
            with _MIGRATE_LOCK:  # two request threads opening a new file must not both migrate
                pending = [m.name for m in MIGRATIONS.pending(self.db)]
                if pending:
                    MIGRATIONS.apply(self.db)
        return pending

    def applied_migrations(self) -> list[str]:
        """Names of the migrations recorded in ``_migrations``, in the order applied."""
        return [m.name for m in MIGRATIONS.applied(self.db)]

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Store]:
        """One write transaction, committed on exit, rolled back on an error (nested: a savepoint).

        It starts with ``BEGIN IMMEDIATE``, taking the write lock before the first read: a
        deferred transaction that reads and then writes fails at once with "database is locked"
        when another connection committed in between (SQLite cannot wait for a stale snapshot),
        whereas an immediate one waits its turn (up to the busy timeout).
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield self
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

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
        table, now = self.db["personas"], _now_seconds()
        with self.write():
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
        with self.write():
            if self.db.execute("delete from personas where name = ?", [name]).rowcount == 0:
                raise StoreError(f"No saved persona named {name!r}.")

    # -- annotators --------------------------------------------------------------------------

    def save_annotator(self, name: str, persona: Persona | dict, vector) -> bool:
        """Save (or update) an annotator's own persona and 90-dim preference vector.

        Returns:
            `bool`: True if the annotator existed already.

        Raises:
            StoreError: a bad name or vector. SchemaError: an invalid persona.
        """
        name = _check_name(name, "annotator")
        persona, vector = _as_persona(persona), _check_vector(vector)
        table, now = self.db["annotators"], _now()
        with self.write():
            existed = table.count_where("name = ?", [name]) > 0
            row = {"name": name, "persona": _dumps(persona_to_dict(persona)), "vector": _dumps(vector),
                   "updated_at": now}
            if existed:
                table.update(name, row)
            else:
                table.insert({**row, "created_at": now})
        return existed

    def load_annotator(self, name: str) -> tuple[Persona, list[float]]:
        """An annotator's own (persona, vector).

        Raises:
            StoreError: no annotator of that name.
        """
        name = _check_name(name, "annotator")
        try:
            row = self.db["annotators"].get(name)
        except sqlite_utils.db.NotFoundError:
            raise StoreError(f"No annotator named {name!r}: save the identity first (name, persona and "
                             "preference vector).") from None
        return persona_from_dict(json.loads(row["persona"])), json.loads(row["vector"])

    def list_annotators(self) -> list[str]:
        """Annotator names, sorted case-insensitively."""
        return [r["name"] for r in self.db.query("select name from annotators order by lower(name), name")]

    # -- queues and pairs --------------------------------------------------------------------

    def add_queue(self, name: str, rows: Iterable[dict], source: str = "") -> int:
        """Create a queue of prompts. Idempotent: the same prompts under the same name are a no-op.

        Args:
            name (`str`): the queue's name.
            rows (iterable of `dict`): ``{"prompt": str}``, optionally with ``"responses": [r1, r2]``
                and ``"sources": [s1, s2]`` (a pair given in the file; it is shown whatever the
                study settings).
            source (`str`): where the prompts came from (a file name), for the record.

        Returns:
            `int`: the number of items.

        Raises:
            StoreError: a bad name, no prompts, or a queue of that name with other prompts.
        """
        name = _check_name(name, "queue")
        rows = list(rows)
        if not rows:
            raise StoreError(f"Queue {name!r} has no prompts.")
        with self.write():
            existing = [r["prompt"] for r in self.db.query(
                "select prompt from annotation_items where queue = ? order by position", [name])]
            if existing or self.db["annotation_queues"].count_where("name = ?", [name]):
                if existing == [r["prompt"] for r in rows]:
                    return len(existing)
                raise StoreError(f"A queue named {name!r} already exists with other prompts; pick another name.")
            self.db["annotation_queues"].insert({"name": name, "source": source or "", "created_at": _now()})
            for position, row in enumerate(rows, start=1):
                item_id = self.db["annotation_items"].insert(
                    {"queue": name, "position": position, "prompt": row["prompt"]}).last_pk
                if row.get("responses"):
                    sources = row.get("sources") or ["given", "given"]
                    self._insert_pair(item_id, "given", row["responses"], sources, {"given": True})
        return len(rows)

    def list_queues(self) -> list[dict]:
        """Every queue: ``{"name", "source", "n_items"}``, by name."""
        return list(self.db.query(
            "select q.name, q.source, count(i.id) as n_items from annotation_queues q "
            "left join annotation_items i on i.queue = q.name group by q.name order by lower(q.name), q.name"))

    def queue_size(self, queue: str) -> int:
        """The number of items in a queue. Raises `StoreError` for an unknown queue."""
        self._check_queue(queue)
        return self.db["annotation_items"].count_where("queue = ?", [queue])

    def _check_queue(self, queue: str) -> None:
        if not self.db["annotation_queues"].count_where("name = ?", [queue]):
            known = ", ".join(repr(q["name"]) for q in self.list_queues()) or "none yet"
            raise StoreError(f"No annotation queue named {queue!r} (queues: {known}).")

    def next_item(self, queue: str, annotator: str) -> dict | None:
        """The first item (by position) the annotator has no active choice on, or `None` when done.

        Returns:
            ``{"id", "queue", "position", "prompt"}`` or `None`.
        """
        self._check_queue(queue)
        rows = list(self.db.query(
            "select i.id, i.queue, i.position, i.prompt from annotation_items i where i.queue = ? and not exists ("
            "  select 1 from annotation_choices c join annotation_pairs p on p.id = c.pair_id"
            "  where p.item_id = i.id and c.annotator = ? and c.undone_at is null"
            ") order by i.position limit 1", [queue, annotator]))
        return rows[0] if rows else None

    def find_pair(self, item_id: int, condition: str) -> dict | None:
        """The pair of an item under a condition (or the item's given pair), or `None`."""
        rows = list(self.db.query(
            "select id from annotation_pairs where item_id = ? and condition in (?, 'given') "
            "order by condition = 'given' desc limit 1", [item_id, condition]))
        return self.pair(rows[0]["id"]) if rows else None

    def add_pair(self, item_id: int, condition: str, responses, sources, settings: dict) -> dict:
        """Store the two responses generated for an item under a condition; if another request
        stored that pair first, that one is kept and returned (so all annotators share it)."""
        with self.write():
            existing = self.find_pair(item_id, condition)
            if existing is not None:
                return existing
            pair_id = self._insert_pair(item_id, condition, responses, sources, settings)
        return self.pair(pair_id)

    def _insert_pair(self, item_id: int, condition: str, responses, sources, settings: dict) -> int:
        r1, r2 = (str(r) for r in responses)
        s1, s2 = (str(s) for s in sources)
        return self.db["annotation_pairs"].insert(
            {"item_id": item_id, "condition": condition, "response_1": r1, "response_2": r2, "source_1": s1,
             "source_2": s2, "settings": _dumps(settings), "created_at": _now()}).last_pk

    def pair(self, pair_id: int) -> dict:
        """A pair with its item: ``{"id", "item_id", "queue", "position", "prompt", "condition",
        "response_1", "response_2", "source_1", "source_2", "settings"}``.

        Raises:
            StoreError: no pair with that id.
        """
        rows = list(self.db.query(
            "select p.id, p.item_id, i.queue, i.position, i.prompt, p.condition, p.response_1, p.response_2, "
            "p.source_1, p.source_2, p.settings from annotation_pairs p join annotation_items i on i.id = p.item_id "
            "where p.id = ?", [pair_id]))
        if not rows:
            raise StoreError(f"No response pair with id {pair_id!r}: ask for the next item first.")
        row = rows[0]
        row["settings"] = json.loads(row["settings"])
        return row

    # -- choices -----------------------------------------------------------------------------

    def add_choice(self, *, pair_id: int, annotator: str, session_id: str, shown_order: str, choice: str,
                   rationale: str = "", persona_mode: str = "own", persona: Persona | dict | None = None,
                   vector=None, created_at: str | None = None) -> int:
        """Record one judgement, committed (and fsynced) before this returns.

        Args:
            pair_id (`int`): the pair judged. annotator (`str`), session_id (`str`): who and when.
            shown_order (`str`): ``"12"`` (response 1 was shown as A) or ``"21"``.
            choice (`str`): ``A``, ``B``, ``tie``, ``both_bad`` or ``skip``.
            rationale (`str`): optional free text (at most 2000 characters).
            persona_mode (`str`): ``own`` or ``target``: whose persona the annotator judged as.
            persona, vector: that persona and its 90-dim vector (stored as a snapshot).

        Returns:
            `int`: the choice id.

        Raises:
            StoreError: a bad field, an unknown pair, or an active choice by this annotator on
                this pair already (undo it first).
        """
        row = self._choice_row(pair_id, annotator, session_id, shown_order, choice, rationale, persona_mode,
                               persona, vector, created_at)
        with self.write():
            self.pair(pair_id)
            previous = self._active_choice(pair_id, row["annotator"])
            if previous is not None:
                raise StoreError(f"{row['annotator']!r} already judged this pair (choice #{previous['id']}: "
                                 f"{previous['choice']}); undo it first.")
            choice_id = self.db["annotation_choices"].insert(row).last_pk
        assert not self.db.conn.in_transaction  # committed: the caller may acknowledge it
        return choice_id

    @staticmethod
    def _choice_row(pair_id, annotator, session_id, shown_order, choice, rationale, persona_mode, persona,
                    vector, created_at) -> dict:
        annotator = _check_name(annotator, "annotator")
        if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > MAX_NAME:
            raise StoreError(f"Session id must be 1 to {MAX_NAME} characters, got {session_id!r}.")
        if shown_order not in ORDERS:
            raise StoreError(f"Shown order must be '12' (response 1 shown as A) or '21', got {shown_order!r}.")
        if choice not in CHOICES:
            raise StoreError(f"Choice must be one of {', '.join(CHOICES)}; got {choice!r}.")
        rationale = rationale or ""
        if not isinstance(rationale, str) or len(rationale) > MAX_RATIONALE:
            raise StoreError(f"Rationale must be text of at most {MAX_RATIONALE} characters.")
        if persona_mode not in PERSONA_MODES:
            raise StoreError(f"Persona mode must be 'own' or 'target', got {persona_mode!r}.")
        if isinstance(pair_id, bool) or not isinstance(pair_id, int):
            raise StoreError(f"Pair id must be a whole number, got {pair_id!r}.")
        persona = _as_persona(persona if persona is not None else Persona())
        vector = _check_vector(vector if vector is not None else [NEUTRAL] * N_DIMS)
        return {"pair_id": pair_id, "annotator": annotator, "session_id": session_id.strip(),
                "shown_order": shown_order, "choice": choice, "rationale": rationale, "persona_mode": persona_mode,
                "persona": _dumps(persona_to_dict(persona)), "vector": _dumps(vector),
                "created_at": created_at or _now(), "undone_at": None}

    def _active_choice(self, pair_id: int, annotator: str) -> dict | None:
        rows = list(self.db.query("select * from annotation_choices where pair_id = ? and annotator = ? "
                                  "and undone_at is null", [pair_id, annotator]))
        return rows[0] if rows else None

    def undo_last_choice(self, annotator: str, session_id: str) -> dict | None:
        """Mark the annotator's latest active choice of this session as undone (committed).

        Returns:
            The undone choice joined with its pair (as `choices` returns it), or `None` when
            there is nothing to undo.
        """
        annotator = _check_name(annotator, "annotator")
        with self.write():
            rows = list(self.db.query(
                "select id from annotation_choices where annotator = ? and session_id = ? and undone_at is null "
                "order by id desc limit 1", [annotator, session_id]))
            if not rows:
                return None
            self.db["annotation_choices"].update(rows[0]["id"], {"undone_at": _now()})
        return self.choices(choice_id=rows[0]["id"], include_undone=True)[0]

    def choices(self, *, queue: str | None = None, annotator: str | None = None, session_id: str | None = None,
                choice_id: int | None = None, include_undone: bool = False) -> list[dict]:
        """Choices joined with their pair and item, oldest first.

        Each row: the choice columns (``persona`` and ``vector`` parsed) plus ``queue``,
        ``position``, ``prompt``, ``item_id``, ``condition``, ``response_1``, ``response_2``,
        ``source_1``, ``source_2``, ``settings`` (parsed) and ``preferred``: ``"1"`` / ``"2"`` (the
        response chosen, whatever the order shown), ``tie``, ``both_bad`` or ``skip``.
        """
        where, args = [], []
        for column, value in (("i.queue", queue), ("c.annotator", annotator), ("c.session_id", session_id),
                              ("c.id", choice_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if not include_undone:
            where.append("c.undone_at is null")
        sql = ("select c.*, i.queue, i.position, i.prompt, p.item_id, p.condition, p.response_1, p.response_2, "
               "p.source_1, p.source_2, p.settings from annotation_choices c "
               "join annotation_pairs p on p.id = c.pair_id join annotation_items i on i.id = p.item_id"
               + (" where " + " and ".join(where) if where else "") + " order by c.id")
        rows = list(self.db.query(sql, args))
        for row in rows:
            row["persona"], row["vector"] = json.loads(row["persona"]), json.loads(row["vector"])
            row["settings"] = json.loads(row["settings"])
            row["preferred"] = preferred(row["choice"], row["shown_order"])
        return rows

    def progress(self, queue: str, annotator: str) -> tuple[int, int]:
        """(items the annotator has an active choice on, items in the queue)."""
        total = self.queue_size(queue)
        done = next(iter(self.db.query(
            "select count(distinct p.item_id) as n from annotation_choices c join annotation_pairs p on "
            "p.id = c.pair_id join annotation_items i on i.id = p.item_id where i.queue = ? and c.annotator = ? "
            "and c.undone_at is null", [queue, annotator])))["n"]
        return done, total

    # -- export and import -------------------------------------------------------------------

    def export_records(self, *, queue: str | None = None, annotator: str | None = None,
                       session_id: str | None = None, include: str = "preferences") -> list[Record]:
        """The active choices as AlignX records, oldest first (see the module docstring).

        Args:
            queue, annotator, session_id: optional filters.
            include (`str`): ``preferences`` (A / B choices only: the training data) or ``all``
                (ties, both-bad and skips too; for those, ``chosen`` is the response shown as A
                and ``rejected`` the one shown as B, and ``Annotation.choice`` says they are no
                preference).
        """
        if include not in INCLUDE:
            raise StoreError(f"include must be 'preferences' or 'all', got {include!r}.")
        rows = self.choices(queue=queue, annotator=annotator, session_id=session_id)
        return [_row_to_record(r) for r in rows if include == "all" or r["choice"] in ("A", "B")]

    def export_jsonl(self, path: str | os.PathLike, **filters) -> int:
        """Write `export_records` as AlignX-format JSONL (atomically). Returns the record count."""
        records = self.export_records(**filters)
        save_records(records, path, format="jsonl")
        return len(records)

    def export_dataset(self, path: str | os.PathLike | None = None, *, repo_id: str | None = None,
                       token: str | None = None, private: bool = True, **filters):
        """The records as a Hugging Face `datasets.Dataset`, saved with ``save_to_disk(path)``.

        Args:
            path: a folder for `Dataset.save_to_disk` (`None`: do not save).
            repo_id, token: when both are set (``token`` defaults to ``$HF_TOKEN``), also
                ``push_to_hub(repo_id, token=token, private=private)``.
            filters: as for `export_records`.

        Returns:
            `datasets.Dataset`

        Raises:
            StoreError: nothing to export (a dataset needs at least one record).
        """
        import datasets

        dicts = [record_to_dict(r) for r in self.export_records(**filters)]
        if not dicts:
            raise StoreError("Nothing to export yet: no choices match.")
        ds = datasets.Dataset.from_list(dicts)
        if path is not None:
            ds.save_to_disk(str(path))
        token = token or os.environ.get("HF_TOKEN")
        if repo_id and token:
            ds.push_to_hub(repo_id, token=token, private=private)
        return ds

    def import_records(self, records: Iterable[Record], *, queue: str = "imported",
                       annotator: str = "imported", session_id: str = "import", source: str = "import") -> int:
        """Load records back into the store, all or nothing.

        Records written by `export_records` are rebuilt exactly from their ``Annotation`` object:
        queue, item, pair, annotator and choice, with the original time. Plain AlignX records
        (no ``Annotation``) become A-choices of ``annotator`` on new items of ``queue``.
        Importing the same file twice changes nothing.

        Returns:
            `int`: the number of choices added.

        Raises:
            StoreError: a bad ``Annotation`` field (names the record and the field), or a record
                that conflicts with what the store holds.
        """
        added = 0
        with self.write():
            for index, record in enumerate(records):
                meta = record.extra.get(KEY_ANNOTATION)
                if meta is None:
                    meta = self._plain_meta(record, queue, annotator, session_id)
                meta = _check_meta(meta, index)
                added += self._import_one(record, meta, index, source)
        return added

    def import_file(self, path: str | os.PathLike, **kwargs) -> int:
        """`import_records` from a .jsonl / .json / .parquet file or a ``save_to_disk`` folder."""
        from alignx.schema import load_records, records_from_hf

        p = Path(path)
        if p.is_dir() and (p / "dataset_info.json").is_file():
            import datasets

            records = records_from_hf(datasets.load_from_disk(str(p)))
        else:
            records = load_records(p)
        return self.import_records(records, source=kwargs.pop("source", f"import:{p.name}"), **kwargs)

    def _plain_meta(self, record: Record, queue: str, annotator: str, session_id: str) -> dict:
        vector = record.direction or record.persona.preference_vector()
        position = 1 + next(iter(self.db.query(
            "select coalesce(max(position), 0) as n from annotation_items where queue = ?", [queue])))["n"]
        return {"annotator": annotator, "session": session_id, "queue": queue, "position": position,
                "condition": "given", "sources": ["given", "given"], "settings": {"given": True},
                "shown_order": "12", "choice": "A", "rationale": "", "persona_mode": "own",
                "created_at": _now(), "_vector": [NEUTRAL] * N_DIMS if vector is None else list(map(float, vector))}

    def _import_one(self, record: Record, meta: dict, index: int, source: str) -> int:
        where = f"record {index}"
        shown_a, shown_b = record.chosen, record.rejected
        if meta["choice"] == "B":
            shown_a, shown_b = shown_b, shown_a
        responses = {meta["shown_order"][0]: shown_a, meta["shown_order"][1]: shown_b}
        r1, r2 = responses["1"], responses["2"]
        queue = _check_name(meta["queue"], "queue")
        if not self.db["annotation_queues"].count_where("name = ?", [queue]):
            self.db["annotation_queues"].insert({"name": queue, "source": source, "created_at": _now()})
        items = list(self.db.query("select id, prompt from annotation_items where queue = ? and position = ?",
                                   [queue, meta["position"]]))
        if items and items[0]["prompt"] != record.prompt:
            raise StoreError(f"{where}: item {meta['position']} of queue {queue!r} has another prompt in the store.")
        item_id = items[0]["id"] if items else self.db["annotation_items"].insert(
            {"queue": queue, "position": meta["position"], "prompt": record.prompt}).last_pk
        pairs = list(self.db.query("select * from annotation_pairs where item_id = ? and condition = ?",
                                   [item_id, meta["condition"]]))
        if pairs:
            p = pairs[0]
            if (p["response_1"], p["response_2"], p["source_1"], p["source_2"]) != (r1, r2, *meta["sources"]):
                raise StoreError(f"{where}: the store holds other responses for item {meta['position']} of "
                                 f"queue {queue!r} under condition {meta['condition']!r}.")
            pair_id = p["id"]
        else:
            pair_id = self._insert_pair(item_id, meta["condition"], (r1, r2), meta["sources"], meta["settings"])
        vector = meta.get("_vector") or (list(record.direction) if record.direction else [NEUTRAL] * N_DIMS)
        row = self._choice_row(pair_id, meta["annotator"], meta["session"], meta["shown_order"], meta["choice"],
                               meta["rationale"], meta["persona_mode"], record.persona, vector, meta["created_at"])
        if not self.db["annotators"].count_where("name = ?", [row["annotator"]]):
            self.db["annotators"].insert({"name": row["annotator"], "persona": row["persona"], "vector": row["vector"],
                                          "created_at": row["created_at"], "updated_at": row["created_at"]})
        previous = self._active_choice(pair_id, row["annotator"])
        if previous is not None:
            same = all(previous[k] == row[k] for k in ("session_id", "shown_order", "choice", "rationale",
                                                       "persona_mode", "created_at"))
            if same:
                return 0
            raise StoreError(f"{where}: {row['annotator']!r} already has another choice on this pair in the store.")
        self.db["annotation_choices"].insert(row)
        return 1

    # -- per-user adapters -------------------------------------------------------------------

    def add_user_adapter(self, annotator: str, session_id: str, path: str, n_pairs: int) -> int:
        """Register a per-user adapter job (status ``queued``). Returns its id."""
        annotator, now = _check_name(annotator, "annotator"), _now()
        with self.write():
            return self.db["user_adapters"].insert(
                {"annotator": annotator, "session_id": session_id, "path": str(path), "status": "queued",
                 "progress": 0.0, "n_pairs": int(n_pairs), "message": "queued", "metrics": "{}", "pid": None,
                 "created_at": now, "updated_at": now}).last_pk

    def update_user_adapter(self, adapter_id: int, **fields) -> None:
        """Update a job's ``status``, ``progress`` (0-1), ``message``, ``metrics`` (dict) or ``pid``."""
        unknown = set(fields) - {"status", "progress", "message", "metrics", "pid"}
        if unknown:
            raise StoreError(f"unknown user-adapter field(s): {', '.join(sorted(unknown))}")
        if "status" in fields and fields["status"] not in ADAPTER_STATUSES:
            raise StoreError(f"status must be one of {', '.join(ADAPTER_STATUSES)}, got {fields['status']!r}")
        if "metrics" in fields:
            fields["metrics"] = _dumps(fields["metrics"])
        with self.write():
            self.db["user_adapters"].update(adapter_id, {**fields, "updated_at": _now()})

    def user_adapter(self, adapter_id: int) -> dict:
        """One adapter row (``metrics`` parsed). Raises `StoreError` for an unknown id."""
        try:
            row = dict(self.db["user_adapters"].get(adapter_id))
        except sqlite_utils.db.NotFoundError:
            raise StoreError(f"No per-user adapter with id {adapter_id!r}.") from None
        row["metrics"] = json.loads(row["metrics"])
        return row

    def user_adapters(self, annotator: str | None = None, status: str | None = None) -> list[dict]:
        """Adapter rows, newest first, optionally for one annotator and / or one status."""
        where = [c for c, v in (("annotator = ?", annotator), ("status = ?", status)) if v is not None]
        args = [v for v in (annotator, status) if v is not None]
        rows = [dict(r) for r in self.db.query(
            "select * from user_adapters" + (" where " + " and ".join(where) if where else "") + " order by id desc",
            args)]
        for row in rows:
            row["metrics"] = json.loads(row["metrics"])
        return rows


# ---------------------------------------------------------------------------- helpers


def _now_seconds() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def preferred(choice: str, shown_order: str) -> str:
    """The response a choice prefers, independent of the order shown: ``"1"``, ``"2"``, or the
    choice itself for ``tie`` / ``both_bad`` / ``skip``."""
    if choice == "A":
        return shown_order[0]
    if choice == "B":
        return shown_order[1]
    return choice


def _row_to_record(row: dict) -> Record:
    """One choice row (from `Store.choices`) as an AlignX record with its ``Annotation``."""
    shown = {"A": row[f"response_{row['shown_order'][0]}"], "B": row[f"response_{row['shown_order'][1]}"]}
    chosen, rejected = (shown["B"], shown["A"]) if row["choice"] == "B" else (shown["A"], shown["B"])
    persona = persona_from_dict(row["persona"])
    meta = {"annotator": row["annotator"], "session": row["session_id"], "queue": row["queue"],
            "position": row["position"], "condition": row["condition"], "sources": [row["source_1"], row["source_2"]],
            "settings": row["settings"], "shown_order": row["shown_order"], "choice": row["choice"],
            "rationale": row["rationale"], "persona_mode": row["persona_mode"], "created_at": row["created_at"]}
    # Every official key is written, even when the persona leaves it empty.
    extra = {KEY_UGC: [], KEY_PAIRS: [], KEY_DEMOGRAPHICS: None, KEY_ANNOTATION: meta}
    return Record(prompt=row["prompt"], chosen=chosen, rejected=rejected, persona=persona,
                  direction=tuple(row["vector"]), extra=extra)


_META_TYPES = {"annotator": str, "session": str, "queue": str, "position": int, "condition": str, "sources": list,
               "settings": dict, "shown_order": str, "choice": str, "rationale": str, "persona_mode": str,
               "created_at": str}


def _check_meta(meta, index: int) -> dict:
    """Validate an ``Annotation`` object; every failure names the record and the field."""
    if not isinstance(meta, dict):
        raise StoreError(f"record {index}: {KEY_ANNOTATION} must be an object, got {type(meta).__name__}.")
    for key, kind in _META_TYPES.items():
        value = meta.get(key)
        if isinstance(value, float) and kind is int and math.isfinite(value) and value.is_integer():
            value = meta[key] = int(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise StoreError(f"record {index}: {KEY_ANNOTATION}.{key}: expected {kind.__name__}, got {value!r}.")
    if meta["position"] < 1:
        raise StoreError(f"record {index}: {KEY_ANNOTATION}.position must be at least 1, got {meta['position']}.")
    if len(meta["sources"]) != 2 or not all(isinstance(s, str) for s in meta["sources"]):
        raise StoreError(f"record {index}: {KEY_ANNOTATION}.sources must be two strings, got {meta['sources']!r}.")
    for key, allowed in (("shown_order", ORDERS), ("choice", CHOICES), ("persona_mode", PERSONA_MODES)):
        if meta[key] not in allowed:
            raise StoreError(f"record {index}: {KEY_ANNOTATION}.{key} must be one of {', '.join(allowed)}, "
                             f"got {meta[key]!r}.")
    return meta
