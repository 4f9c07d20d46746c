"""AlignX records and personas: dataclasses, validation, loaders and savers.

A *persona* is what the paper calls P = {P_UGC, P_PAIR, P_DEMO}: user-generated content
(a post plus the user's comment), pairwise comparative feedback (a post plus the response the
user chose and the one they rejected) and a free-text demographic description. Each UGC and PAIR
item may carry its own 90-dim "Preference Direction".

A *record* is one preference example: a prompt, a chosen and a rejected response, the persona of
the user who judged them, and optionally the pair's own direction and a precomputed profile.

On disk the official AlignX key names are kept (``"Preference Direction"``,
``"Demographic Information"``, ``"User-Generated Content"``, ``"Pair-wise Comparative Feedback"``).
Keys this module does not know are kept in ``Record.extra`` so a load/save round trip is lossless.

Files: ``.json`` (a list of records: AlignX-test, P-SOUPS, PRISM, UF-P-4), ``.jsonl``, ``.parquet``
or a directory of ``*.parquet`` shards (AlignX on the Hub). Every record is validated; the first
bad one raises a `SchemaError` naming the file, the record and the field, and nothing is returned.

Usage::

    from alignx.schema import load_records, save_records
    records = load_records("friendly_unfriendly.json")
    records[0].persona.pairs[0].chosen
    save_records(records[:10], "sample.jsonl")

Only stdlib and numpy are imported at module level; pyarrow / datasets only inside the functions
that need them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alignx.preferences import VectorError, mean_direction, profile_from_vector, validate_vector

# Official on-disk key names.
KEY_DIRECTION = "Preference Direction"
KEY_DEMOGRAPHICS = "Demographic Information"
KEY_UGC = "User-Generated Content"
KEY_PAIRS = "Pair-wise Comparative Feedback"
# Plain keys of records and items.
KEY_PROMPT, KEY_CHOSEN, KEY_REJECTED, KEY_COMMENT = "prompt", "chosen", "rejected", "comment"
KEY_PROFILE, KEY_GROUND_TRUTH = "profile", "ground_truth_persona"
# alignx extension: a record whose persona has its own direction (e.g. set with sliders in the
# app) stores it under this key, since the record's "Preference Direction" is the target pair's.
KEY_PERSONA_DIRECTION = "Persona Preference Direction"

# Record keys in the order they are written; unknown keys (``Record.extra``) follow.
RECORD_KEYS = (
    KEY_PROMPT, KEY_CHOSEN, KEY_REJECTED, KEY_DIRECTION, KEY_GROUND_TRUTH, KEY_PROFILE,
    KEY_DEMOGRAPHICS, KEY_UGC, KEY_PAIRS, KEY_PERSONA_DIRECTION,
)  # fmt: skip
PERSONA_KEYS = (KEY_DEMOGRAPHICS, KEY_UGC, KEY_PAIRS, KEY_DIRECTION)
FORMATS = ("json", "jsonl", "parquet")


@dataclass(frozen=True)
class UGCItem:
    """One user-generated content item: a post and the user's own comment on it."""

    prompt: str
    comment: str
    direction: tuple[float, ...] | None = None


@dataclass(frozen=True)
class PairItem:
    """One pairwise feedback item: a post, the response the user chose and the one rejected."""

    prompt: str
    chosen: str
    rejected: str
    direction: tuple[float, ...] | None = None


