"""The app's peak memory: nf4 backbone + the two shipped adapters vs the same app in fp32.

    python -m benchmarks.bench_memory [--new-tokens 64]

For each precision, side by side in one run: start ``python app.py`` (ALIGNX_PRECISION=fp32 or
nf4, the shipped ICA and PBA adapters), wait for the page, run one three-way compare through the
``/compare`` API (gradio_client) so the model, both adapters, generation and the UI are all
resident, then read the server process's peak RSS (VmHWM). Ratio = fp32 peak / nf4 peak
(goal >= 2, i.e. nf4 <= 0.5x fp32).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import emit, launch_app, peak_rss_mb, stop

ROOT = Path(__file__).resolve().parents[1]


def measure(precision: str, new_tokens: int) -> dict:
    from gradio_client import Client

    persona = (ROOT / "assets" / "personas" / "teen-gamer.json").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, page_s = launch_app({"ALIGNX_PRECISION": precision}, Path(tmp))
        try:
            t = time.perf_counter()
            out = Client(url, verbose=False).predict(persona, "", "Any tips for a weekend trip?", new_tokens, 0.0, 0,
                                                    api_name="/compare")
            compare_s = time.perf_counter() - t
            status = out[-1]
            return {"precision": precision, "peak_rss_mb": round(peak_rss_mb(proc.pid), 1),
                    "page_s": round(page_s, 1), "first_compare_s": round(compare_s, 1), "status": status}
        finally:
            stop(proc)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = [measure(p, args.new_tokens) for p in ("fp32", "nf4")]
    for r in rows:
        print(json.dumps(r))
    fp32, nf4 = rows
    ratio = fp32["peak_rss_mb"] / nf4["peak_rss_mb"]
    emit(args.json, ratio=ratio, goal=">= 2x (nf4 <= 0.5x fp32)", met=ratio >= 2, rows=rows,
         summary=f"app peak RSS after one compare: fp32 {fp32['peak_rss_mb']:.0f} MB, nf4 {nf4['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
