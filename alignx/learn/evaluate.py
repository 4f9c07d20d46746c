"""Alignment accuracy: does the model prefer the user's chosen response to the rejected one?

Two metrics (reference/ALIGNX.md §7.1):

- ``implicit-reward`` (the paper's, for tuned methods): the DPO implicit reward
  r(y) = β·(log π(y | x_method) − log π_ref(y | x_ICA)) of chosen and rejected. π is the base with
  the method's adapter on the method's prompt (ICA: persona; PBA: profile; universal: none);
  π_ref is the base with the adapter disabled on the ICA-format prompt (persona in context).
  Correct iff r(chosen) > r(rejected), strictly: a tie counts as wrong.
- ``likelihood`` (the untuned baselines): log π(chosen | x) > log π(rejected | x) with the
  method's prompt. For this metric the "rewards" reported are the log-likelihoods themselves.

Policy and reference rows go through one `Backbone.score` call with per-row adapters, so they
share batches; identical (prompt, response, adapter) rows are scored once.

    from alignx.learn.evaluate import evaluate, run_benchmark
    result = evaluate(backbone, records, method="pba")
    result = run_benchmark(backbone, "psoups-friendly_unfriendly", "friendly_unfriendly.json",
                           split="psoups_friendly_unfriendly", method="ica", per_example=True)

Command line (also ``python -m alignx.learn.evaluate ...``)::

    alignx eval --benchmark psoups-friendly_unfriendly --data /path/friendly_unfriendly.json \\
        --split psoups_friendly_unfriendly --method pba --adapter assets/adapters/pba --out pba.json

PBA on *inferred* profiles (`alignx.explore.inference`: each record's profile inferred from its
persona instead of the file's ``profile``)::

    alignx eval --benchmark psoups-friendly_unfriendly --data /path/friendly_unfriendly.json \\
        --split psoups_friendly_unfriendly --method pba --adapter assets/adapters/pba --profile inferred

The output dict is JSON-serialisable: ``accuracy``, ``n``, the TRL metric names
(``rewards/accuracies``, ``rewards/margins``, ``rewards/chosen``, ``rewards/rejected``,
``logps/chosen``, ``logps/rejected``), the config, versions, the git commit, timing and, with
``per_example=True``, one row per record. torch is only imported through the backbone.

Two standard errors come with the accuracy. ``accuracy_stderr`` treats the records as independent.
``accuracy_stderr_clustered`` does not: benchmarks such as P-SOUPS ask about the same
(prompt, chosen, rejected) pair for several users, and those records tend to be right or wrong
together, so the clustered one (`clustered_stderr`, by pair; ``n_pairs`` counts them) is the
honest width of the figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from alignx.learn.benchmarks import PROFILE_SOURCES, get_benchmark, resolve_profile
from alignx.learn.data import REFERENCES
from alignx.schema import Persona, Record, persona_to_dict

EVAL_VERSION = "1.0"  # bump when the scoring protocol (prompts, rows, decision rule) changes
METHODS = ("ica", "pba", "universal")
# Where the PBA profile comes from: the benchmark's sources, or "inferred" from each persona.
PROFILES = (*PROFILE_SOURCES, "inferred")
METRICS = ("implicit-reward", "likelihood")


# ----------------------------------------------------------------------------- uncertainty


def pair_key(record: Record) -> tuple[str, str, str]:
    """The pair a record asks about: (prompt, chosen, rejected). Records that share it form one cluster."""
    return (record.prompt, record.chosen, record.rejected)


def clustered_stderr(values, clusters: Sequence) -> float | None:
    """The standard error of the mean of ``values`` when units of one cluster may be correlated.

    The cluster-robust (sandwich) estimate with the usual small-sample factor G / (G - 1), for G
    clusters: with r_g the sum of ``value - mean`` over cluster g, the variance is
    G / (G - 1) * sum_g r_g**2 / n**2. With every unit its own cluster it is the sample variance
    over n. ``clusters`` holds one hashable key per value.

    Returns:
        `float`, or None for fewer than two clusters.

    Raises:
        ValueError: ``values`` and ``clusters`` differ in length.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    keys = list(clusters)
    if len(keys) != x.size:
        raise ValueError(f"{x.size} values but {len(keys)} cluster keys")
    ids = {}
    index = np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.int64)
    g = len(ids)
    if g < 2:
        return None
    residual = np.bincount(index, weights=x - x.mean(), minlength=g)
    return float(math.sqrt(g / (g - 1) * float((residual ** 2).sum())) / x.size)


