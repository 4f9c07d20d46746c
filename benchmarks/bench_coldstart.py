"""Cold start: from ``python app.py`` to the first usable page, vs waiting for the model first.

    python -m benchmarks.bench_coldstart

Starts the app as the README does (embedded model, nf4, shipped adapters; the model cache
already built, as after the first run) and measures, in one run:
- **page**: seconds until the page answers (the app serves at once and loads the model in the
  background, so personas and sliders are usable immediately);
- **model ready**: seconds until the first ``/compare`` call returns 8 tokens, which is when a
  load-then-serve app would have shown its page.
Ratio = model ready / page (what serving first saves); goal: page <= 30 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import emit, launch_app, stop

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from gradio_client import Client

    persona = (ROOT / "assets" / "personas" / "teen-gamer.json").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc, url, page_s = launch_app({}, Path(tmp))
        try:
            Client(url, verbose=False).predict(persona, "", "Hi", 8, 0.0, 0, api_name="/compare")
            ready_s = time.perf_counter() - t0
        finally:
            stop(proc)
    emit(args.json, ratio=ready_s / page_s, goal="page <= 30 s", met=page_s <= 30,
         page_s=round(page_s, 1), model_ready_s=round(ready_s, 1),
         summary=f"page served after {page_s:.1f} s; model ready (first compare) after {ready_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
