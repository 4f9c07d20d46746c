"""Stress: many `gradio_client` sessions at once against one `python app.py`.

Each session is its own `Client` (its own Gradio session) and does what a user does: saves its own
persona and preference vector (``/annotator``), runs a three-way ``/compare`` with that persona and
vector, then judges two items of a shared queue as itself (``/next_item`` generates the pair from
its own persona, ``/save_choice`` commits the choice). Every persona carries a unique marker and
every vector a different profile, so a leak shows: each session checks that its prompts hold its
own marker and profile and no other session's, and at the end the store's rows for each annotator
must hold only that annotator's persona.

Reported: p50 / p95 latency per endpoint, and the queue behaviour: how long calls waited in the
queue (Gradio's status updates: queued -> processing) against how long they ran, and the deepest
queue position seen. The ratio printed is throughput: one session alone (run first, side by side
in the same run) times N, over the wall time of the N concurrent sessions.

    python -m benchmarks.bench_stress                  # 16 sessions, its own app and store
    python -m benchmarks.bench_stress --sessions 4 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PERSONA = ROOT / "tests" / "fixtures" / "persona_example.json"
# One "positive" dimension per session, so every session's PBA profile is different.
DIMS = (0, 16, 56, 73, 85, 3, 8, 12, 20, 25, 30, 35, 40, 45, 50, 60, 65, 70, 75, 80)
QUEUE_PROMPTS = ("Any tips for a weekend trip?", "How should I spend a free Saturday?")


def session_inputs(i: int, run: str) -> dict:
    """Session ``i``'s own persona (with a unique marker), vector and prompt."""
    persona = json.loads(PERSONA.read_text())
    marker = f"marker-{run}-{i:02d}"
    persona["Demographic Information"] = f"{marker}: {persona['Demographic Information']}"
    persona["User-Generated Content"][0]["comment"] = f"{marker} says: " + persona["User-Generated Content"][0]["comment"]
    vector = [0.5] * 90
    vector[DIMS[i % len(DIMS)]] = 1.0
    if i >= len(DIMS):  # past the list: a second, negative dimension keeps the profiles apart
        vector[DIMS[(i + 1) % len(DIMS)]] = 0.0
    return {"name": f"stress {run} {i:02d}", "marker": marker, "persona": json.dumps(persona),
            "vector": json.dumps(vector), "prompt": f"Session {i:02d}: any tips for a weekend trip?"}


def timed_call(client, api_name: str, *args, poll: float = 0.02) -> tuple[object, dict]:
    """Submit one call and follow its status updates: (result, {"wait", "run", "total", "rank"})."""
    from gradio_client.utils import Status

    t0 = time.perf_counter()
    job = client.submit(*args, api_name=api_name)
    started, rank = None, 0
    while not job.done():
        status = job.status()
        if status.rank is not None:
            rank = max(rank, int(status.rank) + 1)
        if started is None and status.code in (Status.PROCESSING, Status.ITERATING, Status.PROGRESS):
            started = time.perf_counter()
        time.sleep(poll)
    result = job.result()
    end = time.perf_counter()
    started = started or end
    return result, {"endpoint": api_name, "wait": started - t0, "run": end - started, "total": end - t0, "rank": rank}


def run_session(url: str, i: int, run: str, queue: str, *, max_new_tokens: int = 8, items: int = 2) -> dict:
    """One user's whole visit. Returns its timings, its inputs and what it saw."""
    from gradio_client import Client

    mine = session_inputs(i, run)
    client = Client(url, verbose=False)
    calls, seen = [], {}
    _, t = timed_call(client, "/annotator", mine["name"], mine["persona"], mine["vector"])
    calls.append(t)
    out, t = timed_call(client, "/compare", mine["persona"], mine["vector"], mine["prompt"], max_new_tokens, 0.0, 0)
    calls.append(t)
    seen["texts"], seen["prompts"] = list(out[:3]), list(out[3:6])
    settings = json.dumps({"method_1": "ica", "method_2": "pba", "max_new_tokens": max_new_tokens,
                           "temperature": 0.0})
    seen["choices"] = []
    for _ in range(items):
        item, t = timed_call(client, "/next_item", mine["name"], queue, f"s{i}", "", settings)
        calls.append(t)
        if item["done"]:
            break
        saved, t = timed_call(client, "/save_choice", mine["name"], item["pair_id"], item["order"], "A",
                              mine["marker"], f"s{i}", "")
        calls.append(t)
        seen["choices"].append(saved["id"])
    return {"i": i, "inputs": mine, "seen": seen, "calls": calls}


def leaks(results: list[dict]) -> list[str]:
    """Every way a session saw another's persona, vector or outputs (empty when isolated)."""
    from alignx.compare import parse_vector
    from alignx.preferences import profile_from_vector

    problems = []
    markers = {r["i"]: r["inputs"]["marker"] for r in results}
    for r in results:
        mine = r["inputs"]
        ica, pba, universal = r["seen"]["prompts"]
        profile = profile_from_vector(parse_vector(mine["vector"]))
        if mine["marker"] not in ica:
            problems.append(f"session {r['i']}: its ICA prompt lacks its own persona")
        if profile not in pba:
            problems.append(f"session {r['i']}: its PBA prompt lacks its own profile {profile!r}")
        for other, marker in markers.items():
            if other != r["i"] and any(marker + ":" in p or marker + " says" in p for p in (ica, pba, universal)):
                problems.append(f"session {r['i']} saw session {other}'s persona")
        for p in (ica, pba, universal):
            if mine["prompt"] not in p:
                problems.append(f"session {r['i']}: a prompt lacks its own post")
    return problems


