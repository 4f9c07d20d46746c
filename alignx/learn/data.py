"""Training data for ICA and PBA: AlignX records -> DPO rows, faithful to the paper.

For every record (reference/ALIGNX.md §4, §15, official ``train/format_data.py``):

1. ``num_ugc = min(randint(0, 4), len(UGC))`` and ``num_pair = min(randint(0, 4), len(PAIR))``;
   if both are 0, ``min(4, len)`` of each; then ``random.sample`` that many items of each list.
2. The ICA prompt shows the sampled items (UGC block, PAIR block) plus, by alignx's mixing rule,
   the demographics (below). The PBA prompt shows the profile: the official `get_profile` over the
   *same* sampled items' directions. The official code's bugs (§13) are avoided: the sampled lists
   are always (re)assigned per record, so a count of 0 never reuses the previous record's items
   (§13.2), and ``random`` is a local ``random.Random(seed)`` (§13.1).

Profile fallbacks, in order: the sampled items' directions; if none of them has one (a
demographics-only draw on AlignX), all of the persona's items (`Persona.profile`); if the items
carry no directions at all (P-SOUPS, PRISM, UF-P-4), the record's precomputed ``profile``.

Demographics mixing rule (the paper's P_DEMO results imply training saw DEMO; the released code
never shows it). When the record has a non-empty ``Demographic Information``:

- with probability ``demo_only_prob`` (default 0.1) the draw is *DEMO-only*: no UGC / PAIR items,
  just the demographics (ICA), and the profile over all the persona's items (PBA: a DEMO summarises
  the whole user, §13.8);
- otherwise the 0-4 / 0-4 draw above, and the demographics are appended with probability
  ``demo_prob`` (default 0.5).

Rows are ``{"prompt", "chosen", "rejected", "method", "record_index", "kind", "n_ugc", "n_pair",
"demo", "task", "style"}``; ``kind`` is ``"original"`` or an augmentation (`persona_swap_rows`,
`contrast_rows`, `history_rows`, `history_swap_rows`), ``task`` the prompt the row asks about (the
record's own, or a history item's) and ``style`` the ``ground_truth_persona`` of the user whose
persona the row shows (None when the data has none; `alignx.learn.train`'s
``distill_weight`` uses it as the teacher's instruction).
With ``reference="ica-prompt"`` a row also has ``ref_prompt``: the ICA prompt with the row's whole
persona, which is the reference prompt of the paper's alignment accuracy (§7.1,
`alignx.learn.evaluate`). DPO against it trains the implicit reward that evaluation measures.

Usage::

    from alignx.learn.data import format_records
    rows = format_records(records, "pba", seed=42, style="chat", tokenizer=tok)

Pure Python: no torch. A tokenizer is only needed for the ``chat`` / ``chat-train`` styles.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from alignx.prompts import build_prompt
from alignx.schema import PairItem, Persona, Record, UGCItem

MAX_ITEMS = 4
REFERENCES = ("method-prompt", "ica-prompt")
DEMO_PROB = 0.5
DEMO_ONLY_PROB = 0.1


@dataclass
class HistoryDraw:
    """The persona items drawn for one training row (what the ICA prompt shows).

    Args:
        ugc (`list[UGCItem]`): the sampled UGC items, in sampled order.
        pairs (`list[PairItem]`): the sampled PAIR items, in sampled order.
        demographics (`str` or `None`): the demographics, when this draw shows them.
        demo_only (`bool`): a DEMO-only draw (no items by construction).
    """

    ugc: list[UGCItem] = field(default_factory=list)
    pairs: list[PairItem] = field(default_factory=list)
    demographics: str | None = None
    demo_only: bool = False

    def persona(self) -> Persona:
        """The drawn items as a `Persona` (for `alignx.prompts.build_ica_prompt`)."""
        return Persona(ugc=list(self.ugc), pairs=list(self.pairs), demographics=self.demographics)


def sample_counts(n_ugc: int, n_pair: int, rng: random.Random, max_items: int = MAX_ITEMS) -> tuple[int, int]:
    """The official counts: ``min(randint(0, 4), len)`` each; ``min(4, len)`` of each if both are 0."""
    k_ugc = min(rng.randint(0, max_items), n_ugc)
    k_pair = min(rng.randint(0, max_items), n_pair)
    if k_ugc == 0 and k_pair == 0:
        k_ugc, k_pair = min(max_items, n_ugc), min(max_items, n_pair)
    return k_ugc, k_pair


def sample_history(persona: Persona, rng: random.Random, *, max_items: int = MAX_ITEMS,
                   demo_prob: float = DEMO_PROB, demo_only_prob: float = DEMO_ONLY_PROB) -> HistoryDraw:
    """Draw the items one training row shows (module docstring: counts and DEMO mixing rule).

    The lists are built fresh on every call, so nothing leaks from a previous record (§13.2).
    """
    has_demo = bool(persona.demographics)
    if has_demo and rng.random() < demo_only_prob:
        return HistoryDraw(demographics=persona.demographics, demo_only=True)
    k_ugc, k_pair = sample_counts(len(persona.ugc), len(persona.pairs), rng, max_items)
    ugc = rng.sample(persona.ugc, k_ugc)
    pairs = rng.sample(persona.pairs, k_pair)
    demo = persona.demographics if has_demo and rng.random() < demo_prob else None
    return HistoryDraw(ugc=ugc, pairs=pairs, demographics=demo)


def draw_profile(record: Record, draw: HistoryDraw) -> str | None:
    """The PBA profile of a draw: `get_profile` of the drawn items' directions, with the fallbacks of
    the module docstring (all persona items, then the record's precomputed ``profile``)."""
    from alignx.preferences import get_profile

    directions = [it.direction for it in [*draw.ugc, *draw.pairs] if it.direction is not None]
    if directions:
        return get_profile(directions)
    return record.persona.profile() or record.profile


def thin_profile(profile: str, rng: random.Random, keep: float) -> str:
    """Profile dropout: a random subset of ``profile``'s labels, in their order.

    A keep rate is drawn uniformly from ``[keep, 1]`` for the row, then each label is kept with that
    probability (at least one label always stays). ``keep = 1`` returns ``profile`` unchanged and
    draws nothing from ``rng``, so rows built without dropout are the same as before it existed.
    A PBA adapter trained on P-SOUPS sees ~470 long, noisy profiles, and can fit its rows by
    recognising a profile as a whole; with dropout rows rarely show the same label set, so what
    fits is the labels' individual meaning (`assets/adapters/README.md`).
    """
    if keep >= 1:
        return profile
    from alignx.preferences import split_profile

    labels = [label for label, _ in split_profile(profile)]
    rate = rng.uniform(keep, 1.0)
    kept = [label for label in labels if rng.random() < rate]
    return ", ".join(kept or [rng.choice(labels)])


def format_row(record: Record, method: str, rng: random.Random, *, index: int, style: str = "chat",
               tokenizer: Any = None, persona_from: Record | None = None, kind: str = "original",
               swap_labels: bool = False, reference: str = "method-prompt", profile_keep: float = 1.0,
               **draw_kwargs) -> dict | None:
    """One DPO row for ``record``.

    Args:
        record (`Record`): the preference example.
        method (`str`): ``"ica"`` or ``"pba"``.
        rng (`random.Random`): the one source of randomness.
        index (`int`): the record's index in its file (kept as ``record_index``).
        style (`str`, defaults to `"chat"`): a template of `alignx.prompts` (``chat``/``chat-train``
            for chat-template backbones such as SmolLM2, ``official-train`` for Llama-3).
        tokenizer: required by the chat styles.
        persona_from (`Record`, *optional*): take the persona / profile from this record instead
            (a persona swap); the prompt and responses stay ``record``'s.
        kind (`str`): a tag stored in the row. swap_labels (`bool`): exchange chosen and rejected.
        reference (`str`, defaults to `"method-prompt"`): ``"ica-prompt"`` adds ``ref_prompt``, the
            ICA prompt with the whole persona of the row's user (the evaluation's reference prompt).
        profile_keep (`float`, defaults to 1): PBA profile dropout (`thin_profile`); 1 shows the
            whole profile.
        draw_kwargs: ``max_items``, ``demo_prob``, ``demo_only_prob`` for `sample_history`.

    Returns:
        The row dict, or `None` when PBA has no profile for this record.
    """
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; choose one of {', '.join(REFERENCES)}")
    if not 0 < profile_keep <= 1:
        raise ValueError(f"profile_keep must be in (0, 1], got {profile_keep!r}")
    source = persona_from if persona_from is not None else record
    draw = sample_history(source.persona, rng, **draw_kwargs)
    chosen, rejected = (record.rejected, record.chosen) if swap_labels else (record.chosen, record.rejected)
    if method == "ica":
        prompt = build_prompt("ica", record.prompt, persona=draw.persona(), style=style, tokenizer=tokenizer)
    elif method == "pba":
        profile = draw_profile(source, draw)
        if not profile:
            return None
        profile = thin_profile(profile, rng, profile_keep)
        prompt = build_prompt("pba", record.prompt, profile=profile, style=style, tokenizer=tokenizer)
    else:
        raise ValueError(f"unknown method {method!r}; training formats 'ica' or 'pba'")
    row = {"prompt": prompt, "chosen": chosen, "rejected": rejected, "method": method,
           "record_index": index, "kind": kind, "n_ugc": len(draw.ugc), "n_pair": len(draw.pairs),
           "demo": draw.demographics is not None, "task": record.prompt, "style": source.ground_truth_persona}
    if reference == "ica-prompt":
        row["ref_prompt"] = build_prompt("ica", record.prompt, persona=source.persona, style=style,
                                         tokenizer=tokenizer)
    return row


def _indices(records: Sequence[Record], indices: Sequence[int] | None) -> list[int]:
    return list(range(len(records))) if indices is None else list(indices)


def format_records(records: Sequence[Record], method: str, *, seed: int = 42, style: str = "chat",
                   tokenizer: Any = None, indices: Sequence[int] | None = None, **draw_kwargs) -> list[dict]:
    """The paper's training rows: one per record, drawn with ``random.Random(seed)``.

    Args:
        records: the records. indices (*optional*): their indices in the source file (for
            ``record_index``; default 0..n-1). Other args as in `format_row`.
    """
    rng = random.Random(seed)
    rows = []
    for i, rec in zip(_indices(records, indices), records):
        row = format_row(rec, method, rng, index=i, style=style, tokenizer=tokenizer, **draw_kwargs)
        if row is not None:
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- persona swaps


def persona_key(record: Record) -> str | None:
    """The user a record belongs to (``ground_truth_persona``), `None` when unknown."""
    return record.ground_truth_persona


def swap_partner(records: Sequence[Record], i: int, rng: random.Random) -> int:
    """Index of a record with a different ``ground_truth_persona`` than ``records[i]`` (uniform)."""
    key = persona_key(records[i])
    others = [j for j, r in enumerate(records) if persona_key(r) is not None and persona_key(r) != key]
    if key is None or not others:
        raise ValueError("a persona swap needs records with at least two different ground_truth_persona values")
    return rng.choice(others)


def swap_persona(record: Record, donor: Record) -> Record:
    """``record`` with the persona and profile of ``donor`` (prompt and responses unchanged)."""
    return replace(record, persona=donor.persona, profile=donor.profile,
                   ground_truth_persona=donor.ground_truth_persona)


def swapped_records(records: Sequence[Record], seed: int = 0) -> list[Record]:
    """Every record with the persona / profile of a seeded random record of another user."""
    rng = random.Random(seed)
    return [swap_persona(r, records[swap_partner(records, i, rng)]) for i, r in enumerate(records)]


def persona_swap_rows(records: Sequence[Record], method: str, *, seed: int = 42, style: str = "chat",
                      tokenizer: Any = None, indices: Sequence[int] | None = None, **draw_kwargs) -> list[dict]:
    """Augmentation that teaches persona-conditionality: under ANOTHER user's persona the labels flip.

    For a record of user A (chosen = A's style, rejected = the plain answer) shown with the persona
    of user B of the opposite style, the plain answer is preferred: ``chosen = record.rejected``,
    ``rejected = record.chosen``. This is justified for opposite-style pairs such as P-SOUPS'
    friendly / unfriendly (a user who wants rude answers prefers a plain one to a jokey-friendly one,
    and vice versa), not for arbitrary users; use it only on such data. ``kind = "swap"``.
    """
    targets = [(pos, i, rec) for pos, (i, rec) in enumerate(zip(_indices(records, indices), records))]
    return _swapped_rows(records, targets, method, random.Random(seed + 1), kind="swap", style=style,
                         tokenizer=tokenizer, **draw_kwargs)


def _swapped_rows(records: Sequence[Record], targets, method: str, rng: random.Random, *, kind: str,
                  **format_kwargs) -> list[dict]:
    """Each (position in ``records``, file index, target record) of ``targets`` under the persona of
    a record of another user (`swap_partner` of that position), chosen and rejected exchanged."""
    rows = []
    for pos, i, rec in targets:
        donor = records[swap_partner(records, pos, rng)]
        row = format_row(rec, method, rng, index=i, persona_from=donor, kind=kind, swap_labels=True, **format_kwargs)
        if row is not None:
            rows.append(row)
    return rows


def contrast_rows(records: Sequence[Record], method: str, *, seed: int = 42, style: str = "chat",
                  tokenizer: Any = None, indices: Sequence[int] | None = None, **draw_kwargs) -> list[dict]:
    """Cross-persona contrast pairs: for a prompt answered by two users of different personas, under
    user A's persona A's chosen response beats B's chosen response. ``kind = "contrast"``."""
    rng = random.Random(seed + 2)
    idx = _indices(records, indices)
    by_prompt: dict[str, list[int]] = {}
    for pos, rec in enumerate(records):
        by_prompt.setdefault(rec.prompt, []).append(pos)
    rows = []
    for pos, (i, rec) in enumerate(zip(idx, records)):
        rivals = [p for p in by_prompt[rec.prompt]
                  if persona_key(records[p]) != persona_key(rec) and records[p].chosen != rec.chosen]
        if not rivals or persona_key(rec) is None:
            continue
        other = records[rng.choice(rivals)]
        pair = replace(rec, rejected=other.chosen)
        row = format_row(pair, method, rng, index=i, style=style, tokenizer=tokenizer, kind="contrast", **draw_kwargs)
        if row is not None:
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------- history targets


def _texts(item) -> tuple[str, str, str]:
    return item.prompt, item.chosen, item.rejected


def history_target(record: Record, index: int, *, seed: int = 42,
                   exclude: frozenset | set = frozenset()) -> Record | None:
    """``record`` turned around: one of its persona's own PAIR items becomes the preference to learn,
    and the persona keeps the rest.

    The item is drawn with ``random.Random(f"{seed}:history:{index}")``, so every augmentation that
    asks for record ``index`` gets the same one. Items whose prompt, chosen or rejected text is in
    ``exclude`` are never drawn (`build_rows` passes every text of the records it does not train on,
    so that nothing the held-out or validation records ask about becomes a training target). Every
    copy of the drawn item leaves the persona. Returns `None` when no item can be drawn, or when
    nothing of the persona would be left to show.
    """
    candidates = list(dict.fromkeys(_texts(p) for p in record.persona.pairs
                                    if not exclude.intersection(_texts(p))))
    if not candidates:
        return None
    target = random.Random(f"{seed}:history:{index}").choice(candidates)
    rest = [p for p in record.persona.pairs if _texts(p) != target]
    persona = replace(record.persona, pairs=rest)
    if not (rest or persona.ugc or persona.demographics):
        return None
    item = next(p for p in record.persona.pairs if _texts(p) == target)
    return replace(record, prompt=item.prompt, chosen=item.chosen, rejected=item.rejected, persona=persona,
                   direction=item.direction if item.direction is not None else record.direction)


def _history_records(records: Sequence[Record], indices: Sequence[int] | None, seed: int,
                     exclude: frozenset | set) -> list[tuple[int, int, Record]]:
    """(position in ``records``, index in the file, `history_target`) of every record that has one."""
    out = []
    for pos, (i, rec) in enumerate(zip(_indices(records, indices), records)):
        derived = history_target(rec, i, seed=seed, exclude=exclude)
        if derived is not None:
            out.append((pos, i, derived))
    return out


def history_rows(records: Sequence[Record], method: str, *, seed: int = 42, style: str = "chat",
                 tokenizer: Any = None, indices: Sequence[int] | None = None,
                 history_exclude: frozenset | set = frozenset(), **draw_kwargs) -> list[dict]:
    """Augmentation that widens the set of preferences learnt: a user's own PAIR items are
    preferences of that user too. One row per record that has a `history_target` (an item of its
    persona as the prompt and responses; the rest of its persona, or its profile, as the context).

    On P-SOUPS the 600 records ask about 128 distinct (prompt, chosen, rejected) triples, and their
    histories hold ~20 more. ``record_index`` is the source record's; ``kind = "history"``.
    """
    rng = random.Random(seed + 4)
    return [row for _, i, rec in _history_records(records, indices, seed, history_exclude)
            if (row := format_row(rec, method, rng, index=i, style=style, tokenizer=tokenizer, kind="history",
                                  **draw_kwargs)) is not None]


def history_swap_rows(records: Sequence[Record], method: str, *, seed: int = 42, style: str = "chat",
                      tokenizer: Any = None, indices: Sequence[int] | None = None,
                      history_exclude: frozenset | set = frozenset(), **draw_kwargs) -> list[dict]:
    """`history_rows`' targets under the persona of a user of the opposite ``ground_truth_persona``,
    chosen and rejected exchanged, as `persona_swap_rows` does for the records' own targets.
    ``kind = "history_swap"``."""
    return _swapped_rows(records, _history_records(records, indices, seed, history_exclude), method,
                         random.Random(seed + 5), kind="history_swap", style=style, tokenizer=tokenizer,
                         **draw_kwargs)


AUGMENTATIONS = {"swap": persona_swap_rows, "contrast": contrast_rows, "history": history_rows,
                 "history_swap": history_swap_rows}
# augmentations whose targets are not the records' own: validation rows never include them
NEW_TARGETS = ("history", "history_swap")


def parse_augment(spec: str | Sequence[str]) -> list[tuple[str, float]]:
    """``"swap:0.5,contrast"`` -> ``[("swap", 0.5), ("contrast", 1.0)]``.

    A fraction keeps that share of the augmentation's rows (a seeded sample): ``swap:0.5`` gives half
    as many swap rows as original ones, so the rows still teach the persona's style as a main
    effect while the swaps teach reading the persona.
    """
    items = [a.strip() for a in spec.split(",")] if isinstance(spec, str) else [str(a).strip() for a in spec]
    out = []
    for item in filter(None, items):
        name, _, frac = item.partition(":")
        name = name.strip()
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}; valid: {', '.join(AUGMENTATIONS)}")
        try:
            fraction = float(frac) if frac.strip() else 1.0
        except ValueError:
            raise ValueError(f"augmentation {item!r}: the fraction after ':' must be a number in (0, 1]") from None
        if not 0 < fraction <= 1:
            raise ValueError(f"augmentation {item!r}: the fraction after ':' must be in (0, 1]")
        out.append((name, fraction))
    return out