@dataclass
class Persona:
    """A user's persona. ``demographics`` is ``None`` when the record has no such key.

    ``direction`` is an optional 90-dim preference vector of the persona as a whole (a persona
    file's "Preference Direction", e.g. set by hand); AlignX records never set it.
    """

    ugc: list[UGCItem] = field(default_factory=list)
    pairs: list[PairItem] = field(default_factory=list)
    demographics: str | None = None
    direction: tuple[float, ...] | None = None

    def item_directions(self) -> list[tuple[float, ...]]:
        """The directions of the UGC items then the PAIR items, skipping items without one
        (the input of `alignx.preferences.get_profile`)."""
        return [it.direction for it in [*self.ugc, *self.pairs] if it.direction is not None]

    def preference_vector(self) -> np.ndarray | None:
        """The persona's 90-dim preference distribution, or `None` when it carries no signal.

        The persona's own "Preference Direction" wins; otherwise the float32 element-wise mean
        of its items' directions (`alignx.preferences.mean_direction`, as the official code).

        Returns:
            `np.ndarray` of float32, shape (90,), or `None`.
        """
        if self.direction is not None:
            return np.asarray(self.direction, dtype=np.float32)
        directions = self.item_directions()
        return mean_direction(directions) if directions else None

    def profile(self) -> str | None:
        """The PBA profile this persona implies, or `None` when it carries no preference signal.

        The profile of `preference_vector`: for items' directions this equals the official
        `get_profile`.
        """
        vector = self.preference_vector()
        return None if vector is None else profile_from_vector(vector)

    @classmethod
    def from_dict(cls, d: Mapping, *, source: str = "<input>", strict: bool = True) -> Persona:
        """Same as `persona_from_dict`."""
        return persona_from_dict(d, source=source, strict=strict)

    def to_dict(self) -> dict:
        """Same as `persona_to_dict`."""
        return persona_to_dict(self)


@dataclass
class Record:
    """One AlignX-style preference example with its user's persona.

    ``extra`` holds the keys this module does not model, plus modelled keys whose value carries
    no data (``null``, or an empty persona list), so that they are written back as they were.
    """

    prompt: str
    chosen: str
    rejected: str
    persona: Persona = field(default_factory=Persona)
    direction: tuple[float, ...] | None = None
    profile: str | None = None
    ground_truth_persona: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping, *, source: str = "<input>", index: int | None = None) -> Record:
        """Same as `record_from_dict`."""
        return record_from_dict(d, source=source, index=index)

    def to_dict(self) -> dict:
        """Same as `record_to_dict`."""
        return record_to_dict(self)