def store_leaks(db_path, results: list[dict]) -> list[str]:
    """Each annotator's stored identity and choices hold only that annotator's persona and rationale."""
    from alignx.store import Store

    problems = []
    with Store.open(db_path) as store:
        for r in results:
            mine = r["inputs"]
            persona, _ = store.load_annotator(mine["name"])
            if mine["marker"] not in persona.demographics:
                problems.append(f"{mine['name']}: stored identity is not its own")
            rows = store.choices(annotator=mine["name"])
            if len(rows) != len(r["seen"]["choices"]):
                problems.append(f"{mine['name']}: {len(rows)} choices stored, {len(r['seen']['choices'])} acknowledged")
            for row in rows:
                if mine["marker"] not in row["persona"].get("Demographic Information", "") or \
                        row["rationale"] != mine["marker"]:
                    problems.append(f"{mine['name']}: choice #{row['id']} carries another session's data")
    return problems


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0-1) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def stress(url: str, sessions: int, run: str, queue: str, **kwargs) -> dict:
    """``sessions`` concurrent sessions, one thread each. Returns results, errors and wall time."""
    results, errors = [None] * sessions, []

    def worker(i: int) -> None:
        try:
            results[i] = run_session(url, i, run, queue, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported, not raised, so every session finishes
            errors.append(f"session {i}: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"results": [r for r in results if r is not None], "errors": errors, "wall": time.perf_counter() - t0}


def summarize(calls: list[dict]) -> dict:
    """p50 / p95 of the total latency, and mean queue wait vs run time, per endpoint."""
    out = {}
    for name in sorted({c["endpoint"] for c in calls}):
        mine = [c for c in calls if c["endpoint"] == name]
        totals = [c["total"] for c in mine]
        out[name] = {"n": len(mine), "p50": round(percentile(totals, 0.5), 3), "p95": round(percentile(totals, 0.95), 3),
                     "wait_mean": round(statistics.mean(c["wait"] for c in mine), 3),
                     "run_mean": round(statistics.mean(c["run"] for c in mine), 3),
                     "max_rank": max(c["rank"] for c in mine)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=8, help="max new tokens of every generation")
    ap.add_argument("--items", type=int, default=2, help="items each session judges")
    ap.add_argument("--url", help="an app already running (default: start python app.py with its own store)")
    ap.add_argument("--db", help="with --url: that app's store, for the stored-data checks")
    ap.add_argument("--json", help="write the result JSON here")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "tests"))
    from alignx.store import Store
    from appserver import app_server

    from benchmarks.common import emit

    folder = Path(tempfile.mkdtemp(prefix="alignx-stress-"))
    if args.url:
        url, db = args.url, args.db
    else:
        server = app_server(folder)
        url, db = server.url, str(folder / "alignx.db")
    run, queue = uuid.uuid4().hex[:6], f"stress-{uuid.uuid4().hex[:6]}"
    if db:
        with Store.open(db) as store:
            store.add_queue(queue, [{"prompt": p} for p in QUEUE_PROMPTS])
    kwargs = dict(max_new_tokens=args.new_tokens, items=args.items)
    run_session(url, 99, "warm", queue, **kwargs)  # the first call waits for the model to load
    t0 = time.perf_counter()
    alone = run_session(url, 98, run, queue, **kwargs)
    alone_s = time.perf_counter() - t0
    out = stress(url, args.sessions, run, queue, **kwargs)
    calls = [c for r in out["results"] for c in r["calls"]]
    problems = leaks(out["results"]) + (store_leaks(db, out["results"]) if db else [])
    table = summarize(calls)
    for name, row in table.items():
        print(f"{name:14s} n={row['n']:3d}  p50 {row['p50']:6.2f} s  p95 {row['p95']:6.2f} s  "
              f"queue wait {row['wait_mean']:6.2f} s  run {row['run_mean']:5.2f} s  deepest position {row['max_rank']}")
    totals = [c["total"] for c in calls]
    ratio = alone_s * args.sessions / out["wall"]
    complete = len(out["results"]) == args.sessions and not out["errors"]
    summary = (f"{len(out['results'])}/{args.sessions} sessions complete, {len(calls)} calls, {len(problems)} leaks, "
               f"{len(out['errors'])} errors; all calls p50 {percentile(totals, 0.5):.2f} s p95 "
               f"{percentile(totals, 0.95):.2f} s; one session alone {alone_s:.1f} s, {args.sessions} at once "
               f"{out['wall']:.1f} s")
    for line in out["errors"] + problems:
        print("  !", line)
    # The model calls share one queue slot (concurrency_limit=1), so N sessions at once cannot beat
    # N sessions back to back: the ratio shows what queueing costs; the goal is that nothing fails or leaks.
    emit(args.json, ratio=ratio, goal="every session completes, 0 errors, 0 leaks (ratio: throughput, for the record)",
         met=complete and not problems, summary=summary, endpoints=table,
         errors=out["errors"], leaks=problems, sessions=args.sessions)
    return 0 if complete and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