def pair_keys(rows: Sequence[dict]) -> list[str]:
    """The batching unit of each row: an ``original`` row and the ``swap`` row(s) of the same record
    share a key (the same prompt and responses, under two users' personas, labels exchanged), as do
    a ``history`` row and the ``history_swap`` row of the same record; every other row has a key of
    its own."""
    def key(i: int, row: dict) -> str:
        if row.get("kind") in ("original", "swap"):
            return f"record:{row['record_index']}"
        if row.get("kind") in NEW_TARGETS:
            return f"history:{row['record_index']}"
        return f"row:{i}"

    return [key(i, r) for i, r in enumerate(rows)]


def paired_order(keys: Sequence[str], batch_size: int, rng: random.Random) -> list[int]:
    """A shuffled order of the rows in which every two rows that share a key are in one batch.

    Keys held by exactly two rows are pairs; all other rows are paired off at random. The pairs are
    shuffled, so consecutive ``batch_size`` rows (an even number) never split a pair. In a batch
    of original + swap pairs, the part of the DPO gradient that ignores the persona cancels
    within each pair, and what is left is the part that reads it.

    Returns:
        Row indices, each once.
    """
    if batch_size % 2:
        raise ValueError(f"paired batches need an even batch size, got {batch_size}")
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    pairs = [g for g in groups.values() if len(g) == 2]
    loose = [i for g in groups.values() if len(g) != 2 for i in g]
    rng.shuffle(loose)
    pairs += [loose[i : i + 2] for i in range(0, len(loose), 2)]
    rng.shuffle(pairs)
    pairs.sort(key=len, reverse=True)  # a leftover single row goes last, so it cannot shift a pair
    return [i for pair in pairs for i in pair]


def build_training_rows(records: Sequence[Record], method: str, *, seed: int = 42, style: str = "chat",
                        tokenizer: Any = None, indices: Sequence[int] | None = None,
                        augment: str | Sequence[str] = (), shuffle: bool = True,
                        history_exclude: frozenset | set = frozenset(), **draw_kwargs) -> list[dict]:
    """`format_records` plus the named augmentations (``"swap"``, ``"contrast"``, ``"history"``,
    ``"history_swap"``, each with an optional ``:fraction``, see `parse_augment`), shuffled with the
    seed. ``history_exclude``: texts no history target may contain (`history_target`)."""
    kw = dict(seed=seed, style=style, tokenizer=tokenizer, indices=indices, **draw_kwargs)
    rows = format_records(records, method, **kw)
    for name, fraction in parse_augment(augment):
        extra = AUGMENTATIONS[name](records, method, **kw, **(
            {"history_exclude": history_exclude} if name in NEW_TARGETS else {}))
        if fraction < 1:
            extra = random.Random(f"{seed}:{name}").sample(extra, round(fraction * len(extra)))
        rows += extra
    if shuffle:
        random.Random(seed + 3).shuffle(rows)
    return rows
