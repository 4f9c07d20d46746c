"""Annotation sessions: persona-aware preference pairs, agreement, and per-user adapters.

An annotator (a name, plus their own persona and preference vector, or a target persona the study
asks them to judge as) works through a *queue* of prompts. For each item the study settings name
two methods (``pba`` vs ``universal``, say) or one method twice (two samples); the backbone
generates both responses in one batched `Backbone.generate` call with per-row adapters, and the
pair is stored once per condition so every annotator under that condition judges the same texts.
The pair is shown in a pseudo-random order, recorded with the choice: ``A``, ``B``, ``tie``,
``both_bad`` or ``skip``, an optional rationale, and undo of the last choice.

Usage::

    from alignx import annotation
    annotation.register_annotator(db, "ana", persona, vector)
    shown = annotation.next_item(db, annotator="ana", queue="everyday-prompts", session_id="s1",
                                 settings=annotation.StudySettings(max_new_tokens=32),
                                 get_backbone=lambda: backbone, model_tag="embedded")
    annotation.save_choice(db, annotator="ana", pair_id=shown["pair_id"], order=shown["order"],
                           choice="A", session_id="s1")
    annotation.queue_agreement(db, "everyday-prompts")   # Cohen / Fleiss kappa, raw agreement
    job = annotation.start_adapter_job(db, "ana", "s1")  # LoRA-DPO on ana's pairs, in the background

Agreement (`cohen_kappa`, `fleiss_kappa`, `raw_agreement`) is pure. Labels are the response a
choice prefers whatever the order shown (``"1"``, ``"2"``, ``tie``, ``both_bad``); skips are no
judgement and are left out.

The per-user adapter job runs ``python -m alignx.learn.train`` (LoRA-DPO, PBA prompts with the
annotator's profile) in a child process, so the app stays responsive; a watcher thread turns its
log lines into progress in the store's ``user_adapters`` table. Folders:
``<data dir>/adapters/<annotator>/<session>/`` (`alignx.store.data_dir`).

No gradio here; torch only through the backbone the caller passes in.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from itertools import combinations
from pathlib import Path
from typing import Callable, Mapping, Sequence

from alignx.preferences import N_DIMS, NEUTRAL, profile_from_vector
from alignx.schema import Persona, Record, save_records
from alignx.store import CHOICES, Store, data_dir

METHODS = ("ica", "pba", "universal")
CHOICE_NAMES = {"A": "A is better", "B": "B is better", "tie": "tie", "both_bad": "both bad", "skip": "skip"}
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "annotation"
MAX_QUEUE_BYTES = 1_000_000
MAX_QUEUE_ITEMS = 1000
MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 512
MIN_PAIRS = 4


class AnnotationError(ValueError):
    """An annotation request cannot be done; the message says what is wrong and what to do."""


# ---------------------------------------------------------------------------- study settings


@dataclass
class StudySettings:
    """How the two responses of an item are made.

    Args:
        method_1, method_2 (`str`): ``ica``, ``pba`` or ``universal``. The same method twice means
            two samples of it (needs ``temperature`` > 0).
        max_new_tokens (`int`, defaults to 48): 1 to 512.
        temperature (`float`, defaults to 0.7): 0 (greedy) to 2.
        top_p (`float`, defaults to 1.0): in (0, 1].
        seed (`int`, defaults to 0): the generation seed; it also seeds the shown order.
    """

    method_1: str = "pba"
    method_2: str = "universal"
    max_new_tokens: int = 48
    temperature: float = 0.7
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("method_1", "method_2"):
            if getattr(self, name) not in METHODS:
                raise AnnotationError(f"Study setting {name}: expected one of {', '.join(METHODS)}, "
                                      f"got {getattr(self, name)!r}.")
        if isinstance(self.max_new_tokens, float) and self.max_new_tokens.is_integer():
            self.max_new_tokens = int(self.max_new_tokens)
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise AnnotationError(f"Study setting max_new_tokens: expected 1 to {MAX_NEW_TOKENS}, "
                                  f"got {self.max_new_tokens!r}.")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2:
            raise AnnotationError(f"Study setting temperature: expected 0 to 2, got {self.temperature!r}.")
        if not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1:
            raise AnnotationError(f"Study setting top_p: expected a number in (0, 1], got {self.top_p!r}.")
        if isinstance(self.seed, float) and self.seed.is_integer():
            self.seed = int(self.seed)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise AnnotationError(f"Study setting seed: expected a whole number >= 0, got {self.seed!r}.")
        self.temperature, self.top_p = float(self.temperature), float(self.top_p)
        if self.method_1 == self.method_2 and self.temperature == 0:
            raise AnnotationError("Two samples of one method need a temperature above 0: greedy decoding "
                                  "would give the same text twice.")

    @property
    def sources(self) -> tuple[str, str]:
        """The names the two responses are stored under (``pba#1``, ``pba#2`` for two samples)."""
        if self.method_1 == self.method_2:
            return f"{self.method_1}#1", f"{self.method_2}#2"
        return self.method_1, self.method_2

    @classmethod
    def from_json(cls, text: str | dict | None) -> StudySettings:
        """Settings from a JSON object (text or dict); blank means the defaults.

        Raises:
            AnnotationError: not JSON, an unknown key or a bad value.
        """
        if isinstance(text, str):
            if not text.strip():
                return cls()
            try:
                text = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AnnotationError(f"Study settings are not valid JSON (column {exc.colno}: {exc.msg}).") from exc
        data = text or {}
        if not isinstance(data, dict):
            raise AnnotationError("Study settings must be a JSON object such as "
                                  '{"method_1": "pba", "method_2": "universal", "max_new_tokens": 48}.')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise AnnotationError(f"Unknown study setting {unknown[0]!r}; known: {', '.join(sorted(known))}.")
        return cls(**data)


# ---------------------------------------------------------------------------- queues


def read_queue_file(path: str | os.PathLike, *, max_bytes: int = MAX_QUEUE_BYTES,
                    max_items: int = MAX_QUEUE_ITEMS) -> list[dict]:
    """Read a queue file: JSONL (one ``{"prompt": ...}`` object, or one JSON string, per line) or
    CSV (a header with a ``prompt`` column). Each row may carry a ready pair: ``"responses": [r1,
    r2]`` (JSONL) or ``response_1`` / ``response_2`` columns (CSV), and optional ``sources``.

    Returns:
        `list[dict]`: rows for `Store.add_queue`.

    Raises:
        AnnotationError: a missing file, the wrong extension, over the size cap, not UTF-8, or a
            bad row (names the line and what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"Queue file not found: {path.name}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise AnnotationError(f"{path.name} is {size:,} bytes; queue files are capped at {max_bytes:,} bytes. "
                              "Split it into smaller files.")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv"):
        raise AnnotationError(f"{path.name}: upload a .jsonl or .csv file (one prompt per line or row).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}).") from exc
    rows = _csv_rows(text, path.name) if suffix == ".csv" else _jsonl_rows(text, path.name)
    if not rows:
        raise AnnotationError(f"{path.name} holds no prompts.")
    if len(rows) > max_items:
        raise AnnotationError(f"{path.name} has {len(rows):,} prompts; a queue holds at most {max_items:,}.")
    return rows


def _queue_row(prompt, responses, sources, where: str) -> dict:
    if not isinstance(prompt, str) or not prompt.strip():
        raise AnnotationError(f"{where}: the prompt is missing or empty.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise AnnotationError(f"{where}: the prompt has {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,}.")
    row = {"prompt": prompt.strip()}
    if responses is not None:
        if not (isinstance(responses, list) and len(responses) == 2 and all(isinstance(r, str) and r.strip()
                                                                           for r in responses)):
            raise AnnotationError(f"{where}: 'responses' must be two non-empty strings.")
        row["responses"] = responses
        if sources is not None:
            if not (isinstance(sources, list) and len(sources) == 2 and all(isinstance(s, str) and s for s in sources)):
                raise AnnotationError(f"{where}: 'sources' must be two non-empty strings.")
            row["sources"] = sources
    return row


def _jsonl_rows(text: str, name: str) -> list[dict]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{where}: not valid JSON (column {exc.colno}: {exc.msg}).") from exc
        if isinstance(value, str):
            value = {"prompt": value}
        if not isinstance(value, dict):
            raise AnnotationError(f'{where}: expected an object like {{"prompt": "..."}}, got {type(value).__name__}.')
        rows.append(_queue_row(value.get("prompt"), value.get("responses"), value.get("sources"), where))
    return rows


def _csv_rows(text: str, name: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "prompt" not in columns:
        found = ", ".join(columns) or "none"
        raise AnnotationError(f"{name}: the CSV header needs a 'prompt' column (found: {found}).")
    rows = []
    for record in reader:
        record = {(k or "").strip().lower(): v for k, v in record.items()}
        where = f"{name} line {reader.line_num}"
        r1, r2 = (record.get("response_1") or "").strip(), (record.get("response_2") or "").strip()
        if bool(r1) != bool(r2):
            raise AnnotationError(f"{where}: give both response_1 and response_2, or neither.")
        rows.append(_queue_row(record.get("prompt"), [r1, r2] if r1 else None, None, where))
    return rows


def asset_queues(folder: str | os.PathLike = ASSETS) -> dict[str, Path]:
    """The queue files shipped in ``assets/annotation`` (``*.jsonl``), by name (the file stem)."""
    return {p.stem: p for p in sorted(Path(folder).glob("*.jsonl"))}


def queue_names(db_path) -> list[str]:
    """The queues in the store, then the shipped ones not loaded yet."""
    with Store.open(db_path) as store:
        return queue_names_in(store)


def load_queue(db_path, path: str | os.PathLike, name: str | None = None) -> tuple[str, int]:
    """Read a queue file (`read_queue_file`) and store it as a queue named after the file.

    Returns:
        (queue name, number of items).
    """
    path = Path(path)
    rows = read_queue_file(path)
    name = name or re.sub(r"\s+", " ", path.stem).strip() or "uploaded"
    with Store.open(db_path) as store:
        return name, store.add_queue(name, rows, source=path.name)


def ensure_queue(store: Store, queue: str) -> None:
    """Load a shipped queue into the store on first use; other names must exist already."""
    if not isinstance(queue, str) or not queue.strip():
        raise AnnotationError("Pick a queue (or upload a .jsonl / .csv file of prompts).")
    if queue in {q["name"] for q in store.list_queues()}:
        return
    shipped = asset_queues()
    if queue not in shipped:
        raise AnnotationError(f"No queue named {queue!r}; pick one of: {', '.join(queue_names_in(store)) or 'none'}.")
    store.add_queue(queue, read_queue_file(shipped[queue]), source=f"assets/annotation/{shipped[queue].name}")


def queue_names_in(store: Store) -> list[str]:
    """`queue_names` on an open store."""
    names = [q["name"] for q in store.list_queues()]
    return names + [n for n in asset_queues() if n not in names]


# ---------------------------------------------------------------------------- identity


def register_annotator(db_path, name: str, persona: Persona | dict, vector) -> str:
    """Save an annotator's own persona and vector; returns a status line."""
    with Store.open(db_path) as store:
        existed = store.save_annotator(name, persona, vector)
    return f"{'Updated' if existed else 'Saved'} annotator {' '.join(name.split())!r}."


def resolve_persona(store: Store, annotator: str, target: str | None,
                    targets: Mapping[str, Persona]) -> tuple[str, Persona, list[float]]:
    """(persona mode, persona, vector) an annotator judges as: a named target persona, or their own.

    Raises:
        AnnotationError: an unknown target. StoreError: an unknown annotator (own mode).
    """
    if target:
        if target not in targets:
            raise AnnotationError(f"Unknown target persona {target!r}; choose one of: {', '.join(targets)}.")
        from alignx.personas import derive_vector

        persona = targets[target]
        return "target", persona, derive_vector(persona) or [NEUTRAL] * N_DIMS
    persona, vector = store.load_annotator(annotator)
    return "own", persona, vector


# ---------------------------------------------------------------------------- pairs


def condition_key(settings: StudySettings, model_tag: str, persona: Persona, vector) -> str:
    """A short hash of everything that determines a generated pair: the settings, the model, the
    persona (only when ICA is one of the methods) and the profile (only with PBA)."""
    from alignx.schema import persona_to_dict

    methods = {settings.method_1, settings.method_2}
    data = {"settings": asdict(settings), "model": model_tag,
            "persona": persona_to_dict(persona) if "ica" in methods else None,
            "profile": profile_from_vector(vector) if "pba" in methods else None}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def item_seed(seed: int, prompt: str) -> int:
    """The sampling seed of one item: the study seed mixed with the prompt, so items do not all
    replay the same random stream (which makes samples of different prompts start alike)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt}".encode()).digest()[:4], "big")


def generate_pair(backbone, prompt: str, settings: StudySettings, persona: Persona, vector) -> list[str]:
    """The two responses of an item: ONE batched `Backbone.generate` call, each row with its
    method's prompt and adapter (``ica`` / ``pba`` when loaded, none for universal), seeded with
    `item_seed`."""
    profile = profile_from_vector(vector)
    methods = (settings.method_1, settings.method_2)
    prompts = [backbone.build_prompt(m, prompt, persona=persona, profile=profile) for m in methods]
    adapters = [backbone.adapter_for(m) for m in methods]
    try:
        return backbone.generate(prompts, adapters, max_new_tokens=settings.max_new_tokens,
                                 temperature=settings.temperature, top_p=settings.top_p,
                                 seed=item_seed(settings.seed, prompt))
    except ValueError as exc:  # a prompt too long for the context, an adapter not loaded
        raise AnnotationError(str(exc)) from exc


def shown_order(seed: int, annotator: str, pair_id: int) -> str:
    """The order a pair is shown in (``"12"``: response 1 is A), pseudo-random per annotator and
    pair, so it is balanced over a queue and reproducible; it is recorded with every choice."""
    return "12" if random.Random(f"{seed}:{annotator}:{pair_id}").random() < 0.5 else "21"


def next_item(db_path, *, annotator: str, queue: str, session_id: str, settings: StudySettings,
              get_backbone: Callable[[], object] | None = None, model_tag: str = "",
              target: str | None = None, targets: Mapping[str, Persona] | None = None) -> dict:
    """The next item for an annotator, with its two responses (generated and stored on first need).

    Args:
        db_path: the store. annotator, queue, session_id: who, which queue, which session.
        settings (`StudySettings`): how the pair is made when it does not exist yet.
        get_backbone: returns the loaded backbone; called only when a pair must be generated.
        model_tag (`str`): names the backbone in the pair's condition (e.g. its settings JSON).
        target, targets: a target persona name and the known ones (blank target: own persona).

    Returns:
        ``{"done": True, "progress": [done, total]}`` at the end of the queue, else ``{"done":
        False, "queue", "position", "total", "progress", "prompt", "pair_id", "order", "a", "b",
        "sources", "persona_mode"}``; ``a`` and ``b`` are the texts in the order shown.
    """
    with Store.open(db_path) as store:
        ensure_queue(store, queue)
        mode, persona, vector = resolve_persona(store, annotator, target, targets or {})
        item = store.next_item(queue, annotator)
        progress = list(store.progress(queue, annotator))
        if item is None:
            return {"done": True, "queue": queue, "progress": progress}
        condition = condition_key(settings, model_tag, persona, vector)
        pair = store.find_pair(item["id"], condition)
    if pair is None:
        if get_backbone is None:
            raise AnnotationError("This item has no responses yet and no backbone was given to generate them.")
        responses = generate_pair(get_backbone(), item["prompt"], settings, persona, vector)
        with Store.open(db_path) as store:
            pair = store.add_pair(item["id"], condition, responses, settings.sources,
                                  {**asdict(settings), "model": model_tag})
    order = shown_order(settings.seed, annotator, pair["id"])
    texts = {"1": pair["response_1"], "2": pair["response_2"]}
    return {"done": False, "queue": queue, "position": item["position"], "total": progress[1], "progress": progress,
            "prompt": item["prompt"], "pair_id": pair["id"], "order": order, "a": texts[order[0]],
            "b": texts[order[1]], "sources": [pair["source_1"], pair["source_2"]], "persona_mode": mode}


def save_choice(db_path, *, annotator: str, pair_id: int, order: str, choice: str, session_id: str,
                rationale: str = "", target: str | None = None,
                targets: Mapping[str, Persona] | None = None) -> dict:
    """Record a choice; it is committed (and fsynced) before this returns.

    Returns:
        ``{"id", "choice", "queue", "position", "progress": [done, total]}``.

    Raises:
        StoreError / AnnotationError: a bad choice, order or pair, or a pair already judged.
    """
    choice = {"both bad": "both_bad", "a": "A", "b": "B"}.get(choice, choice)
    if choice not in CHOICES:
        raise AnnotationError(f"Choice must be one of {', '.join(CHOICES)}; got {choice!r}.")
    with Store.open(db_path) as store:
        mode, persona, vector = resolve_persona(store, annotator, target, targets or {})
        choice_id = store.add_choice(pair_id=pair_id, annotator=annotator, session_id=session_id,
                                     shown_order=order, choice=choice, rationale=rationale, persona_mode=mode,
                                     persona=persona, vector=vector)
        pair = store.pair(pair_id)
        progress = list(store.progress(pair["queue"], annotator))
    return {"id": choice_id, "choice": choice, "queue": pair["queue"], "position": pair["position"],
            "progress": progress}


def undo_last(db_path, annotator: str, session_id: str) -> dict:
    """Undo the annotator's last choice in this session.

    Returns:
        ``{"undone": None}`` when there was nothing to undo, else ``{"undone": {"id", "choice",
        "queue", "position"}, "progress": [done, total]}``.
    """
    with Store.open(db_path) as store:
        row = store.undo_last_choice(annotator, session_id)
        if row is None:
            return {"undone": None}
        progress = list(store.progress(row["queue"], row["annotator"]))
    return {"undone": {k: row[k] for k in ("id", "choice", "queue", "position")}, "progress": progress}


def progress_text(progress: Sequence[int]) -> str:
    done, total = progress
    return f"{done} of {total} items judged ({100 * done / total:.0f}%)" if total else "empty queue"


# ---------------------------------------------------------------------------- export


def export(db_path, folder: str | os.PathLike, fmt: str = "jsonl", *, queue: str | None = None,
           annotator: str | None = None, include: str = "preferences") -> Path:
    """Export choices as AlignX JSONL (``fmt="jsonl"``) or a ``datasets`` folder saved with
    ``save_to_disk`` and zipped for download (``fmt="dataset"``). Returns the file written."""
    import shutil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "alignx-annotations" + (f"-{_slug(queue)}" if queue else "")
    with Store.open(db_path) as store:
        if fmt == "jsonl":
            path = folder / f"{stem}.jsonl"
            store.export_jsonl(path, queue=queue, annotator=annotator, include=include)
            return path
        if fmt == "dataset":
            target = folder / stem
            store.export_dataset(target, queue=queue, annotator=annotator, include=include)
            return Path(shutil.make_archive(str(target), "zip", root_dir=target))
    raise AnnotationError(f"Export format must be 'jsonl' or 'dataset', got {fmt!r}.")


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:6]}" if slug != text else slug


# ---------------------------------------------------------------------------- agreement


def _kappa(observed: float, expected: float) -> float | None:
    """(P_o - P_e) / (1 - P_e); `None` when P_e = 1 (every judgement in one category)."""
    return None if math.isclose(expected, 1.0) else (observed - expected) / (1.0 - expected)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same items (in the same order).

    P_o is the share of items with equal labels; P_e = sum over labels of p_a(label) * p_b(label).

    Returns:
        kappa, or `None` when it is undefined (both annotators always used the same one label).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"Cohen's kappa needs two equally long, non-empty label lists; got {len(a)} and {len(b)}.")
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return _kappa(observed, expected)


def _check_ratings(ratings: Sequence[Sequence[str]]) -> int:
    if not ratings:
        raise ValueError("agreement needs at least one item")
    sizes = {len(r) for r in ratings}
    if len(sizes) != 1 or min(sizes) < 2:
        raise ValueError(f"every item needs the same number (>= 2) of ratings; got sizes {sorted(sizes)}")
    return sizes.pop()


def raw_agreement(ratings: Sequence[Sequence[str]]) -> float:
    """Mean over items of the share of agreeing rater pairs (for two raters: the share of items
    with equal labels). ``ratings[i]`` holds the labels item i got, one per rater."""
    n = _check_ratings(ratings)
    return sum(sum(c * (c - 1) for c in Counter(r).values()) / (n * (n - 1)) for r in ratings) / len(ratings)


def fleiss_kappa(ratings: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa: N items, each rated by the same number n >= 2 of raters.

    P̄ = `raw_agreement`; p_j = share of all N·n labels that are j; P_e = Σ p_j²;
    kappa = (P̄ - P_e) / (1 - P_e), `None` when P_e = 1.
    """
    n = _check_ratings(ratings)
    totals = Counter(label for r in ratings for label in r)
    expected = sum((c / (len(ratings) * n)) ** 2 for c in totals.values())
    return _kappa(raw_agreement(ratings), expected)


def agreement(rows: Sequence[dict]) -> dict:
    """Agreement figures from choice rows (``pair_id``, ``annotator``, ``preferred``).

    Skips are dropped. The items used are the pairs every annotator judged: Cohen's kappa when
    there are two annotators, Fleiss' kappa when there are more, and the raw agreement. Also, for
    every two annotators who share at least one pair, their own Cohen's kappa and raw agreement.

    Returns:
        ``{"annotators", "n_annotators", "n_items", "labels", "raw_agreement", "cohen_kappa",
        "fleiss_kappa", "pairwise": [...], "note"}``; a figure that cannot be computed is `None`.
    """
    labels: dict[int, dict[str, str]] = {}
    for row in rows:
        if row["preferred"] != "skip":
            labels.setdefault(row["pair_id"], {})[row["annotator"]] = row["preferred"]
    annotators = sorted({a for by in labels.values() for a in by})
    k = len(annotators)
    complete = [[by[a] for a in annotators] for by in labels.values() if len(by) == k]
    out = {"annotators": annotators, "n_annotators": k, "n_items": len(complete),
           "labels": sorted({x for r in complete for x in r}), "raw_agreement": None, "cohen_kappa": None,
           "fleiss_kappa": None, "pairwise": [], "note": ""}
    if k < 2:
        out["note"] = "Agreement needs at least two annotators who judged the same items."
    elif not complete:
        out["note"] = f"No item was judged by all {k} annotators; see the pairwise figures."
    else:
        out["raw_agreement"] = raw_agreement(complete)
        if k == 2:
            out["cohen_kappa"] = cohen_kappa([r[0] for r in complete], [r[1] for r in complete])
        else:
            out["fleiss_kappa"] = fleiss_kappa(complete)
    for a, b in combinations(annotators, 2):
        shared = [(by[a], by[b]) for by in labels.values() if a in by and b in by]
        if shared:
            out["pairwise"].append({"a": a, "b": b, "n_items": len(shared),
                                    "raw_agreement": raw_agreement(shared),
                                    "cohen_kappa": cohen_kappa([x for x, _ in shared], [y for _, y in shared])})
    return out


def queue_agreement(db_path, queue: str) -> dict:
    """`agreement` over the active choices of one queue, plus ``"queue"``."""
    with Store.open(db_path) as store:
        store.queue_size(queue)  # a clear error for an unknown queue
        rows = store.choices(queue=queue)
    return {"queue": queue, **agreement(rows)}


def agreement_text(figures: dict) -> str:
    """A short Markdown summary of `agreement` figures."""
    def f(x):
        return "n/a" if x is None else f"{x:.3f}"

    head = f"**{figures['n_annotators']} annotators, {figures['n_items']} items judged by all.** "
    if figures["note"]:
        head += figures["note"]
    else:
        kappa = (f"Cohen's κ = {f(figures['cohen_kappa'])}" if figures["n_annotators"] == 2
                 else f"Fleiss' κ = {f(figures['fleiss_kappa'])}")
        head += f"{kappa} · raw agreement = {f(figures['raw_agreement'])}"
    lines = [head]
    lines += [f"- {p['a']} × {p['b']}: {p['n_items']} items, Cohen's κ = {f(p['cohen_kappa'])}, "
              f"raw = {f(p['raw_agreement'])}" for p in figures["pairwise"]]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- per-user adapters


@dataclass
class AdapterOptions:
    """A small LoRA-DPO run, sized for a CPU (see ``alignx.learn.train`` for every option).

    Args:
        epochs (`float`, defaults to 3), learning_rate (`float`, defaults to 1e-3), batch_size
        (`int`, defaults to 4), max_steps (`int`, defaults to -1: from the epochs), beta (`float`,
        defaults to 0.1): the DPO run.
        lora_r, lora_alpha, lora_top_layers: LoRA rank 8, alpha 16, on the top 4 layers only.
        max_length (`int`, defaults to 320): prompt + response tokens.
        threads (`int`, defaults to 1): torch threads of the job, so the app keeps a core.
        precision (`str`, defaults to `"auto"`), seed (`int`, defaults to 42).
        min_pairs (`int`, defaults to 4): refuse to train on fewer A / B choices.
    """

    epochs: float = 3.0
    learning_rate: float = 1e-3
    batch_size: int = 4
    max_steps: int = -1
    beta: float = 0.1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_top_layers: int = 4
    max_length: int = 320
    threads: int = 1
    precision: str = "auto"
    seed: int = 42
    min_pairs: int = MIN_PAIRS


def training_records(store: Store, annotator: str, session_id: str | None = None) -> list[Record]:
    """An annotator's A / B choices as PBA training records: the persona is reduced to the
    annotator's preference vector, so every training prompt carries exactly their profile (the
    prompt Compare's before / after view uses)."""
    records = []
    for rec in store.export_records(annotator=annotator, session_id=session_id):
        records.append(Record(prompt=rec.prompt, chosen=rec.chosen, rejected=rec.rejected,
                              persona=Persona(direction=rec.direction), direction=rec.direction))
    return records


def adapter_dir(db_path, annotator: str, session_id: str) -> Path:
    """``<data dir>/adapters/<annotator>/<session>``, both as file-system-safe slugs."""
    return data_dir(db_path) / "adapters" / _slug(annotator) / _slug(session_id)


def train_argv(data: Path, out: Path, options: AdapterOptions) -> list[str]:
    """The ``python -m alignx.learn.train`` arguments of a per-user job."""
    import importlib.util

    cuda = importlib.util.find_spec("torch") is not None and _cuda_available()
    argv = ["--method", "pba", "--data", str(data), "--output_dir", str(out), "--model", "embedded",
            "--precision", options.precision, "--prompt_style", "auto", "--lora_r", str(options.lora_r),
            "--lora_alpha", str(options.lora_alpha), "--lora_top_layers", str(options.lora_top_layers),
            "--demo_prob", "0", "--demo_only_prob", "0", "--threads", str(options.threads),
            "--beta", str(options.beta), "--learning_rate", str(options.learning_rate),
            "--num_train_epochs", str(options.epochs), "--max_steps", str(options.max_steps),
            "--per_device_train_batch_size", str(options.batch_size), "--max_length", str(options.max_length),
            "--precompute_ref_log_probs", "true", "--precompute_ref_batch_size", str(2 * options.batch_size),
            "--gradient_checkpointing", "false", "--logging_steps", "1", "--save_strategy", "no",
            "--report_to", "none", "--disable_tqdm", "true", "--seed", str(options.seed),
            "--lr_scheduler_type", "constant", "--dataloader_num_workers", "0"]
    return argv if cuda else [*argv, "--use_cpu", "true"]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


@dataclass
class AdapterJob:
    """A running (or finished) per-user adapter job: the child process and its watcher thread."""

    db_path: str
    adapter_id: int
    path: Path
    total_steps: int
    process: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    lines: list[str] = field(default_factory=list)

    def status(self) -> dict:
        return adapter_status(self.db_path, self.adapter_id)

    def wait(self, timeout: float | None = None) -> dict:
        """Block until the job ends (or ``timeout`` seconds); returns `status`."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.status()

    def _update(self, **fields) -> None:
        with Store.open(self.db_path) as store:
            store.update_user_adapter(self.adapter_id, **fields)

    def _watch(self) -> None:
        """Turn the trainer's log lines into progress; record the result when the process ends."""
        steps = 0
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            logs = _log_dict(line)
            if logs and "loss" in logs:
                steps += 1
                self._update(progress=min(steps / max(self.total_steps, 1), 0.99),
                             message=f"training: step {steps} of {self.total_steps}, loss {logs['loss']}")
        code = self.process.wait()
        log_file = self.path / "train_log.json"
        if code == 0 and log_file.is_file():
            self._update(status="done", progress=1.0, message="done", metrics=_train_metrics(log_file))
        else:
            tail = _tail(self.path / "train.stderr.log")
            self._update(status="failed", message=f"training exited with code {code}: {tail}")


def _log_dict(line: str) -> dict | None:
    """A trainer log line (``{'loss': '0.6931', ...}`` from transformers' PrinterCallback), or None."""
    line = line.strip()
    if not (line.startswith("{") and line.endswith("}")):
        return None
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, dict) else None


