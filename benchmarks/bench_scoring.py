"""Scoring throughput: alignx's batched scorer vs the official one-sequence-per-forward scorer.

Both score the same chosen/rejected pairs (P-SOUPS records, ICA prompts with the persona in
context) with the same loaded model, side by side in one run:

- **batched**: `Backbone.score` (what `alignx eval` runs): each prompt runs once and its
  responses continue from its KV cache (`alignx.logprobs`), prompts sorted by length and batched
  8 responses at a time, only the response positions go through the LM head;
- **official**: as the paper's ``eval/loss_*.py`` do it: one ``[bos] + prompt + response + [eos]``
  sequence per forward pass, full logits over every position, log-softmax, sum of the response
  (+ EOS) token log-probs.

The pairs are timed in interleaved rounds (the scorer that goes first rotates every round) so
that load from other processes hits all alike. It prints both throughputs, the speed ratio
(goal >= 5x) and whether every chosen-vs-rejected decision is the same.

    python -m benchmarks.bench_scoring --data ../shared/data/psoups/friendly_unfriendly.json --pairs 64
    python -m benchmarks.bench_scoring              # tests/fixtures P-SOUPS file, records repeated
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import emit

ROOT = Path(__file__).resolve().parents[1]
SHARED_PSOUPS = ROOT.parent / "shared" / "data" / "psoups" / "friendly_unfriendly.json"
FIXTURE_PSOUPS = ROOT / "tests" / "fixtures" / "bench" / "P-Soups" / "friendly_unfriendly.sample.json"


def official_score(backbone, prompts, responses) -> np.ndarray:
    """One sequence per forward with full logits, as eval/loss_ica.py (no batching, no adapter)."""
    import torch

    tok, model = backbone.tokenizer, backbone.model
    out = np.zeros(len(prompts))
    with torch.inference_mode():
        for i, (p, r) in enumerate(zip(prompts, responses)):
            p_ids = tok(p, add_special_tokens=False)["input_ids"]
            if tok.bos_token_id is not None and (not p_ids or p_ids[0] != tok.bos_token_id):
                p_ids = [tok.bos_token_id] + p_ids
            r_ids = tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = torch.tensor([p_ids + r_ids], device=model.device)
            logits = model(input_ids=ids, use_cache=False).logits.float()  # (1, T, V): every position
            logp = torch.log_softmax(logits[0, :-1], dim=-1)
            token_logp = logp.gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
            out[i] = token_logp[len(p_ids) - 1:].sum().item()  # the response + EOS positions
    return out


def pick_pairs(records, n: int):
    """``n`` records spread evenly over the file (both personas), cycling if the file is smaller."""
    if len(records) >= n:
        step = len(records) / n
        return [records[int(k * step)] for k in range(n)]
    return [records[k % len(records)] for k in range(n)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help=f"P-SOUPS file (default: {SHARED_PSOUPS} if present, else the fixture)")
    ap.add_argument("--pairs", type=int, default=64, help="chosen/rejected pairs to score (default 64)")
    ap.add_argument("--method", default="ica", choices=("ica", "pba", "universal"), help="prompt style (default ica)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds (default 4)")
    ap.add_argument("--precision", default="auto", help="backbone precision (default: auto = nf4)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)

    import torch

    from alignx.backbone import BackboneConfig, load_backbone
    from alignx.schema import load_records

    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or (SHARED_PSOUPS if SHARED_PSOUPS.exists() else FIXTURE_PSOUPS)
    records = pick_pairs(load_records(data), args.pairs)
    bb = load_backbone(BackboneConfig(precision=args.precision))
    prompts = [bb.build_prompt(args.method, r.prompt, persona=r.persona, profile=r.profile) for r in records]
    n_tokens = [len(bb._prompt_ids(p)) for p in prompts]
    print(f"model {bb.name}, precision {bb.precision}, torch threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}")
    print(f"data {data}: {len(records)} pairs, {args.method} prompts of {min(n_tokens)}-{max(n_tokens)} "
          f"tokens (mean {np.mean(n_tokens):.0f})")

    # warm-up (allocator, kernels) on one pair each way, not timed
    bb.score(prompts[:1], [records[0].chosen])
    official_score(bb, prompts[:1], [records[0].chosen])

    scorers = {
        "official": ("official (1 seq/forward, full logits)", lambda ps, rs: official_score(bb, ps, rs)),
        "batched": (f"batched (Backbone.score, batch {args.batch_size})",
                    lambda ps, rs: bb.score(ps, rs, batch_size=args.batch_size)),
    }
    res = {k: {"c": np.zeros(len(records)), "r": np.zeros(len(records)), "seconds": 0.0} for k in scorers}
    bounds = np.linspace(0, len(records), args.rounds + 1).astype(int)
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        sl = slice(a, b)
        ps, cs, rs = prompts[sl], [r.chosen for r in records[sl]], [r.rejected for r in records[sl]]
        order = list(scorers)
        order = order[k % len(order):] + order[:k % len(order)]  # rotate who goes first
        for name in order:
            t = time.perf_counter()
            s = scorers[name][1](ps + ps, cs + rs)
            res[name]["seconds"] += time.perf_counter() - t
            res[name]["c"][sl], res[name]["r"][sl] = s[:len(ps)], s[len(ps):]
        so_far = ", ".join(f"{name} {res[name]['seconds']:.1f} s" for name in scorers)
        print(f"  round {k + 1}/{args.rounds}: pairs {a}-{b} done ({so_far} so far)", flush=True)

    n = len(records)
    ref = res["official"]
    result = {
        "pairs": n, "method": args.method, "precision": bb.precision, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "load_avg_end": round(os.getloadavg()[0], 1), "data": str(data),
        "prompt_tokens_mean": float(np.mean(n_tokens)), "scorers": {},
    }
    print()
    print(f"{'scorer':40} {'seconds':>8} {'pairs/s':>8} {'ratio':>7}  decisions same as official")
    for name, (label, _) in scorers.items():
        r = res[name]
        same = (r["c"] > r["r"]) == (ref["c"] > ref["r"])
        diff = np.abs(np.concatenate([r["c"] - ref["c"], r["r"] - ref["r"]]))
        row = {"seconds": round(r["seconds"], 2), "pairs_per_s": round(n / r["seconds"], 3),
               "speedup_vs_official": round(ref["seconds"] / r["seconds"], 2),
               "decisions_identical": bool(same.all()), "decisions_differing": int((~same).sum()),
               "max_abs_logp_diff": round(float(diff.max()), 4)}
        result["scorers"][name] = row
        print(f"{label:40} {row['seconds']:8.1f} {row['pairs_per_s']:8.3f} {row['speedup_vs_official']:6.2f}x  "
              f"{row['decisions_identical']} ({n - row['decisions_differing']}/{n}; max |dlogp| "
              f"{row['max_abs_logp_diff']})")
    batched, official = result["scorers"]["batched"], result["scorers"]["official"]
    emit(args.json, ratio=batched["speedup_vs_official"], goal=">= 5x, identical decisions",
         met=batched["speedup_vs_official"] >= 5 and batched["decisions_identical"],
         summary=(f"{n} pairs ({args.method} prompts, {bb.precision}): batched {batched['pairs_per_s']} pairs/s vs "
                  f"official {official['pairs_per_s']} pairs/s, decisions identical: {batched['decisions_identical']}"),
         **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