# ----------------------------------------------------------------------------- persona swap


def persona_key(record: Record) -> str:
    """What makes two records "the same user": ``ground_truth_persona`` when present, else the
    persona content and profile."""
    if record.ground_truth_persona is not None:
        return record.ground_truth_persona
    return json.dumps([persona_to_dict(record.persona), record.profile], sort_keys=True, ensure_ascii=False)


def swap_partners(records: Sequence[Record], seed: int = 0) -> list[int]:
    """For each record, the index of a record of a *different* user, drawn with a seeded RNG.

    Deterministic for a given record list and seed; never returns a record with the same
    `persona_key` (so for P-SOUPS, always one of the opposite ``ground_truth_persona``).

    Raises:
        ValueError: all records belong to one user, so there is nothing to swap in.
    """
    keys = [persona_key(r) for r in records]
    if len(set(keys)) < 2:
        raise ValueError("persona swap needs records of at least two different personas "
                         "(ground_truth_persona); this set has one")
    rng = random.Random(seed)
    partners = []
    for i, key in enumerate(keys):
        j = rng.randrange(len(keys))
        while keys[j] == key:  # rejection sampling: uniform over the other users' records
            j = rng.randrange(len(keys))
        partners.append(j)
    return partners


# ----------------------------------------------------------------------------- evaluation


def _method_prompt(backbone, method: str, record: Record, persona: Persona, profile: str | None,
                   index: int, profile_source: str = "given") -> str:
    if method == "pba" and profile is None and profile_source == "inferred":
        raise ValueError(f"record {index}: no profile can be inferred, its persona has no pairs, UGC or "
                         "demographic text")
    if method == "pba" and profile is None:
        raise ValueError(
            f"record {index} has no PBA profile: the benchmark file has no 'profile' there; try "
            "profile_source='persona' (items with directions) or 'golden' (the record's own direction)"
        )
    return backbone.build_prompt(method, record.prompt, persona=persona, profile=profile)


