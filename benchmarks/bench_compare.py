"""The app's three-way compare: ONE batched stream vs three sequential streams.

    python -m benchmarks.bench_compare [--persona teen-gamer] [--new-tokens 32] [--repeats 3]

Measures, on the app's default backbone (embedded SmolLM2, nf4, the adapters in assets/adapters
when present), the time from the call to the first streamed token and to full completion:
- batched: `alignx.compare.stream_compare` (what the Compare button runs), all three columns
  start together;
- sequential: `alignx.compare.sequential_compare`, three separate `Backbone.stream` calls; the
  first column starts sooner, the last one only after the other two have finished.
Greedy decoding with the same token budget in both modes (a row may stop early at EOS). Runs
alternate batched / sequential and report the median of each; the machine's load average
is printed, since other processes on a small CPU change the numbers a lot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import emit  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persona", default="teen-gamer", help="an example persona in assets/personas")
    ap.add_argument("--prompt", default="Any tips for a weekend trip?")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)

    from alignx import personas
    from alignx.backbone import load_backbone, torch_threads
    from alignx.compare import parse_request, sequential_compare, stream_compare
    from alignx.session import BackboneSettings

    adapters = {n: str(ROOT / "assets" / "adapters" / n) for n in ("ica", "pba")
                if (ROOT / "assets" / "adapters" / n / "adapter_model.safetensors").is_file()}
    backbone = load_backbone(BackboneSettings(precision=args.precision, adapters=adapters).to_config())
    persona = personas.load_examples()[args.persona]
    req = parse_request(json.dumps(persona.to_dict()), "", args.prompt, args.new_tokens, 0.0, 0)
    prompts, _ = backbone.compare_batch(req.prompt, persona=req.persona, profile=req.profile)
    lengths = [len(backbone._prompt_ids(p)) for p in prompts]
    list(stream_compare(backbone, parse_request(json.dumps(persona.to_dict()), "", "Hi", 2, 0.0, 0)))  # warm-up

    batched, sequential = [], []
    with torch_threads(args.threads):
        for _ in range(args.repeats):
            last = list(stream_compare(backbone, req))[-1]
            batched.append({"first_token_s": last.first_token_s, "last_first_token_s": last.first_token_s,
                            "total_s": last.elapsed_s})
            sequential.append(sequential_compare(backbone, req))
        threads = __import__("torch").get_num_threads()

    def med(rows, key):
        return round(statistics.median(r[key] for r in rows), 2)

    print(f"backbone: {backbone.name}, {backbone.precision}, adapters {sorted(adapters) or 'none'}; "
          f"prompt tokens ICA/PBA/universal {lengths}; {args.new_tokens} new tokens; greedy; "
          f"{args.repeats} repeats; torch threads {threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("mode       | first column starts (s) | last column starts (s) | all done (s)")
    for name, rows in (("batched", batched), ("sequential", sequential)):
        print(f"{name:<10} | {med(rows, 'first_token_s'):>23} | {med(rows, 'last_first_token_s'):>22} | "
              f"{med(rows, 'total_s'):>12}")
    ratio = med(sequential, "total_s") / med(batched, "total_s")
    emit(args.json, ratio=ratio, goal=">= 2.5x, streamed", met=ratio >= 2.5,
         batched={k: med(batched, k) for k in batched[0]}, sequential={k: med(sequential, k) for k in batched[0]},
         precision=backbone.precision, prompt_tokens=lengths, new_tokens=args.new_tokens, threads=threads,
         summary=(f"{args.new_tokens} new tokens, {backbone.precision}: all three done after "
                  f"{med(batched, 'total_s')} s batched vs {med(sequential, 'total_s')} s sequential; last column "
                  f"starts at {med(batched, 'last_first_token_s')} s vs {med(sequential, 'last_first_token_s')} s"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
