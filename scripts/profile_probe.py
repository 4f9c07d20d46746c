"""Can the untuned base model's states tell the persona's style from the PBA prompt alone?

For each train-side record of a split, one forward of its PBA prompt (the record's profile, the
chat template) through the embedded backbone. At a few layers it keeps the state of the prompt's
last token and the mean state over all prompt tokens. A logistic-regression probe then learns the
record's ``ground_truth_persona`` from those states and is scored on records whose task AND
profile it has not seen (the tasks are split at random, ``--folds`` times with different seeds).

High scores mean the style is linearly present in what the adapter's layers read; a PBA adapter
that does not carry the style over to unseen profiles then lacks the training signal, not the
information. The held-out side is never read.

    python scripts/profile_probe.py --data friendly_unfriendly.json --split psoups_friendly_unfriendly \\
        --layers 6 12 18 24 30 --threads 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignx.backbone import embedded_model_dir
from alignx.learn.split import split_indices
from alignx.prompts import build_prompt
from alignx.schema import load_records


def prompt_states(model, tokenizer, prompts: list[str], layers: list[int]) -> np.ndarray:
    """(n, len(layers), 2, hidden): per prompt and layer, the last token's state and the mean state."""
    out = []
    for text in prompts:
        ids = tokenizer(text=text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states
        out.append(np.stack([torch.stack([hidden[k][0, -1], hidden[k][0].mean(0)]).float().numpy()
                             for k in layers]))
    return np.stack(out)


def probe(states: np.ndarray, labels: np.ndarray, tasks: np.ndarray, profiles: np.ndarray, *, folds: int,
          test_share: float = 0.25, C: float = 0.1) -> dict:
    """Per layer and pooling, the probe's accuracy on unseen tasks with unseen profiles, per fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    result = {}
    for seed in range(folds):
        rng = np.random.default_rng(seed)
        unique = np.unique(tasks)
        rng.shuffle(unique)
        held = set(unique[:max(1, int(len(unique) * test_share))])
        train = np.array([t not in held for t in tasks])  # no record of a held-out task trains the probe
        seen = set(profiles[train])
        test = ~train & np.array([p not in seen for p in profiles])
        if len(set(labels[train])) < 2 or not test.any():
            continue
        for i in range(states.shape[1]):
            for j, pooling in enumerate(("last", "mean")):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
                clf.fit(states[train, i, j], labels[train])
                result.setdefault((i, pooling), []).append((float(clf.score(states[test, i, j], labels[test])),
                                                            int(test.sum())))
    return result


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="records with ground_truth_persona and profile (P-SOUPS)")
    ap.add_argument("--split", help="a split in assets/splits: only its train side is read")
    ap.add_argument("--layers", type=int, nargs="+", default=[6, 12, 18, 24, 30],
                    help="hidden-state indices (0: the embeddings; the backbone has 30 layers)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--limit", type=int, help="only the first N train-side records")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    records = load_records(args.data)
    side = list(split_indices(args.split, records)[0] if args.split else range(len(records)))
    side = [i for i in side if records[i].ground_truth_persona and records[i].profile][:args.limit]
    styles = sorted({records[i].ground_truth_persona for i in side})
    if len(styles) < 2:
        raise SystemExit("the records need at least two ground_truth_persona styles and a profile")
    path = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    if max(args.layers) > model.config.num_hidden_layers or min(args.layers) < 0:
        raise SystemExit(f"--layers must be within 0..{model.config.num_hidden_layers}")
    prompts = [build_prompt("pba", records[i].prompt, profile=records[i].profile, style="chat", tokenizer=tokenizer)
               for i in side]
    states = prompt_states(model, tokenizer, prompts, args.layers)
    labels = np.array([styles.index(records[i].ground_truth_persona) for i in side])
    tasks = np.array([records[i].prompt for i in side])
    profiles = np.array([records[i].profile for i in side])
    scores = probe(states, labels, tasks, profiles, folds=args.folds)
    report = {"n_records": len(side), "styles": styles, "folds": args.folds, "accuracy": {}}
    for (i, pooling), runs in sorted(scores.items()):
        report["accuracy"][f"layer {args.layers[i]} {pooling}"] = {
            "per_fold": [round(a, 4) for a, _ in runs], "n_test": [n for _, n in runs],
            "mean": round(sum(a for a, _ in runs) / len(runs), 4)}
    return report


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