class SchemaError(ValueError):
    """A record or persona does not match the schema, or a file cannot be parsed.

    Attributes:
        source (`str`): the file path, or "<input>" for in-memory data.
        index (`int` or `None`): the record's position in the file (0-based).
        field (`str` or `None`): a dotted path such as "Pair-wise Comparative Feedback[2].prompt".
        line (`int` or `None`): the 1-based line (JSONL records, JSON syntax errors).
        reason (`str`): what is wrong, e.g. "expected 90 values, got 89".
    """

    def __init__(self, reason: str, *, source: str = "<input>", index: int | None = None,
                 field: str | None = None, line: int | None = None):  # fmt: skip
        self.reason, self.source, self.index, self.field, self.line = reason, source, index, field, line
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [str(self.source)]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.index is not None:
            parts.append(f"record {self.index}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.reason])

    def __reduce__(self):
        return (_rebuild_schema_error, (self.reason, self.source, self.index, self.field, self.line))


def _rebuild_schema_error(reason, source, index, field, line):
    return SchemaError(reason, source=source, index=index, field=field, line=line)


# ---------------------------------------------------------------------------- dict <-> dataclass


class _Reader:
    """Typed access to one record's values; every failure is a `SchemaError` with context."""

    def __init__(self, source: str, index: int | None, line: int | None = None):
        self.source, self.index, self.line = source, index, line

    def fail(self, path: str | None, reason: str):
        raise SchemaError(reason, source=self.source, index=self.index, field=path, line=self.line)

    def mapping(self, value, path: str | None) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(path, f"expected an object (dict), got {_type_name(value)}")
        return value

    def string(self, d: Mapping, key: str, path: str) -> str:
        if key not in d:
            self.fail(path, f"missing required key {key!r}")
        if not isinstance(d[key], str):
            self.fail(path, f"expected a string, got {_type_name(d[key])}")
        return str(d[key])

    def items(self, value, path: str) -> list:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple, np.ndarray)):
            self.fail(path, f"expected a list, got {_type_name(value)}")
        return list(value)

    def vector(self, value, path: str) -> tuple[float, ...]:
        try:
            return tuple(validate_vector(value, what=path).tolist())
        except VectorError as e:
            self.fail(path, e.reason)

    def optional_vector(self, d: Mapping, path: str) -> tuple[float, ...] | None:
        """An item's "Preference Direction", or None when absent or null."""
        value = d.get(KEY_DIRECTION)
        return None if _is_null(value) else self.vector(value, path)

    def ugc(self, value, path: str) -> UGCItem:
        d = self.mapping(value, path)
        return UGCItem(
            prompt=self.string(d, KEY_PROMPT, f"{path}.{KEY_PROMPT}"),
            comment=self.string(d, KEY_COMMENT, f"{path}.{KEY_COMMENT}"),
            direction=self.optional_vector(d, f"{path}.{KEY_DIRECTION}"),
        )

    def pair(self, value, path: str) -> PairItem:
        d = self.mapping(value, path)
        return PairItem(
            prompt=self.string(d, KEY_PROMPT, f"{path}.{KEY_PROMPT}"),
            chosen=self.string(d, KEY_CHOSEN, f"{path}.{KEY_CHOSEN}"),
            rejected=self.string(d, KEY_REJECTED, f"{path}.{KEY_REJECTED}"),
            direction=self.optional_vector(d, f"{path}.{KEY_DIRECTION}"),
        )

    def persona_fields(self, d: Mapping, direction_key: str) -> tuple[Persona, dict]:
        """The persona keys of ``d``, and the ones present without data (for ``extra``)."""
        persona, empty = Persona(), {}
        for key, parse, attr in ((KEY_UGC, self.ugc, "ugc"), (KEY_PAIRS, self.pair, "pairs")):
            if key in d and not _is_null(d[key]):
                values = self.items(d[key], key)
                setattr(persona, attr, [parse(v, f"{key}[{i}]") for i, v in enumerate(values)])
        if not _is_null(d.get(KEY_DEMOGRAPHICS)):
            persona.demographics = self.string(d, KEY_DEMOGRAPHICS, KEY_DEMOGRAPHICS)
        if not _is_null(d.get(direction_key)):
            persona.direction = self.vector(d[direction_key], direction_key)
        for key in (KEY_UGC, KEY_PAIRS, KEY_DEMOGRAPHICS, direction_key):
            if key in d and _is_null(d[key]):
                empty[key] = None
            elif key in (KEY_UGC, KEY_PAIRS) and key in d and len(d[key]) == 0:
                empty[key] = []
        return persona, empty


def record_from_dict(d: Mapping, *, source: str = "<input>", index: int | None = None,
                     line: int | None = None) -> Record:  # fmt: skip
    """Build a `Record` from a dict with the official AlignX keys, validating it.

    Args:
        d (`Mapping`): the record; numpy arrays (as parquet and pandas give) are accepted for lists.
        source (`str`, *optional*, defaults to `"<input>"`): file name for error messages.
        index (`int`, *optional*): the record's position, for error messages.
        line (`int`, *optional*): the record's line (JSONL), for error messages.

    Returns:
        `Record`: unknown keys go to ``extra`` (numpy values turned into Python ones). Inside
        UGC / PAIR items only prompt, comment / chosen, rejected and "Preference Direction" are
        kept (items have no ``extra``); a null item direction reads as absent.

    Raises:
        SchemaError: a missing required key (prompt, chosen, rejected), a wrong type or a bad
            90-dim vector, with ``source``, ``index`` and the dotted ``field`` path.
    """
    r = _Reader(source, index, line)
    d = r.mapping(d, None)
    prompt, chosen, rejected = (r.string(d, k, k) for k in (KEY_PROMPT, KEY_CHOSEN, KEY_REJECTED))
    persona, extra = r.persona_fields(d, KEY_PERSONA_DIRECTION)
    record = Record(prompt=prompt, chosen=chosen, rejected=rejected, persona=persona)
    if not _is_null(d.get(KEY_DIRECTION)):
        record.direction = r.vector(d[KEY_DIRECTION], KEY_DIRECTION)
    if not _is_null(d.get(KEY_PROFILE)):
        record.profile = r.string(d, KEY_PROFILE, KEY_PROFILE)
    if not _is_null(d.get(KEY_GROUND_TRUTH)):
        record.ground_truth_persona = r.string(d, KEY_GROUND_TRUTH, KEY_GROUND_TRUTH)
    for key in (KEY_DIRECTION, KEY_PROFILE, KEY_GROUND_TRUTH):
        if key in d and _is_null(d[key]):
            extra[key] = None
    record.extra = {**extra, **{k: _plain(v) for k, v in d.items() if k not in RECORD_KEYS}}
    return record