def _train_metrics(log_file: Path) -> dict:
    log = json.loads(log_file.read_text())
    keep = ("final_train_loss", "rewards/accuracies", "train_seconds", "wall_seconds", "n_train_rows",
            "pairs_per_second", "precision")
    return {k: log.get(k) for k in keep}


def _tail(path: Path, n: int = 3) -> str:
    if not path.is_file():
        return "(no log)"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-n:]) or "(empty log)"


def start_adapter_job(db_path, annotator: str, session_id: str, options: AdapterOptions | None = None, *,
                      only_session: bool = False) -> AdapterJob:
    """Train a LoRA-DPO adapter on one annotator's A / B choices, in a background process.

    The pairs (all of the annotator's, or only this session's) are written as AlignX JSONL into
    `adapter_dir`; ``python -m alignx.learn.train`` runs there with `train_argv`, and the store's
    ``user_adapters`` row follows it (``queued`` -> ``running`` -> ``done`` / ``failed``).

    Raises:
        AnnotationError: fewer than ``options.min_pairs`` pairs, or another job still running.
    """
    options = options or AdapterOptions()
    with Store.open(db_path) as store:
        for row in store.user_adapters(status="running") + store.user_adapters(status="queued"):
            if _pid_alive(row["pid"]):
                raise AnnotationError(f"An adapter job for {row['annotator']!r} is still running "
                                      f"({100 * row['progress']:.0f}%); one job runs at a time.")
        records = training_records(store, annotator, session_id if only_session else None)
        if len(records) < options.min_pairs:
            raise AnnotationError(f"{annotator!r} has {len(records)} A / B choices; at least {options.min_pairs} "
                                  "are needed to train an adapter (ties, both-bad and skips do not count).")
        path = adapter_dir(db_path, annotator, session_id)
        path.mkdir(parents=True, exist_ok=True)
        save_records(records, path / "pairs.jsonl")
        adapter_id = store.add_user_adapter(annotator, session_id, str(path), len(records))
    steps = options.max_steps if options.max_steps > 0 else \
        math.ceil(math.ceil(len(records) / options.batch_size) * options.epochs)
    job = AdapterJob(str(db_path), adapter_id, path, steps)
    stderr = open(path / "train.stderr.log", "w")
    env = dict(os.environ, OMP_NUM_THREADS=str(options.threads), TOKENIZERS_PARALLELISM="false")
    job.process = subprocess.Popen([sys.executable, "-m", "alignx.learn.train",
                                    *train_argv(path / "pairs.jsonl", path, options)],
                                   stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                                   cwd=Path(__file__).resolve().parents[1])
    stderr.close()
    job._update(status="running", pid=job.process.pid, message="loading the model and computing reference log-probs")
    job.thread = threading.Thread(target=job._watch, daemon=True, name=f"alignx-adapter-{adapter_id}")
    job.thread.start()
    return job


