"""Privacy: what alignx stores about a person, and how they export or delete all of it.

Everything lives in the local SQLite store (`alignx.store`) and its data folder; nothing is sent
anywhere, and the app runs with Gradio's analytics off. An *identity* is an annotator name: the
Annotate tab (or the ``/annotator`` endpoint) saves that person's own persona and 90-dim preference
vector under it, every choice they make is a row that also carries a snapshot of the persona they
judged as, and a per-user adapter trained on their choices is a folder under
``<data dir>/adapters``.

Usage::

    from alignx import privacy
    data = privacy.export_user("alignx.db", "Ada")     # identity, choices, adapters (a JSON-able dict)
    privacy.write_export("alignx.db", "Ada", "ada.json")
    privacy.delete_user("alignx.db", "Ada")            # {"identity": 1, "choices": 12, "pairs": 3, ...}

    alignx privacy export --annotator Ada --out ada.json
    alignx privacy delete --annotator Ada --yes

Saved personas (Persona tab) are stored by the name they were given, not under an identity; they
are listed and deleted on the Persona tab.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path

from alignx.store import Store, StoreError, _check_name, data_dir

NOTICE = (
    "**What is stored, and where.** Everything stays in this server's local SQLite file "
    "(`$ALIGNX_DB`) and its data folder; nothing is sent elsewhere and usage analytics are off. "
    "Under your annotator name: your own persona and preference vector, every choice you make (with the "
    "persona you judged as and your optional rationale), and any adapter trained on your choices. Saved "
    "personas are stored under the name you give them. Some preference dimensions describe **sensitive "
    "traits** (age, gender, personality and the like): set them only if you are comfortable storing them. "
    "Below you can download everything stored under your name, or delete it.")


class PrivacyError(ValueError):
    """A bad privacy request (no name, nothing stored under it); the message says what to fix."""


def _annotator(name) -> str:
    try:
        return _check_name(name, "annotator")
    except StoreError as exc:
        raise PrivacyError(str(exc)) from None


def export_user(db_path, annotator: str) -> dict:
    """Everything stored under an annotator name, as one JSON-able dict.

    Args:
        db_path: the store. annotator (`str`): the name (whitespace is collapsed, as when saved).

    Returns:
        ``{"annotator", "exported_at", "identity": {"persona", "vector", "created_at", "updated_at"}
        or None, "choices": [...], "adapters": [...]}``; choices include undone ones (with
        ``undone_at``) and the pair each was made on.

    Raises:
        PrivacyError: a blank or overlong name, or nothing stored under it.
    """
    name = _annotator(annotator)
    with Store.open(db_path) as store:
        row = next(iter(store.db.query("select * from annotators where name = ?", [name])), None)
        choices = store.choices(annotator=name, include_undone=True)
        adapters = store.user_adapters(annotator=name)
    if row is None and not choices and not adapters:
        raise PrivacyError(f"Nothing is stored under the annotator name {name!r}.")
    identity = None if row is None else {"persona": json.loads(row["persona"]), "vector": json.loads(row["vector"]),
                                         "created_at": row["created_at"], "updated_at": row["updated_at"]}
    keep = ("id", "session_id", "queue", "position", "prompt", "response_1", "response_2", "source_1", "source_2",
            "shown_order", "choice", "preferred", "rationale", "persona_mode", "persona", "vector", "created_at",
            "undone_at")
    return {"annotator": name,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "identity": identity,
            "choices": [{k: c[k] for k in keep} for c in choices],
            "adapters": [{k: a[k] for k in ("id", "session_id", "path", "status", "n_pairs", "metrics", "created_at")}
                         for a in adapters]}


def write_export(db_path, annotator: str, out: str | os.PathLike) -> Path:
    """`export_user` written to ``out`` as indented UTF-8 JSON (atomically). Returns the path."""
    data = export_user(db_path, annotator)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return out


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def delete_user(db_path, annotator: str) -> dict:
    """Delete everything stored under an annotator name, in one transaction: the identity, every
    choice (undone ones too), the generated pairs only their own persona produced (pairs no other
    choice refers to, generated while judging as themselves; pairs given in a queue file stay), and
    their per-user adapters (rows and
    folders; only folders inside the data folder's ``adapters`` are removed).

    Returns:
        ``{"annotator", "identity", "choices", "pairs", "adapters", "folders"}``: counts deleted.

    Raises:
        PrivacyError: a blank or overlong name, or nothing stored under it.
    """
    name = _annotator(annotator)
    with Store.open(db_path) as store:
        db = store.db
        with store.write():
            own_pairs = [r["pair_id"] for r in db.query(
                "select distinct pair_id from annotation_choices where annotator = ? and persona_mode = 'own'", [name])]
            adapters = [dict(r) for r in db.query("select id, path from user_adapters where annotator = ?", [name])]
            counts = {
                "identity": db.execute("delete from annotators where name = ?", [name]).rowcount,
                "choices": db.execute("delete from annotation_choices where annotator = ?", [name]).rowcount,
                "adapters": db.execute("delete from user_adapters where annotator = ?", [name]).rowcount,
            }
            pairs = 0
            for pair_id in own_pairs:
                pairs += db.execute("delete from annotation_pairs where id = ? and condition != 'given' and not "
                                    "exists (select 1 from annotation_choices where pair_id = ?)",
                                    [pair_id, pair_id]).rowcount
            counts["pairs"] = pairs
    if not any(counts.values()):
        raise PrivacyError(f"Nothing is stored under the annotator name {name!r}.")
    root, folders = data_dir(db_path) / "adapters", 0
    for row in adapters:
        path = Path(row["path"])
        if path.is_dir() and _inside(path, root) and path.resolve() != root.resolve():
            shutil.rmtree(path, ignore_errors=True)
            folders += 1
    return {"annotator": name, **counts, "folders": folders}


def delete_text(result: dict) -> str:
    """One line on what `delete_user` removed."""
    return (f"Deleted everything stored under {result['annotator']!r}: {result['identity']} identity, "
            f"{result['choices']} choices, {result['pairs']} generated pairs, {result['adapters']} adapters "
            f"({result['folders']} folders).")