def record_to_dict(r: Record) -> dict:
    """The on-disk dict of a `Record`, with the official key names.

    Optional keys are written only when they hold data or were present when loaded (kept in
    ``extra``); ``extra``'s other keys follow the known ones.

    Args:
        r (`Record`): the record.

    Returns:
        `dict`: plain Python values, ready for `json.dumps`.
    """
    p = r.persona
    values = {
        KEY_PROMPT: r.prompt,
        KEY_CHOSEN: r.chosen,
        KEY_REJECTED: r.rejected,
        KEY_DIRECTION: None if r.direction is None else list(r.direction),
        KEY_GROUND_TRUTH: r.ground_truth_persona,
        KEY_PROFILE: r.profile,
        KEY_DEMOGRAPHICS: p.demographics,
        KEY_UGC: [_item_to_dict(it) for it in p.ugc] or None,
        KEY_PAIRS: [_item_to_dict(it) for it in p.pairs] or None,
        KEY_PERSONA_DIRECTION: None if p.direction is None else list(p.direction),
    }
    out = {}
    for key in RECORD_KEYS:
        if values[key] is not None:
            out[key] = values[key]
        elif key in r.extra:
            out[key] = r.extra[key]
    out.update((k, v) for k, v in r.extra.items() if k not in RECORD_KEYS)
    return out


def persona_from_dict(d: Mapping, *, source: str = "<input>", strict: bool = True) -> Persona:
    """Build a `Persona` from a persona dict (the AlignX persona keys, all optional).

    Args:
        d (`Mapping`): keys "User-Generated Content", "Pair-wise Comparative Feedback",
            "Demographic Information" and "Preference Direction" (the persona's own vector).
        source (`str`, *optional*, defaults to `"<input>"`): file name for error messages.
        strict (`bool`, *optional*, defaults to `True`): reject unknown keys (a persona has no
            ``extra``, so they would be lost); with `False` they are ignored.

    Raises:
        SchemaError: an unknown key (when strict), a wrong type or a bad vector.
    """
    r = _Reader(source, None)
    d = r.mapping(d, None)
    unknown = [k for k in d if k not in PERSONA_KEYS]
    if strict and unknown:
        r.fail(unknown[0], f"unknown persona key; expected only {list(PERSONA_KEYS)}")
    return r.persona_fields(d, KEY_DIRECTION)[0]


def persona_to_dict(p: Persona) -> dict:
    """The on-disk dict of a `Persona`: both item lists always, demographics and direction when
    set.

    Args:
        p (`Persona`): the persona.
    """
    out: dict = {} if p.demographics is None else {KEY_DEMOGRAPHICS: p.demographics}
    out[KEY_UGC] = [_item_to_dict(it) for it in p.ugc]
    out[KEY_PAIRS] = [_item_to_dict(it) for it in p.pairs]
    if p.direction is not None:
        out[KEY_DIRECTION] = list(p.direction)
    return out


def _item_to_dict(item: UGCItem | PairItem) -> dict:
    if isinstance(item, UGCItem):
        out = {KEY_PROMPT: item.prompt, KEY_COMMENT: item.comment}
    else:
        out = {KEY_PROMPT: item.prompt, KEY_CHOSEN: item.chosen, KEY_REJECTED: item.rejected}
    if item.direction is not None:
        out[KEY_DIRECTION] = list(item.direction)
    return out