def adapter_status(db_path, adapter_id: int) -> dict:
    """A job's row from the store. A job left ``running`` by a process that has gone away is
    settled from its folder: ``done`` when the adapter and ``train_log.json`` are there, else
    ``failed`` (interrupted)."""
    with Store.open(db_path) as store:
        row = store.user_adapter(adapter_id)
        if row["status"] in ("running", "queued") and not _pid_alive(row["pid"]) and not _watched(adapter_id):
            path = Path(row["path"])
            if (path / "train_log.json").is_file() and (path / "adapter_model.safetensors").is_file():
                store.update_user_adapter(adapter_id, status="done", progress=1.0, message="done",
                                          metrics=_train_metrics(path / "train_log.json"))
            else:
                store.update_user_adapter(adapter_id, status="failed", message="interrupted: the job's process ended")
            row = store.user_adapter(adapter_id)
    return row


def _watched(adapter_id: int) -> bool:
    """A watcher thread of this process is still settling the job (the child just exited)."""
    return any(t.name == f"alignx-adapter-{adapter_id}" and t.is_alive() for t in threading.enumerate())


def adapter_text(row: dict) -> str:
    """One status line of a job for the app."""
    pct = f"{100 * row['progress']:.0f}%"
    if row["status"] == "done":
        m = row["metrics"]
        acc = m.get("rewards/accuracies")
        return (f"**Adapter #{row['id']} for {row['annotator']!r} is ready** ({row['n_pairs']} pairs, "
                f"{m.get('train_seconds')} s training, final loss {m.get('final_train_loss'):.4f}, last train "
                f"rewards/accuracies {acc if acc is None else round(acc, 3)}). Folder: `{row['path']}`. "
                "Compare it with the base on the Compare tab.")
    return f"Adapter #{row['id']} for {row['annotator']!r}: **{row['status']}** {pct} · {row['message']}"
