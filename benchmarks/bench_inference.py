"""Preference inference of a 4-pair persona: the embedding head vs likelihood probing with the backbone.

    python -m benchmarks.bench_inference [--probe-dims 90] [--repeats 5] [--threads 0] [--json out.json]

The persona: the first 4 pairs of the example personas (assets/personas, sorted by name), no
UGC and no demographics, like a P-SOUPS history. Measured in this one process:
- alignx, cold: the first `alignx.explore.inference.infer` call in a fresh process. It includes
  importing sentence-transformers, loading all-MiniLM-L6-v2 and the head, and embedding. This is
  what the issue's goal (<= 10 s) is about;
- alignx, warm: the median of ``--repeats`` further calls (the models are loaded);
- peer: `alignx.explore.inference.likelihood_probe` with the app's backbone (embedded SmolLM2 in
  the default precision, the `pba` adapter when shipped), already loaded. Per dimension it scores
  chosen and rejected under a one-label PBA profile, positive and negative: 90 x 2 x 4 x 2 =
  1,440 rows.

The ratio is probe time / warm embedding-head time, on the same persona and threads. CPU seconds
(``time.process_time``, all threads) are printed too: on a shared 2-core machine wall times move
with the other processes, CPU seconds much less. With
``--probe-dims`` below 90 the probe does less than the full job, so the ratio understates the
gap; the JSON also carries a linear estimate for all 90 dimensions (labelled as an estimate).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import emit  # noqa: E402

GOAL_SECONDS = 10.0


def four_pair_persona():
    from alignx import personas
    from alignx.schema import Persona

    pairs = [p for persona in personas.load_examples().values() for p in persona.pairs]
    return Persona(pairs=pairs[:4])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe-dims", type=int, default=90, help="dimensions the likelihood probe scores (all 90)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)

    persona = four_pair_persona()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported
    t0, c0 = time.perf_counter(), time.process_time()
    from alignx.explore import inference

    result = inference.infer(persona)
    cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0

    from alignx.backbone import BackboneConfig, load_backbone, torch_threads

    with torch_threads(args.threads or None):
        warm_runs, warm_cpu = [], []
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            inference.infer(persona)
            warm_runs.append(time.perf_counter() - t)
            warm_cpu.append(time.process_time() - c)
        warm = statistics.median(warm_runs)

        adapters = {"pba": str(ROOT / "assets" / "adapters" / "pba")} \
            if (ROOT / "assets" / "adapters" / "pba" / "adapter_model.safetensors").is_file() else {}
        backbone = load_backbone(BackboneConfig(precision=args.precision, adapters=adapters))
        dims = list(range(min(args.probe_dims, 90)))
        t, c = time.perf_counter(), time.process_time()
        probe = inference.likelihood_probe(backbone, persona, dims=dims)
        probe_s, probe_cpu = time.perf_counter() - t, time.process_time() - c

    rows = len(dims) * 2 * len(persona.pairs) * 2
    load = os.getloadavg()[0]
    full_rows = 90 * 2 * len(persona.pairs) * 2
    summary = (f"4-pair persona: embedding head {cold:.2f} s cold (import + load + infer; {cold_cpu:.2f} CPU s), "
               f"{warm * 1000:.0f} ms warm; likelihood probe {probe_s:.1f} s ({probe_cpu:.1f} CPU s) for "
               f"{len(dims)} dims ({rows} scored rows, {backbone.precision}); load average {load:.1f}")
    emit(args.json, ratio=probe_s / warm, goal=f"cold inference <= {GOAL_SECONDS:g} s", met=cold <= GOAL_SECONDS,
         summary=summary, cold_seconds=round(cold, 3), cold_cpu_seconds=round(cold_cpu, 3), warm_seconds=round(warm, 4),
         warm_cpu_seconds=round(statistics.median(warm_cpu), 4), probe_cpu_seconds=round(probe_cpu, 2),
         warm_runs=[round(x, 4) for x in warm_runs], probe_seconds=round(probe_s, 2), probe_dims=len(dims),
         probe_rows=rows, probe_full_rows=full_rows,
         probe_full_estimate_seconds=round(probe_s / rows * full_rows, 1),  # linear in rows; not measured
         precision=backbone.precision, adapters=adapters, threads=args.threads,
         load_average=round(load, 2), profile=result.profile, support=result.support,
         probe_profile_labels=int(sum(abs(v - 0.5) >= 0.1 for v in probe)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