def _is_null(value) -> bool:
    """None, or a float NaN (what pandas puts in a missing cell)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _plain(value):
    """numpy arrays and scalars (from parquet / pandas) to Python lists and scalars."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _drop_nulls(value):
    """Columnar sources (parquet, datasets) turn absent keys into nulls; drop them again."""
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_nulls(v) for v in value]
    return value


# ---------------------------------------------------------------------------- files


def _detect_format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {list(FORMATS)}")
        return format
    if path.is_dir():
        return "parquet"
    suffix = path.suffix.lower()
    fmt = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(suffix)
    if fmt is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its extension; "
            f"pass format= one of {list(FORMATS)}"
        )
    return fmt


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        reason = f"invalid JSON at column {e.colno}: {e.msg}"
        raise SchemaError(reason, source=str(path), line=e.lineno) from e
    except UnicodeDecodeError as e:
        raise SchemaError(f"not UTF-8 text: {e}", source=str(path)) from e


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line."""
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    yield lineno, json.loads(text)
                except json.JSONDecodeError as e:
                    reason = f"invalid JSON at column {e.colno}: {e.msg}"
                    raise SchemaError(reason, source=str(path), line=lineno) from e
    except UnicodeDecodeError as e:
        raise SchemaError(f"not UTF-8 text: {e}", source=str(path)) from e


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the raw objects of a JSONL file, skipping blank lines.

    Args:
        path (`str` or `os.PathLike`): the file.

    Raises:
        SchemaError: a line is not valid JSON (names the line).
    """
    for _, obj in _jsonl_rows(Path(path)):
        yield obj


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.rglob("*.parquet"))
        if not files:
            raise FileNotFoundError(f"no *.parquet files under directory {str(path)!r}")
        return files
    return [path]