def _profiles(records: Sequence[Record], source: str, method: str,
              needed: Sequence[int]) -> Callable[[int], str | None]:
    """Record index -> its PBA profile from ``source``. For ``"inferred"`` with PBA, the personas of
    the ``needed`` records are inferred in one batch; the function then carries ``.info`` (the
    inference method and head), else an empty dict."""
    if source != "inferred":
        return lambda k: resolve_profile(records[k], source)
    inferred: dict[int, str | None] = {}
    info: dict = {}
    if method == "pba":
        from alignx.explore import inference

        results = inference.infer_many([records[k].persona for k in needed])
        inferred = {k: (res.profile if res is not None else None) for k, res in zip(needed, results)}
        info = inference.head_info()

    def profile(k: int) -> str | None:
        return inferred.get(k)

    profile.info = info
    return profile


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout this package lives in, or `None`."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def evaluate(backbone, records: Sequence[Record], *, method: str, beta: float = 0.1,
             reference: str = "ica-prompt", profile_source: str = "given", swap_persona: bool = False,
             limit: int | None = None, batch_size: int = 8, per_example: bool = False,
             metric: str | None = None, seed: int = 0, chunk_size: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Alignment accuracy of one method on a list of records.

    Args:
        backbone (`Backbone`): the model; the method's adapter (``backbone.adapter_for(method)``)
            is the policy when loaded.
        records (`Sequence[Record]`): the evaluation records (already split and preprocessed).
        method (`str`): ``"ica"``, ``"pba"`` or ``"universal"``: which prompt the policy sees.
        beta (`float`, defaults to 0.1): the DPO β of the implicit reward (does not change decisions).
        reference (`str`, defaults to `"ica-prompt"`): the reference prompt: the paper's ICA prompt
            with the true persona, or ``"method-prompt"`` (the method's own prompt, as in DPO training).
        profile_source (`str`, defaults to `"given"`): the PBA profile: ``"given"`` (the record's
            ``profile``, as the benchmark set it), ``"golden"`` (its own direction), ``"persona"``
            (its persona items' directions) or ``"inferred"`` (`alignx.explore.inference`, from
            the persona's texts; every needed persona is inferred in one batch).
        swap_persona (`bool`): give the *policy* prompt the persona and profile of a record of a
            different user (`swap_partners`, seeded); the reference keeps the true persona.
        limit (`int`, *optional*): evaluate the first ``limit`` records only (smoke tests).
            Swap partners are drawn from all records, before the limit.
        batch_size (`int`, defaults to 8): rows per forward pass of `Backbone.score`.
        per_example (`bool`): add one row per record under ``"examples"``.
        metric (`str`, *optional*): ``"implicit-reward"`` or ``"likelihood"``; by default the
            implicit reward when the method's adapter is loaded, else the likelihood.
        seed (`int`, defaults to 0): seeds the persona swap.
        chunk_size (`int`, *optional*): score this many records per `Backbone.score` call (each
            call still holds their policy and reference rows); default: all in one call.
        progress (*optional*): called as ``progress(done, total)`` after each call.

    Returns:
        `dict`: see the module docstring.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if profile_source not in PROFILES:
        raise ValueError(f"unknown profile source {profile_source!r}; choose one of {', '.join(PROFILES)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    records = list(records)
    adapter = backbone.adapter_for(method)
    if metric is None:
        metric = "implicit-reward" if adapter is not None else "likelihood"
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    implicit = metric == "implicit-reward"

    partners = swap_partners(records, seed) if swap_persona else list(range(len(records)))
    chosen_idx = list(range(len(records)))[:limit]
    n = len(chosen_idx)
    needed = sorted({k for i in chosen_idx for k in (i, partners[i])})
    profiles = _profiles(records, profile_source, method, needed)  # index -> PBA profile

    # Rows: per record, policy chosen/rejected (+ reference chosen/rejected). Identical rows
    # (e.g. an untuned ICA policy and its ICA reference) are scored once.
    keys: dict[tuple[str, str, str | None], int] = {}
    row_prompts, row_responses, row_adapters = [], [], []
    plan = []  # per record: (policy_c, policy_r, ref_c, ref_r) row indices
    example_prompts = {}

    def row(prompt: str, response: str, route: str | None) -> int:
        key = (prompt, response, route)
        if key not in keys:
            keys[key] = len(row_prompts)
            row_prompts.append(prompt)
            row_responses.append(response)
            row_adapters.append(route)
        return keys[key]

    for i in chosen_idx:
        r, donor = records[i], records[partners[i]]
        policy_prompt = _method_prompt(backbone, method, r, donor.persona, profiles(partners[i]), i, profile_source)
        rows = [row(policy_prompt, r.chosen, adapter), row(policy_prompt, r.rejected, adapter)]
        if implicit:
            ref_method = "ica" if reference == "ica-prompt" else method
            ref_prompt = _method_prompt(backbone, ref_method, r, r.persona, profiles(i), i, profile_source)
            rows += [row(ref_prompt, r.chosen, None), row(ref_prompt, r.rejected, None)]
            example_prompts.setdefault("reference", ref_prompt)
        example_prompts.setdefault("policy", policy_prompt)
        plan.append(rows)

    # Score, one call per chunk of records (default: one call for everything).
    t_score = time.perf_counter()
    scores = np.zeros(len(row_prompts), dtype=np.float64)
    step = chunk_size or max(n, 1)
    done_rows = 0
    for start in range(0, n, step):
        last = max((max(p) for p in plan[start:start + step]), default=-1) + 1
        sel = list(range(done_rows, last))
        if sel:
            scores[sel] = backbone.score([row_prompts[k] for k in sel], [row_responses[k] for k in sel],
                                         [row_adapters[k] for k in sel], batch_size=batch_size)
        done_rows = max(done_rows, last)
        if progress is not None:
            progress(min(start + step, n), n)
    score_seconds = time.perf_counter() - t_score

    idx = np.array(plan, dtype=np.int64).reshape(n, 4 if implicit else 2)
    logp_c, logp_r = scores[idx[:, 0]], scores[idx[:, 1]]
    if implicit:
        ref_c, ref_r = scores[idx[:, 2]], scores[idx[:, 3]]
        rew_c, rew_r = beta * (logp_c - ref_c), beta * (logp_r - ref_r)
    else:
        rew_c, rew_r = logp_c, logp_r
    correct = rew_c > rew_r  # strict: ties are wrong
    pairs = [pair_key(records[i]) for i in chosen_idx]  # the clusters of the standard error
    accuracy = float(correct.mean()) if n else float("nan")

    from alignx import __version__
    info = backbone.info()
    out = {
        "accuracy": accuracy,
        "accuracy_stderr": math.sqrt(accuracy * (1 - accuracy) / n) if n else None,
        "accuracy_stderr_clustered": clustered_stderr(correct, pairs),
        "n": n,
        "n_pairs": len(set(pairs)),
        "correct": int(correct.sum()),
        "ties": int((rew_c == rew_r).sum()),
        "metric": metric,
        "rewards/accuracies": accuracy,
        "rewards/margins": _mean(rew_c - rew_r),
        "rewards/chosen": _mean(rew_c),
        "rewards/rejected": _mean(rew_r),
        "logps/chosen": _mean(logp_c),
        "logps/rejected": _mean(logp_r),
    }
    if implicit:
        out["ref_logps/chosen"], out["ref_logps/rejected"] = _mean(ref_c), _mean(ref_r)
    out["config"] = {
        "method": method,
        "metric": metric,
        "reward": ("beta * (log pi(y|x_method) - log pi_ref(y|x_ref))" if implicit
                   else "log pi(y|x_method) (summed log-likelihood, no reference)"),
        "beta": beta if implicit else None,
        "reference": reference if implicit else None,
        "policy_adapter": adapter,
        "adapters": info.get("adapters", {}),
        "backbone": info,
        "profile_source": profile_source,
        **({"inference": profiles.info} if profile_source == "inferred" else {}),
        "swap_persona": swap_persona,
        "seed": seed,
        "limit": limit,
        "n_records_available": len(records),
        "batch_size": batch_size,
    }
    out["version"] = None  # the benchmark's version, set by run_benchmark
    out["eval_version"] = EVAL_VERSION
    out["alignx_version"] = __version__
    out["git_commit"] = git_commit()
    total = time.perf_counter() - t0
    out["timing"] = {
        "seconds": round(total, 3),
        "score_seconds": round(score_seconds, 3),
        "rows_scored": len(row_prompts),
        "rows_deduplicated": n * idx.shape[1] - len(row_prompts),
        "pairs_per_second": round(n / score_seconds, 4) if score_seconds > 0 else None,
    }
    out["example_prompts"] = example_prompts
    if per_example:
        out["examples"] = []
        for k, i in enumerate(chosen_idx):
            r = records[i]
            ex = {"index": i, "id": r.extra.get("idx", r.extra.get("id")),
                  "ground_truth_persona": r.ground_truth_persona, "prompt": r.prompt,
                  "logps/chosen": float(logp_c[k]), "logps/rejected": float(logp_r[k])}
            if implicit:
                ex.update({"ref_logps/chosen": float(ref_c[k]), "ref_logps/rejected": float(ref_r[k])})
            ex.update({"rewards/chosen": float(rew_c[k]), "rewards/rejected": float(rew_r[k]),
                       "correct": bool(correct[k])})
            if profile_source == "inferred" and method == "pba":
                ex["inferred_profile"] = profiles(partners[i])
            if swap_persona:
                ex["swapped_from"] = partners[i]
                ex["swapped_persona"] = records[partners[i]].ground_truth_persona
            out["examples"].append(ex)
    return out


def run_benchmark(backbone, benchmark: str, data: str | os.PathLike, *, split: str | None = None,
                  **kwargs) -> dict:
    """Load a registered benchmark (optionally its held-out split) and `evaluate` it.

    Adds the benchmark's name, version, data path and sha256 and the split to the result.
    ``kwargs`` go to `evaluate` (``limit`` is applied there, so swap partners see all records).
    """
    from alignx.learn.benchmarks import data_sha256

    spec = get_benchmark(benchmark)
    path = spec.resolve_data(data)
    records = spec.load(path, split=split)
    out = evaluate(backbone, records, **kwargs)
    out["version"] = spec.version
    out["config"] = {"benchmark": spec.name, "data": str(path), "data_sha256": data_sha256(path),
                     "split": split, **out["config"]}
    return out


def write_json(obj, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``eval`` options, plus the shared backbone options of `alignx.cli`."""
    from alignx.cli import add_backbone_args

    p.add_argument("--benchmark", required=True, help="a registered benchmark (python -m alignx.learn.benchmarks)")
    p.add_argument("--data", required=True, type=Path, help="the benchmark file (or the folder holding it)")
    p.add_argument("--method", required=True, choices=METHODS, help="which prompt the policy sees")
    p.add_argument("--split", help="held-out split name (P-SOUPS), e.g. psoups_friendly_unfriendly")
    p.add_argument("--limit", type=int, help="first N records only (smoke tests)")
    p.add_argument("--metric", choices=METRICS,
                   help="default: implicit-reward when the method's adapter is loaded, else likelihood")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta of the implicit reward (default 0.1)")
    p.add_argument("--reference", choices=REFERENCES, default="ica-prompt",
                   help="reference prompt: the paper's ICA prompt (default) or the method's own")
    p.add_argument("--profile", "--profile-source", dest="profile_source", choices=PROFILES, default="given",
                   help="PBA profile: as the benchmark gives it (default), golden (own direction), persona (its "
                        "items' directions) or inferred (from the persona's texts, alignx.explore.inference)")
    p.add_argument("--swap-persona", action="store_true",
                   help="policy prompt gets the persona/profile of a different ground_truth_persona")
    p.add_argument("--seed", type=int, default=0, help="seed of the persona swap")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; use 1 on a busy machine)")
    p.add_argument("--per-example", action="store_true", help="add one row per record to the output")
    p.add_argument("--out", type=Path, help="write the result JSON here (default: print it)")
    add_backbone_args(p)
    adapter = next(a for a in p._actions if "--adapter" in a.option_strings)
    adapter.metavar = "[NAME=]FOLDER"
    adapter.help = "LoRA adapter folder; a bare FOLDER is attached as the adapter named after --method"


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``eval`` subcommand on an `argparse` subparsers object."""
    p = subparsers.add_parser(
        "eval", help="alignment accuracy of a method on a benchmark",
        description="Score chosen vs rejected responses of a benchmark with ICA, PBA or universal prompts. "
                    "With the method's adapter loaded, the paper's implicit-reward accuracy (reference: the "
                    "base model with the persona in context); without, the raw log-likelihood accuracy.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_eval)
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    from alignx.cli import CLIError, backbone_config_from_args

    args.adapter = [a if "=" in a else f"{args.method}={a}" for a in (args.adapter or [])]
    try:
        spec = get_benchmark(args.benchmark)
        path = spec.resolve_data(args.data)
    except (KeyError, FileNotFoundError) as exc:
        raise CLIError(exc.args[0]) from exc
    config = backbone_config_from_args(args)
    from alignx.backbone import load_backbone, torch_threads

    try:
        with torch_threads(args.threads):
            backbone = load_backbone(config)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc

    def progress(done: int, total: int) -> None:
        print(f"  scored {done}/{total} records", file=sys.stderr, flush=True)

    try:
        with torch_threads(args.threads):
            result = run_benchmark(
                backbone, spec.name, path, split=args.split, method=args.method, beta=args.beta,
                reference=args.reference, profile_source=args.profile_source, swap_persona=args.swap_persona,
                limit=args.limit, batch_size=args.batch_size, per_example=args.per_example, metric=args.metric,
                seed=args.seed, chunk_size=32, progress=progress,
            )
    except KeyError as exc:  # an unknown split name
        raise CLIError(exc.args[0] if exc.args else str(exc)) from exc
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: the embedding model is missing
        raise CLIError(str(exc)) from exc
    result["config"]["threads"] = args.threads
    argv = getattr(args, "argv", None)  # set by `alignx.cli.main`: the command after "alignx"
    result["config"]["argv"] = ["alignx", *argv] if argv else list(sys.argv)
    if args.out:
        write_json(result, args.out)
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    swap = " (swapped persona)" if args.swap_persona else ""
    swap += f" ({args.profile_source} profiles)" if args.method == "pba" and args.profile_source != "given" else ""
    se = result["accuracy_stderr_clustered"]
    se = f" ± {se:.4f} (clustered by pair, {result['n_pairs']} pairs)" if se is not None else ""
    print(f"{spec.name} {args.method}{swap}: accuracy {result['accuracy']:.4f}{se} "
          f"({result['correct']}/{result['n']}, {result['metric']}, {result['timing']['seconds']:.0f} s)",
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m alignx.learn.evaluate ...``: the same as ``alignx eval ...``."""
    from alignx.cli import main as cli_main

    return cli_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
