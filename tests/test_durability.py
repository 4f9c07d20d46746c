"""Durability: SIGKILL the app in the middle of a stream of annotation writes.

A real `python app.py` runs with its own store (``ALIGNX_DB`` in a temp folder) holding a queue of
ready pairs. Three `gradio_client` writers save choices through the ``/save_choice`` endpoint as
fast as the server answers. Once 150 writes are acknowledged, the app gets SIGKILL while writes
are still in flight. The database must then pass ``PRAGMA integrity_check`` and hold every
acknowledged write, field for field (writes in flight may or may not have landed).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from alignx.store import Store

from appserver import ROOT, STARTUP_TIMEOUT, _free_port

N_PAIRS = 600
WRITERS = 3
KILL_AFTER = 150


def start_app(folder):
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               ALIGNX_DB=str(folder / "alignx.db"), HF_HUB_OFFLINE="1")
    log = open(folder / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + STARTUP_TIMEOUT
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with code {proc.returncode}:\n{(folder / 'app.log').read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app.py did not serve a page within {STARTUP_TIMEOUT} s")


def test_sigkill_mid_stream_loses_no_acknowledged_write(tmp_path):
    from gradio_client import Client

    db = tmp_path / "alignx.db"
    with Store.open(db) as store:
        store.add_queue("stream", [{"prompt": f"prompt {i}", "responses": [f"one {i}", f"two {i}"]}
                                   for i in range(N_PAIRS)])
    proc, url = start_app(tmp_path)
    acked: list[dict] = []
    sent = [0]
    lock, stop = threading.Lock(), threading.Event()

    def writer(k: int) -> None:
        client = Client(url, verbose=False)
        for pair_id in range(1 + k, N_PAIRS + 1, WRITERS):
            if stop.is_set():
                return
            write = {"annotator": f"writer {k}", "pair_id": pair_id, "order": "12" if pair_id % 2 else "21",
                     "choice": ("A", "B", "tie", "both_bad", "skip")[pair_id % 5], "rationale": f"w{k} #{pair_id} ✓"}
            with lock:
                sent[0] += 1
            try:
                out = client.predict(write["annotator"], pair_id, write["order"], write["choice"], write["rationale"],
                                     "durability", "outdoor-guide", api_name="/save_choice")
            except Exception:  # the server is gone: this write was never acknowledged
                return
            with lock:
                acked.append({**write, "id": out["id"]})

    try:
        threads = [threading.Thread(target=writer, args=(k,), daemon=True) for k in range(WRITERS)]
        for t in threads:
            t.start()
        deadline = time.time() + 240
        while len(acked) < KILL_AFTER and time.time() < deadline and any(t.is_alive() for t in threads):
            time.sleep(0.005)
        assert len(acked) >= KILL_AFTER, f"only {len(acked)} writes acknowledged:\n{(tmp_path / 'app.log').read_text()}"
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the writers are still sending
        proc.wait(timeout=30)
        with lock:
            n_acked, n_sent = len(acked), sent[0]
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    wal = db.with_name(db.name + "-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = {r[0]: r[1:] for r in conn.execute(
            "select id, annotator, pair_id, shown_order, choice, rationale, undone_at from annotation_choices")}
    finally:
        conn.close()
    missing = [a for a in acked[:n_acked]
               if rows.get(a["id"]) != (a["annotator"], a["pair_id"], a["order"], a["choice"], a["rationale"], None)]
    print(f"\ndurability: {n_sent} writes sent, {n_acked} acknowledged before SIGKILL, {len(rows)} found after "
          f"(WAL file left by the kill: {wal_bytes:,} bytes), {len(missing)} acknowledged writes missing")
    assert not missing, missing[:5]
    assert n_acked <= len(rows) <= n_sent
    with Store.open(db) as store:  # the store reopens cleanly (recovery, no pending migration)
        assert store.migrate() == []
        assert len(store.choices(queue="stream")) == len(rows)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s"]))
