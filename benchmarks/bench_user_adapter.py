"""Closing the loop: does a per-user adapter learn one annotator's own rule?

A synthetic annotator with a clear rule judges a queue of 64 everyday prompts (8 question forms
x 8 topics, made here; the shipped 32-prompt queue runs out of pairs once ties are set aside)
through the real annotation flow: the embedded backbone generates each pair (two samples of the PBA prompt
carrying the annotator's profile, "Concise communication style"), shown in random order, and the
choices go to a real SQLite store. The rule matches the persona: **always the shorter response**
(fewer tokens); pairs within 10% of each other's length are ties, which are no preference, so two
responses both cut at the token cap are a tie.
Every fourth A / B pair is held out (session ``heldout``), the rest (session ``train``) go to the
app's per-user adapter job (`alignx.annotation.start_adapter_job`: LoRA-DPO in a background
process). On the held-out quarter it then measures, side by side in one run:

- the implicit-reward accuracy, TRL's ``rewards/accuracies``: reward = β·(log π(y|x) − log
  π_ref(y|x)) and the share of pairs where the chosen reward beats the rejected one. Before
  training the policy *is* the reference, so every reward is 0: 0.5 when a tie counts half (0.0
  strictly);
- the log-prob preference accuracy: does the model give the chosen response the higher summed
  log-prob, for the base (before) and with the adapter (after).

Usage (about 15 minutes on an idle 2-core CPU)::

    python -m benchmarks.bench_user_adapter --pairs 32 --max-new-tokens 128 --epochs 4 --seed 0 \
        --out results/user_adapter.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from alignx import annotation
from alignx.annotation import AdapterOptions, StudySettings
from alignx.backbone import BackboneConfig, load_backbone, torch_threads
from alignx.preferences import N_DIMS, NEUTRAL, profile_from_vector
from alignx.schema import Persona
from alignx.store import Store

CONCISE = 16  # "Concise communication style"
QUEUE = "bench-prompts"
NAME = "concise"
FORMS = ("Any tips for {}?", "How do I get started with {}?", "What should a beginner know about {}?",
         "Explain {} to a friend who has never tried it.", "What are common mistakes in {}?",
         "Give me a quick plan for a week of {}.", "Why do people enjoy {}?", "How can I get better at {}?")
TOPICS = ("gardening", "running", "cooking rice", "public speaking", "saving money", "learning the guitar",
          "photography", "chess")


def rule(la: int, lb: int, margin: float = 0.1) -> str:
    """The synthetic annotator: the shorter response; a tie when the lengths are within ``margin``."""
    if abs(la - lb) <= margin * max(la, lb, 1):
        return "tie"
    return "A" if la < lb else "B"


def collect(db: Path, backbone, n_pairs: int, settings: StudySettings) -> dict:
    """Judge the queue until ``n_pairs`` A / B pairs are saved (or the queue ends)."""
    vector = [NEUTRAL] * N_DIMS
    vector[CONCISE] = 1.0
    with Store.open(db) as store:
        store.add_queue(QUEUE, [{"prompt": f.format(t)} for t in TOPICS for f in FORMS], source="bench_user_adapter")
    annotation.register_annotator(db, NAME, Persona(demographics="Prefers short, direct answers."), vector)
    with Store.open(db) as store:  # a rerun with the same --folder resumes the collection
        done = [r["choice"] for r in store.choices(annotator=NAME)]
    counts = {c: done.count(c) for c in ("A", "B", "tie")}
    decisive, t0 = counts["A"] + counts["B"], time.perf_counter()
    while decisive < n_pairs:
        # every fourth decisive pair is held out; the next choice's session is decided before it is made
        session = "heldout" if decisive % 4 == 3 else "train"
        shown = annotation.next_item(db, annotator=NAME, queue=QUEUE, session_id=session, settings=settings,
                                     get_backbone=lambda: backbone, model_tag="bench-fp32")
        if shown["done"]:
            break
        la, lb = (len(backbone.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (shown["a"], shown["b"]))
        choice = rule(la, lb)
        annotation.save_choice(db, annotator=NAME, pair_id=shown["pair_id"], order=shown["order"], choice=choice,
                               session_id="train" if choice == "tie" else session)
        counts[choice] += 1
        decisive += choice != "tie"
        print(f"  item {shown['position']:2d}: {choice:3s} (A {la} tokens, B {lb} tokens)", flush=True)
    return {"choices": counts, "pairs": decisive, "collect_seconds": round(time.perf_counter() - t0, 1),
            "vector": vector}


def accuracies(backbone, records, profile: str, beta: float) -> dict:
    """Implicit-reward and log-prob preference accuracy of the ``user`` adapter vs the base."""
    prompts = [backbone.build_prompt("pba", r.prompt, profile=profile) for r in records]
    responses = [r.chosen for r in records] + [r.rejected for r in records]
    both = prompts + prompts
    ref = backbone.score(both, responses, [None] * len(both))
    pol = backbone.score(both, responses, ["user"] * len(both))
    n = len(records)
    reward = beta * (pol - ref)
    margin = reward[:n] - reward[n:]
    return {
        "n": n,
        "implicit_reward_accuracy_before": 0.5,  # policy == reference: every reward is 0 (ties count half)
        "implicit_reward_accuracy_before_strict": 0.0,
        "implicit_reward_accuracy_after": float(np.mean(margin > 0) + 0.5 * np.mean(margin == 0)),
        "mean_reward_margin_after": float(margin.mean()),
        "logp_accuracy_before": float(np.mean(ref[:n] > ref[n:])),
        "logp_accuracy_after": float(np.mean(pol[:n] > pol[n:])),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=32, help="A / B pairs to collect (>= 16)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lora-top-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help="store and adapter folder (default: a temp folder); "
                        "a rerun with the same folder resumes the collection")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)

    folder = Path(args.folder or tempfile.mkdtemp(prefix="alignx-bench-user-"))
    db = folder / "alignx.db"
    t0 = time.perf_counter()
    with torch_threads(args.threads):
        backbone = load_backbone(BackboneConfig(precision="fp32"))
        settings = StudySettings("pba", "pba", max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                 seed=args.seed)
        print(f"collecting {args.pairs} pairs in {db} ...", flush=True)
        collected = collect(db, backbone, args.pairs, settings)
    print(f"collected {collected['pairs']} A / B pairs ({collected['choices']}) in {collected['collect_seconds']} s")
    if collected["pairs"] < 16:
        print(f"warning: only {collected['pairs']} pairs (the queue ran out); the issue asks for at least 16")

    options = AdapterOptions(epochs=args.epochs, learning_rate=args.lr, lora_top_layers=args.lora_top_layers,
                             threads=args.threads, precision="auto")
    job = annotation.start_adapter_job(db, NAME, "train", options, only_session=True)
    row = job.wait()
    if row["status"] != "done":
        raise SystemExit(f"the adapter job failed: {row['message']}")
    print(f"trained adapter #{row['id']} on {row['n_pairs']} pairs: {row['metrics']}")

    with Store.open(db) as store:
        train = store.export_records(annotator=NAME, session_id="train")
        heldout = store.export_records(annotator=NAME, session_id="heldout")
    profile = profile_from_vector(collected["vector"])
    with torch_threads(args.threads):
        adapted = load_backbone(BackboneConfig(precision="fp32", adapters={"user": row["path"]}))
        results = {"heldout": accuracies(adapted, heldout, profile, options.beta),
                   "train": accuracies(adapted, train, profile, options.beta)}
    argv = sys.argv[1:] if argv is None else argv
    report = {"command": " ".join(["python -m benchmarks.bench_user_adapter", *argv]), "args": vars(args),
              "collected": {k: v for k, v in collected.items() if k != "vector"}, "profile": profile,
              "adapter": {"path": row["path"], "n_pairs": row["n_pairs"], **row["metrics"]},
              "results": results, "total_seconds": round(time.perf_counter() - t0, 1)}
    h, t = results["heldout"], results["train"]
    print(f"\nheld-out quarter ({h['n']} pairs) | before | after")
    print(f"implicit-reward accuracy      | {h['implicit_reward_accuracy_before']:.3f}  | "
          f"{h['implicit_reward_accuracy_after']:.3f}  (strict before: 0.000; "
          f"mean margin {h['mean_reward_margin_after']:+.4f})")
    print(f"log-prob preference accuracy  | {h['logp_accuracy_before']:.3f}  | {h['logp_accuracy_after']:.3f}")
    print(f"train pairs ({t['n']}): implicit-reward accuracy {t['implicit_reward_accuracy_after']:.3f}, "
          f"log-prob accuracy {t['logp_accuracy_before']:.3f} -> {t['logp_accuracy_after']:.3f}")
    print(f"total {report['total_seconds']} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    main()
