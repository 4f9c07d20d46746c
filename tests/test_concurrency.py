"""Concurrency: a few `gradio_client` sessions at once against the one shared app server.

Each session (its own `Client`, so its own Gradio session) saves its own persona and vector,
runs ``/compare`` with them and judges two items of a shared queue as itself; the pairs are
generated from its own persona. All sessions must complete, and no session may see another's
persona, vector or outputs: its prompts hold only its own marker and profile, and the store's rows
for each annotator hold only that annotator's persona and rationale. The long run (16 sessions,
p50 / p95 latency, queue behaviour) is `benchmarks/bench_stress.py`; this is its small version,
with the same code.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid

import pytest

from alignx.store import Store

from appserver import ROOT

sys.path.insert(0, str(ROOT))
from benchmarks.bench_stress import QUEUE_PROMPTS, leaks, stress, store_leaks, summarize  # noqa: E402

SESSIONS = 4


def test_concurrent_sessions_complete_and_stay_isolated(server):
    db = server.folder / "alignx.db"
    run, queue = uuid.uuid4().hex[:6], f"concurrency-{uuid.uuid4().hex[:6]}"
    with Store.open(db) as store:
        store.add_queue(queue, [{"prompt": p} for p in QUEUE_PROMPTS])

    out = stress(server.url, SESSIONS, run, queue, max_new_tokens=8, items=2)

    assert out["errors"] == []
    assert len(out["results"]) == SESSIONS
    assert all(len(r["seen"]["choices"]) == 2 for r in out["results"])
    assert all(all(t.strip() for t in r["seen"]["texts"]) for r in out["results"])
    assert leaks(out["results"]) == []
    assert store_leaks(db, out["results"]) == []
    # the model calls queued behind one another (one model slot), and every one was answered
    table = summarize([c for r in out["results"] for c in r["calls"]])
    assert table["/compare"]["n"] == SESSIONS and table["/save_choice"]["n"] == 2 * SESSIONS
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