def _parquet_rows(path: Path) -> Iterator[tuple[str, int, dict]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:  # pragma: no cover
        raise ImportError("reading parquet needs pyarrow: pip install pyarrow") from e
    for shard in _parquet_files(path):
        i = 0
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield str(shard), i, _drop_nulls(row)
                i += 1


def iter_records(path: str | os.PathLike, *, format: str | None = None) -> Iterator[Record]:
    """Stream the records of a file (see `load_records`), validating each as it is read.

    Args:
        path (`str` or `os.PathLike`): a .json, .jsonl or .parquet file, or a directory of
            .parquet shards (read in sorted order, recursively).
        format (`str`, *optional*): "json", "jsonl" or "parquet"; by default from the extension.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"records file not found: {str(path)!r}")
    fmt = _detect_format(path, format)
    if fmt == "json":
        data = _read_json(path)
        if not isinstance(data, list):
            reason = f"expected a JSON list of records, got {_type_name(data)}"
            raise SchemaError(reason, source=str(path))
        for i, d in enumerate(data):
            yield record_from_dict(d, source=str(path), index=i)
    elif fmt == "jsonl":
        for i, (lineno, d) in enumerate(_jsonl_rows(path)):
            yield record_from_dict(d, source=str(path), index=i, line=lineno)
    else:
        for shard, i, d in _parquet_rows(path):
            yield record_from_dict(d, source=shard, index=i)


def load_records(
    path: str | os.PathLike, *, format: str | None = None, limit: int | None = None
) -> list[Record]:
    """Load and validate the records of a file; all or nothing.

    Args:
        path (`str` or `os.PathLike`): a .json file holding a list of records (AlignX-test,
            P-SOUPS, PRISM, UF-P-4), a .jsonl file, a .parquet file, or a directory of .parquet
            shards (AlignX from the Hub).
        format (`str`, *optional*): "json", "jsonl" or "parquet"; by default from the extension
            (a directory means parquet).
        limit (`int`, *optional*): stop after this many records (only those are validated).

    Returns:
        `list[Record]`

    Raises:
        FileNotFoundError: the path does not exist (or a directory has no .parquet file).
        SchemaError: malformed JSON (with line and column) or an invalid record (with its index,
            its line for JSONL, and the field).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return list(itertools.islice(iter_records(path, format=format), limit))


def _atomic_write(path: Path, write) -> None:
    """Write through a temp file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(text: str):
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def save_records(records, path: str | os.PathLike, *, format: str | None = None) -> None:
    """Save records atomically (temp file + rename) as .json, .jsonl or .parquet.

    Args:
        records (iterable of `Record`): what to save.
        path (`str` or `os.PathLike`): the target file; parent directories are created.
        format (`str`, *optional*): "json", "jsonl" or "parquet"; by default from the extension.

    Notes:
        Parquet is columnar: a key missing from some records is stored as null and read back as
        missing, so mixed records round-trip as dicts except for explicit nulls.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"save_records writes one file, but {str(path)!r} is a directory")
    fmt = _detect_format(path, format)
    dicts = [record_to_dict(r) for r in records]
    if fmt == "json":
        _atomic_write(path, _write_text(json.dumps(dicts, ensure_ascii=False, indent=2) + "\n"))
    elif fmt == "jsonl":
        lines = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in dicts)
        _atomic_write(path, _write_text(lines))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = list(dict.fromkeys(k for d in dicts for k in d))
        table = pa.table({k: [d.get(k) for d in dicts] for k in columns})
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def load_persona(path: str | os.PathLike) -> Persona:
    """Load a persona file (a JSON object with the AlignX persona keys).

    Args:
        path (`str` or `os.PathLike`): the .json file.

    Raises:
        FileNotFoundError, SchemaError
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"persona file not found: {str(path)!r}")
    return persona_from_dict(_read_json(path), source=str(path))


def save_persona(persona: Persona, path: str | os.PathLike) -> None:
    """Save a persona as a JSON object, atomically.

    Args:
        persona (`Persona`): what to save.
        path (`str` or `os.PathLike`): the target .json file.
    """
    text = json.dumps(persona_to_dict(persona), ensure_ascii=False, indent=2) + "\n"
    _atomic_write(Path(path), _write_text(text))


# ---------------------------------------------------------------------------- Hugging Face datasets


def records_from_hf(
    dataset_or_id, split: str = "train", *, limit: int | None = None, **load_kwargs
) -> list[Record]:
    """Validate the rows of a Hugging Face dataset into records.

    Args:
        dataset_or_id: a loaded `datasets.Dataset` / `DatasetDict` / `IterableDataset`, a local
            .json / .jsonl / .parquet file or directory of shards, or a Hub id such as
            "JinaLeejnl/AlignX".
        split (`str`, *optional*, defaults to `"train"`): the split (local files only have "train").
        limit (`int`, *optional*): stop after this many rows.
        load_kwargs: passed to `datasets.load_dataset` (e.g. ``cache_dir``, ``streaming=True``).

    Returns:
        `list[Record]`

    Raises:
        SchemaError: a row is invalid (source is the dataset name, index the row).
    """
    try:
        import datasets
    except ImportError as e:  # pragma: no cover
        raise ImportError("records_from_hf needs the datasets library: pip install datasets") from e
    ds, source = dataset_or_id, None
    if isinstance(ds, (str, os.PathLike)):
        source, p = str(ds), Path(ds)
        if p.is_dir() and any(p.rglob("*.parquet")):
            files = [str(f) for f in _parquet_files(p)]
            ds = datasets.load_dataset("parquet", data_files=files, split=split, **load_kwargs)
        elif p.is_file():
            builder = _detect_format(p, None)
            builder = "json" if builder == "jsonl" else builder
            ds = datasets.load_dataset(builder, data_files=str(p), split=split, **load_kwargs)
        else:
            ds = datasets.load_dataset(str(ds), split=split, **load_kwargs)
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        ds = ds[split]
    source = source or getattr(getattr(ds, "info", None), "dataset_name", None) or "<dataset>"
    rows = itertools.islice(ds, limit)
    return [record_from_dict(_drop_nulls(row), source=source, index=i) for i, row in enumerate(rows)]
