"""Fixed, seeded train / held-out splits of benchmark files, balanced by ``ground_truth_persona``.

Benchmark records have no ids, so a split stores each held-out record's index in the file AND a
short content hash (sha1 of prompt + chosen + rejected, first 12 hex digits). `load_split` checks
every hash, so a reordered or edited file is detected instead of silently leaking test records
into training. Only the ids are kept in the repo (``assets/splits/<name>.json``), never the data.

    from alignx.learn.split import load_split, make_split, save_split
    train, heldout = load_split("psoups_friendly_unfriendly", records)

Make (once) and check a split from the command line::

    python -m alignx.learn.split make --data /path/friendly_unfriendly.json \\
        --name psoups_friendly_unfriendly --per-persona 60 --seed 2503
    python -m alignx.learn.split check --data /path/friendly_unfriendly.json --name psoups_friendly_unfriendly

Pure Python (no torch).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from alignx.schema import Record

SPLITS_DIR = Path(__file__).resolve().parents[2] / "assets" / "splits"
HASH_CHARS = 12


class SplitMismatchError(ValueError):
    """The records do not match the split file (different file, reordered or edited)."""


def record_hash(record: Record) -> str:
    """Short content id of a record: sha1 of prompt, chosen and rejected (NUL-separated)."""
    text = "\x00".join([record.prompt, record.chosen, record.rejected])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_CHARS]


def split_path(name: str) -> Path:
    """``assets/splits/<name>.json``; a path ending in .json is used as is."""
    return Path(name) if name.endswith(".json") else SPLITS_DIR / f"{name}.json"


def make_split(records: Sequence[Record], *, per_persona: int = 60, seed: int = 2503,
               name: str = "split", source: str = "") -> dict:
    """Draw ``per_persona`` held-out records of every ``ground_truth_persona`` with a seeded RNG
    (a few more when the last drawn record has exact duplicates, which all go to the held-out side).

    Returns:
        The split dict: ``name``, ``source``, ``seed``, ``n_records``, ``per_persona`` and
        ``heldout``, a list of ``{"index", "hash", "persona"}`` sorted by index.
    """
    # Exact duplicates (same hash) are kept on one side, so a copy of a held-out record is never trained on.
    groups: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for i, r in enumerate(records):
        if r.ground_truth_persona is None:
            raise ValueError(f"record {i} has no ground_truth_persona; cannot balance the split")
        groups[r.ground_truth_persona].setdefault(record_hash(r), []).append(i)
    for persona in sorted(groups):
        if sum(len(v) for v in groups[persona].values()) <= per_persona:
            raise ValueError(f"persona {persona!r} has too few records for {per_persona} held out")
    chosen = _take_groups(groups, per_persona, random.Random(seed))
    held_hashes = {record_hash(records[i]) for i in chosen}  # copies filed under another persona too
    chosen = sorted(set(chosen) | {i for i, r in enumerate(records) if record_hash(r) in held_hashes})
    heldout = [{"index": i, "hash": record_hash(records[i]), "persona": records[i].ground_truth_persona}
               for i in sorted(chosen)]
    return {"name": name, "source": source, "seed": seed, "n_records": len(records),
            "per_persona": per_persona, "hash": f"sha1(prompt\\0chosen\\0rejected)[:{HASH_CHARS}]",
            "heldout": heldout}


def save_split(split: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def read_split(name: str) -> dict:
    path = split_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in SPLITS_DIR.glob("*.json")) if SPLITS_DIR.is_dir() else []
        raise FileNotFoundError(f"no split {name!r} ({path}); known splits: {', '.join(known) or 'none'}")
    return json.loads(path.read_text(encoding="utf-8"))


def split_indices(name: str, records: Sequence[Record]) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices) of ``records`` for split ``name``, after checking hashes.

    Raises:
        SplitMismatchError: a different number of records, or a held-out record whose content hash
            differs (the file was reordered or edited).
    """
    split = read_split(name)
    if len(records) != split["n_records"]:
        raise SplitMismatchError(f"split {name!r} was made for {split['n_records']} records, got {len(records)}")
    held = []
    for item in split["heldout"]:
        i = item["index"]
        got = record_hash(records[i])
        if got != item["hash"]:
            raise SplitMismatchError(
                f"split {name!r}: record {i} has hash {got}, expected {item['hash']}; the data file is "
                "reordered or edited, so the held-out set cannot be trusted"
            )
        held.append(i)
    held_set = set(held)
    return [i for i in range(len(records)) if i not in held_set], held


def load_split(name: str, records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    """(train records, held-out records) for split ``name``, hash-checked (see `split_indices`)."""
    train, held = split_indices(name, records)
    return [records[i] for i in train], [records[i] for i in held]


def heldout_records(name: str, records: Sequence[Record]) -> list[Record]:
    """Only the held-out side of `load_split` (what an evaluation wants)."""
    return load_split(name, records)[1]


def validation_indices(records: Sequence[Record], train: Sequence[int], *, per_persona: int,
                       seed: int = 0) -> list[int]:
    """A persona-balanced validation slice of the TRAIN side (for early stopping, never held-out).

    Like `make_split`, exact duplicates (same `record_hash`) stay on one side: a drawn record brings
    all its train-side copies, so no validation triple is also trained on.
    """
    groups: dict[str | None, dict[str, list[int]]] = defaultdict(dict)
    owner: dict[str, str | None] = {}  # a triple's group is filed under the persona of its first copy
    for i in train:
        h = record_hash(records[i])
        owner.setdefault(h, records[i].ground_truth_persona)
        groups[owner[h]].setdefault(h, []).append(i)
    return sorted(_take_groups(groups, per_persona, random.Random(seed)))


def _take_groups(groups: dict, per_persona: int, rng: random.Random) -> list[int]:
    """Per persona (sorted), whole duplicate groups (``{hash: [indices]}``) in a seeded order until
    at least ``per_persona`` records are taken."""
    out: list[int] = []
    for key in sorted(groups, key=str):
        hashes = sorted(groups[key])
        rng.shuffle(hashes)
        taken = 0
        for h in hashes:
            if taken >= per_persona:
                break
            out += groups[key][h]
            taken += len(groups[key][h])
    return out


def main(argv: list[str] | None = None) -> int:
    from alignx.schema import load_records

    p = argparse.ArgumentParser(prog="python -m alignx.learn.split", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("make", "check"))
    p.add_argument("--data", required=True, help="the benchmark file (read only; never copied)")
    p.add_argument("--name", required=True, help="split name (assets/splits/NAME.json)")
    p.add_argument("--per-persona", type=int, default=60)
    p.add_argument("--seed", type=int, default=2503)
    args = p.parse_args(argv)
    records = load_records(args.data)
    if args.action == "make":
        split = make_split(records, per_persona=args.per_persona, seed=args.seed, name=args.name,
                           source=Path(args.data).name)
        save_split(split, split_path(args.name))
        print(f"wrote {split_path(args.name)}: {len(split['heldout'])} held-out of {len(records)}")
    train, held = split_indices(args.name, records)
    counts: dict = defaultdict(int)
    for i in held:
        counts[records[i].ground_truth_persona] += 1
    print(f"ok: {len(train)} train, {len(held)} held-out; per persona: {dict(counts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
