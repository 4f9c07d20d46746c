"""Run the performance suite and print one table: every benchmark is a ratio measured side by side.

    python -m benchmarks.run                 # everything (about 20 minutes on 2 cores)
    python -m benchmarks.run --only P1,P3    # some of them
    python -m benchmarks.run --quick         # smaller settings, for a smoke run
    python -m benchmarks.run --update-readme # also rewrite the table in benchmarks/README.md

Each benchmark is its own script (``python -m benchmarks.bench_x --help``), run here in a fresh
subprocess so that memory and start-up are measured cleanly; it writes a JSON result with
``ratio``, ``goal``, ``met`` and ``summary`` (see `benchmarks.common.emit`). A benchmark whose
optional dependency is missing reports ``skipped`` with the reason instead of failing the run.
Measure on a quiet machine: other processes on a 2-core CPU move every number.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
RESULTS = ROOT / "benchmarks" / "results.json"  # the latest result of every benchmark (--update-readme)
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


@dataclass(frozen=True)
class Bench:
    id: str
    title: str
    module: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


SUITE = (
    Bench("P1", "three-way compare: one batched stream vs three sequential", "benchmarks.bench_compare",
          ("--new-tokens", "128", "--repeats", "3"), ("--new-tokens", "32", "--repeats", "1")),
    Bench("P2", "three-way compare decode vs llama.cpp (one stream, same GGUF, same threads)",
          "benchmarks.bench_llamacpp", ("--new-tokens", "128"), ("--new-tokens", "32")),
    Bench("P3", "scoring: batched prefix-shared vs one sequence per forward", "benchmarks.bench_scoring",
          ("--pairs", "64", "--rounds", "4"), ("--pairs", "16", "--rounds", "2")),
    Bench("P4", "DPO training pairs/s vs TRL defaults", "benchmarks.bench_train",
          ("--pairs", "16", "--batch", "8", "--epochs", "2"), ("--pairs", "8", "--batch", "4")),
    Bench("P5", "app peak RSS: nf4 + two adapters vs fp32", "benchmarks.bench_memory",
          ("--new-tokens", "64"), ("--new-tokens", "16")),
    Bench("P6", "map: placing a persona vs refitting UMAP", "benchmarks.bench_map"),
    Bench("P7", "cold start: launch to first usable page", "benchmarks.bench_coldstart"),
    Bench("P8", "preference inference of a 4-pair persona vs backbone likelihood probing", "benchmarks.bench_inference",
          ("--probe-dims", "10", "--threads", "1"), ("--probe-dims", "2", "--threads", "1")),
    Bench("P9", "stress: 16 concurrent gradio_client sessions vs one session x 16", "benchmarks.bench_stress",
          ("--sessions", "16"), ("--sessions", "4")),
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GB, Python {platform.python_version()}, {platform.system()}"


def run_one(bench: Bench, quick: bool, timeout: float) -> dict:
    """Run one benchmark script in a subprocess and read its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", bench.module, *(bench.quick if quick else bench.args), "--json", str(out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"id": bench.id, "error": f"timed out after {timeout:.0f} s"}
        seconds = time.perf_counter() - t0
        if proc.returncode or not out.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return {"id": bench.id, "error": f"exit code {proc.returncode}: " + " / ".join(tail)}
        result = json.loads(out.read_text())
    result.update(id=bench.id, title=bench.title, command=" ".join(["python", "-m", *cmd[2:-2]]),
                  seconds=round(seconds, 1), run_at=f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
                  load_after=round(os.getloadavg()[0], 1), measured_on=machine())
    return result


def table(results: list[dict]) -> str:
    lines = ["| id | benchmark | ratio | goal | met | measured |", "|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r or "skipped" in r:
            why = r.get("error") or f"skipped: {r['skipped']}"
            lines.append(f"| {r['id']} | {r.get('title', '')} | - | {r.get('goal', '')} | - | {why} |")
            continue
        met = "yes" if r["met"] else "**no**"
        lines.append(f"| {r['id']} | {r['title']} | {r['ratio']:.2f}x | {r['goal']} | {met} | {r['summary']} |")
    return "\n".join(lines)


def merge_results(results: list[dict]) -> list[dict]:
    """The latest result of every benchmark: these new ones over those in `RESULTS` (so a run with
    ``--only`` updates its rows and keeps the others, each with its own ``run_at``)."""
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    old = [{"measured_on": saved.get("machine", "?"), **r} for r in saved.get("results", [])]  # rows from before per-row machines
    latest = {r["id"]: r for r in old} | {r["id"]: r for r in results}
    order = [b.id for b in SUITE]
    merged = sorted((r for r in latest.values() if r["id"] in order), key=lambda r: order.index(r["id"]))
    RESULTS.write_text(json.dumps({"machine": machine(), "results": merged}, indent=1) + "\n")
    return merged


def machines_line(results: list[dict]) -> str:
    """``Machine: X.``, or, when the rows were measured on different machines, each with its rows."""
    by: dict[str, list[str]] = {}
    for r in results:
        by.setdefault(r.get("measured_on") or machine(), []).append(r["id"])
    if len(by) == 1:
        return f"Machine: {next(iter(by))}."
    return "Machines: " + "; ".join(f"{m} ({', '.join(ids)})" for m, ids in by.items()) + "."


def update_readme(text: str) -> None:
    body = README.read_text()
    if BEGIN not in body or END not in body:
        raise SystemExit(f"{README} has no {BEGIN} ... {END} block to replace")
    head, rest = body.split(BEGIN, 1)
    README.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma list of ids, e.g. P1,P3")
    ap.add_argument("--quick", action="store_true", help="smaller settings (a smoke run, not the figures)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default 1800)")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--update-readme", action="store_true", help="rewrite the table in benchmarks/README.md")
    args = ap.parse_args(argv)
    wanted = {s.strip().upper() for s in args.only.split(",")} if args.only else None
    unknown = (wanted or set()) - {b.id for b in SUITE}
    if unknown:
        ap.error(f"unknown benchmark id(s) {', '.join(sorted(unknown))}; valid: {', '.join(b.id for b in SUITE)}")
    results = []
    for bench in SUITE:
        if wanted and bench.id not in wanted:
            continue
        print(f"[{bench.id}] {bench.title} ...", flush=True)
        res = run_one(bench, args.quick, args.timeout)
        print("   ", res.get("summary") or res.get("skipped") or res.get("error"), flush=True)
        results.append(res)
    load = os.getloadavg()[0]
    header = (f"Machine: {machine()}. Run {datetime.datetime.now():%Y-%m-%d %H:%M}, load average at the end "
              f"{load:.1f}; command: `python -m benchmarks.run{' --quick' if args.quick else ''}"
              f"{' --only ' + args.only if args.only else ''}`.")
    print()
    print(header + "\n\n" + table(results))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": results}, indent=1) + "\n")
    if args.update_readme:
        if args.quick:
            raise SystemExit("--update-readme records the real settings only; drop --quick")
        merged = merge_results(results)
        runs = sorted({r["run_at"] for r in merged if "run_at" in r}) or ["?"]
        update_readme(f"{machines_line(merged)} Command: `python -m benchmarks.run` (rows measured "
                      f"{runs[0]} to {runs[-1]}; each row's command, time and load are in `benchmarks/results.json`)."
                      + "\n\n" + table(merged))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
