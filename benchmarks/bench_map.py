"""The preference map: placing a new persona on the cached 5,000-point map vs refitting the map.

The population is the app's: 5,000 users from the default prior plus the example personas
(`alignx.explore.population.base_population`). Side by side in one run:

- **place**: `ProjectionMap.project` on the cached map, what the app does when a slider moves:
  umap's `transform` of the new vector plus its nearest neighbours in the 90-dim space. Each new
  persona is a population member's copy with three dimensions set at random, so nothing is
  answered from memory;
- **refit**: fitting UMAP again on the population plus the new persona (`fit_map(refit=True)`),
  the only other way to get its coordinates.

It prints both times and the ratio (goals: >= 100x, and one placement <= 0.2 s). It then starts
a fresh Python process that reads the cached map and places one persona, to time the start-up
the app's background warm-up pays with numba's disk cache warm: ``import umap``, reading the
map, and the first `transform`.

    python -m benchmarks.bench_map                 # 20 placements, 1 refit
    python -m benchmarks.bench_map --places 50 --refits 2
    python -m benchmarks.bench_map --cold          # also a fresh process with an empty numba cache
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit

ROOT = Path(__file__).resolve().parents[1]

FRESH_PROCESS = r"""
import json, time
t0 = time.perf_counter()
from alignx import personas
from alignx.explore import population, projection
pop = population.base_population(personas.load_examples())
t1 = time.perf_counter()
projection.import_umap()
t2 = time.perf_counter()
fitted = projection.fit_map(pop)
t3 = time.perf_counter()
v = pop.vectors[7].astype(float); v[3] = 0.93
fitted.place(v)
t4 = time.perf_counter()
v[5] = 0.07
fitted.place(v)
t5 = time.perf_counter()
print(json.dumps({"population_s": t1 - t0, "import_umap_s": t2 - t1, "read_map_s": t3 - t2,
                  "from_cache": fitted.from_cache, "first_transform_s": t4 - t3, "second_transform_s": t5 - t4}))
"""


def new_personas(pop, n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` new vectors: members' copies with three dimensions set to random values."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        v = pop.vectors[rng.integers(len(pop))].astype(np.float64)
        v[rng.choice(v.size, 3, replace=False)] = rng.random(3).round(3)
        out.append(v)
    return out


def fresh_process(**env) -> dict:
    """Timings of a new Python process that reads the cached map and places two personas."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"), **env)
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS], cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--places", type=int, default=20, help="new personas placed (median reported)")
    parser.add_argument("--refits", type=int, default=1, help="refits timed (median reported)")
    parser.add_argument("--cold", action="store_true",
                        help="also time a fresh process with an empty numba cache (compiles everything; ~1 min)")
    parser.add_argument("--json", help="write the result here (for benchmarks.run)")
    args = parser.parse_args(argv)

    from alignx import personas
    from alignx.explore import population, projection

    pop = population.base_population(personas.load_examples())
    load = os.getloadavg()[0]
    print(f"population: {len(pop):,} points {pop.counts()}; load average {load:.1f} on {os.cpu_count()} cores")
    start = time.perf_counter()
    projection.import_umap()
    print(f"import umap: {time.perf_counter() - start:.1f} s (numba cache: {projection.numba_cache_dir()})")
    fitted = projection.fit_map(pop)
    print(f"map {fitted.key}: {'read from the cache' if fitted.from_cache else 'fitted'} in {fitted.seconds:.2f} s")
    fitted.place(np.full(pop.vectors.shape[1], 0.5))  # compiled code loaded, as the app's warm-up does

    vectors = new_personas(pop, args.places)
    place_times, place_cpu = [], []
    for v in vectors:
        t, c = time.perf_counter(), time.process_time()
        fitted.project(v, k=10)
        place_times.append(time.perf_counter() - t)
        place_cpu.append(time.process_time() - c)
    place, place_c = float(np.median(place_times)), float(np.median(place_cpu))
    print(f"place: median {place * 1000:.1f} ms (CPU {place_c * 1000:.1f} ms), max {max(place_times) * 1000:.1f} ms "
          f"over {len(vectors)} new personas")

    refit_times, refit_cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.refits):
            grown = pop + population.Population(vectors[i][None, :], ("new persona",), ("store",))
            t, c = time.perf_counter(), time.process_time()
            projection.fit_map(grown, cache_dir=tmp, refit=True)
            refit_times.append(time.perf_counter() - t)
            refit_cpu.append(time.process_time() - c)
    refit, refit_c = float(np.median(refit_times)), float(np.median(refit_cpu))
    print(f"refit: median {refit:.1f} s (CPU {refit_c:.1f} s) over {len(refit_times)} fit(s) "
          f"of {len(pop) + 1:,} points")

    fresh = fresh_process()
    cold = None
    if args.cold:
        with tempfile.TemporaryDirectory() as numba_dir:
            cold = fresh_process(NUMBA_CACHE_DIR=numba_dir)
    for label, numbers in (("warm", fresh), ("empty", cold)):
        if numbers is None:
            continue
        if "error" in numbers:
            print(f"fresh process ({label} numba cache) failed:\n{numbers['error']}")
            continue
        print(f"fresh process, {label} numba cache: import umap {numbers['import_umap_s']:.2f} s, read map "
              f"{numbers['read_map_s']:.2f} s, first transform {numbers['first_transform_s']:.3f} s, second "
              f"{numbers['second_transform_s']:.3f} s")

    ratio = refit / place
    load_end = os.getloadavg()[0]
    emit(args.json, ratio=ratio, goal=">= 100x and <= 0.2 s per placement", met=ratio >= 100 and place <= 0.2,
         summary=(f"{len(pop):,}-point map: place {place * 1000:.1f} ms (median of {len(place_times)}) vs refit "
                  f"{refit:.1f} s; CPU time {place_c * 1000:.1f} ms vs {refit_c:.1f} s = {refit_c / place_c:.0f}x "
                  f"(load average {load:.1f} -> {load_end:.1f})"),
         place_s=place, place_max_s=max(place_times), place_cpu_s=place_c, refit_s=refit, refit_cpu_s=refit_c,
         population=len(pop), map_key=fitted.key,
         map_from_cache=fitted.from_cache, fresh_process=fresh, fresh_process_cold_numba=cold,
         load_avg_start=load, load_avg_end=load_end)
    return 0


if __name__ == "__main__":
    sys.exit(main())
