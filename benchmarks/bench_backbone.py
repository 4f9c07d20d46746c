"""fp32 vs nf4 for the embedded backbone: load time, memory and decode speed, side by side.

    python -m benchmarks.bench_backbone [--new-tokens 64]

Each precision runs in its own subprocess so peak RSS is measured cleanly. Decode speed is the
three-way compare shape the app uses: ICA, PBA and universal prompts as one batch of 3.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, resource
t0 = time.perf_counter()
from alignx.backbone import BackboneConfig, load_backbone
from alignx.prompts import EXAMPLE_PERSONA, EXAMPLE_PROMPT, EXAMPLE_PROFILE
prec, new = sys.argv[1], int(sys.argv[2])
bb = load_backbone(BackboneConfig(precision=prec))
load = time.perf_counter() - t0
prompts, adapters = bb.compare_batch(EXAMPLE_PROMPT, persona=EXAMPLE_PERSONA, profile=EXAMPLE_PROFILE)
bb.generate(prompts, adapters, max_new_tokens=4)  # warm-up
import torch
with torch.inference_mode():
    enc = bb._encode_batch(prompts, new)
    t = time.perf_counter()
    out = bb.model.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    bb.model.generate(**bb._encode_batch(prompts[:1], new), max_new_tokens=new, min_new_tokens=new, do_sample=False)
    dt1 = time.perf_counter() - t
print(json.dumps({"precision": prec, "load_s": round(load, 2),
                  "footprint_mb": round(bb.model.get_memory_footprint() / 2**20, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "batch3_tok_s": round(3 * new / dt, 1), "single_tok_s": round(new / dt1, 1)}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args(argv)
    rows = []
    for prec in ("fp32", "nf4"):
        res = subprocess.run([sys.executable, "-c", CHILD, prec, str(args.new_tokens)], capture_output=True, text=True)
        if res.returncode:
            print(res.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    keys = ["precision", "load_s", "footprint_mb", "peak_rss_mb", "batch3_tok_s", "single_tok_s"]
    print(" | ".join(keys))
    for r in rows:
        print(" | ".join(str(r[k]) for k in keys))
    fp32, nf4 = rows
    print(f"nf4/fp32: footprint {nf4['footprint_mb'] / fp32['footprint_mb']:.2f}x, "
          f"peak RSS {nf4['peak_rss_mb'] / fp32['peak_rss_mb']:.2f}x, "
          f"batch-3 decode {nf4['batch3_tok_s'] / fp32['batch3_tok_s']:.2f}x, "
          f"single decode {nf4['single_tok_s'] / fp32['single_tok_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
