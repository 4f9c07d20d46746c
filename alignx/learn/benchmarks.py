"""The benchmark registry: declarative entries for the paper's test sets (lm-eval-harness style).

A benchmark is data, not code: a `BenchmarkSpec` names its file, the persona types its prompts
show, where the PBA profile comes from, a *named* preprocessing function, its metric and a
`version`. Variants share preprocessing functions and differ in a few fields. The data are not in
the repository; every benchmark reads the file (or folder) given with ``--data``.

    from alignx.learn.benchmarks import get_benchmark, list_benchmarks
    spec = get_benchmark("psoups-friendly_unfriendly")
    records = spec.load("/data/P-Soups/friendly_unfriendly.json", split="psoups_friendly_unfriendly")  # held-out

Entries (see `python -m alignx.learn.benchmarks` for the table):

- ``psoups-{friendly_unfriendly,student_phd,concise_detail}``: P-SOUPS, P_PAIR persona plus the
  record's precomputed ``profile``; a held-out split may be selected (``split=``).
- ``alignx-test-{ugc,pair,demo,arbitrary}``: AlignX-test ``Reddit_*.json``, the record's
  ``profile``; ``alignx-test-golden``: the arbitrary file with the profile verbalised from the
  record's own ``Preference Direction`` (the paper's "w. Golden P̃" row).
- ``ufp4-{helpfulness,honesty,instruction_following,truthfulness}``: UF-P-4, P_PAIR; each record's
  golden direction (its file's dimension) is filled in so ``profile_source="golden"`` works.
- ``prism``: PRISM, P_PAIR.
- ``alignx-parquet``: AlignX parquet shards; profile from the persona items' directions.

Only stdlib, numpy (via schema) and the light alignx modules are imported here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from alignx.schema import Persona, Record, load_records

PERSONA_TYPES = ("UGC", "PAIR", "DEMO")
PROFILE_SOURCES = ("given", "golden", "persona")

# UF-P-4 files and the preference dimension each one is about (indices of the 90-dim space,
# /work/shared/reference/dimensions.tsv: 41 instruction-following ... 44 helpfulness).
UFP4_DIMENSIONS = {"helpfulness": 44, "honesty": 42, "instruction_following": 41, "truthfulness": 43}


@dataclass(frozen=True)
class BenchmarkSpec:
    """One registered benchmark.

    Args:
        name (`str`): registry key, e.g. ``"psoups-friendly_unfriendly"``.
        description (`str`): one line for humans.
        persona_types (`tuple[str, ...]`): the persona parts the ICA prompt shows, from
            ``("UGC", "PAIR", "DEMO")``; the others are dropped from every record.
        default_file (`str`): the file's path in the official layout, used when ``--data`` is a
            folder (e.g. ``"P-Soups/friendly_unfriendly.json"``); a trailing ``/`` means the
            benchmark reads a folder of parquet shards.
        preprocess (`Callable[[list[Record], BenchmarkSpec], list[Record]]`): a named function
            that turns loaded records into evaluation records (never in place).
        prompt_fields (`tuple[str, ...]`): the record fields the prompts read (documentation).
        profile_source (`str`, defaults to `"given"`): where the PBA profile comes from:
            ``"given"`` the record's ``profile`` field, ``"golden"`` the record's own
            ``Preference Direction``, ``"persona"`` the persona items' directions.
        golden_dimension (`int`, *optional*): for benchmarks whose golden preference is one known
            dimension (UF-P-4): records without a direction get that one-hot direction.
        version (`str`, defaults to `"1.0"`): bump when the records or prompts a spec yields change.
        metric (`str`, defaults to `"alignment_accuracy"`) and higher_is_better (`bool`).
        supports_split (`bool`): whether a held-out split name may be given.
        paper_column (`str`): the Table 3 column this reproduces, if any.
    """

    name: str
    description: str
    persona_types: tuple[str, ...]
    default_file: str
    preprocess: Callable[[list[Record], "BenchmarkSpec"], list[Record]]
    prompt_fields: tuple[str, ...] = ("prompt", "chosen", "rejected")
    profile_source: str = "given"
    golden_dimension: int | None = None
    version: str = "1.0"
    metric: str = "alignment_accuracy"
    higher_is_better: bool = True
    supports_split: bool = False
    paper_column: str = ""

    def __post_init__(self):
        bad = [t for t in self.persona_types if t not in PERSONA_TYPES]
        if bad or not self.persona_types:
            raise ValueError(f"{self.name}: persona_types must be a non-empty subset of {PERSONA_TYPES}")
        if self.profile_source not in PROFILE_SOURCES:
            raise ValueError(f"{self.name}: profile_source must be one of {PROFILE_SOURCES}")

    @property
    def reads_folder(self) -> bool:
        return self.default_file.endswith("/")

    def resolve_data(self, data: str | os.PathLike) -> Path:
        """The file to read: ``data`` itself, or ``default_file`` inside it when it is a folder."""
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"{self.name}: data not found: {str(path)!r} (expected {self.default_file})")
        if path.is_file():
            return path
        if self.reads_folder:
            inner = path / self.default_file
            return inner if inner.is_dir() else path
        tried = [path / self.default_file, path / Path(self.default_file).name]
        for candidate in tried:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"{self.name}: {str(path)!r} is a folder without {' or '.join(repr(str(t)) for t in tried)}; "
            "pass the benchmark file itself with --data"
        )

    def load(self, data: str | os.PathLike, *, split: str | None = None, limit: int | None = None,
             split_loader: Callable[[str, list[Record]], list[Record]] | None = None) -> list[Record]:
        """Load, select the held-out split (if any), preprocess and truncate to ``limit``.

        Args:
            data: the benchmark file, or a folder holding it at ``default_file``.
            split (`str`, *optional*): a held-out split name (benchmarks with ``supports_split``):
                only its held-out records are kept, via ``alignx.learn.split.heldout_records(name,
                records)`` (the held-out side of ``load_split``; hash-checked). A path to a split
                ``.json`` file works too.
            limit (`int`, *optional*): keep the first ``limit`` records (smoke tests only).
            split_loader (*optional*): ``(name, records) -> held-out records``, replacing
                ``heldout_records`` (tests).
        """
        records = load_records(self.resolve_data(data))
        if split is not None:
            if not self.supports_split:
                splittable = [s.name for s in _REGISTRY.values() if s.supports_split]
                raise ValueError(f"{self.name} has no held-out splits; benchmarks that do: {', '.join(splittable)}")
            if split_loader is None:
                try:
                    from alignx.learn.split import heldout_records as split_loader
                except ImportError as exc:
                    raise ValueError(f"held-out splits need alignx.learn.split, which is missing ({exc})") from exc
            records = list(split_loader(split, records))
        records = self.preprocess(records, self)
        return records if limit is None else records[:limit]


# ----------------------------------------------------------------------------- preprocessing
# Named functions, shared by variants (lm-eval's `process_docs: !function utils.x`).


def restrict_persona(persona: Persona, types: Sequence[str]) -> Persona:
    """A copy of ``persona`` with only the given parts (``"UGC"``, ``"PAIR"``, ``"DEMO"``)."""
    return Persona(
        ugc=list(persona.ugc) if "UGC" in types else [],
        pairs=list(persona.pairs) if "PAIR" in types else [],
        demographics=persona.demographics if "DEMO" in types else None,
        direction=persona.direction,
    )


def golden_direction(dimension: int) -> tuple[float, ...]:
    """The one-dimension golden preference: 1 at ``dimension``, neutral elsewhere."""
    return tuple(1.0 if i == dimension else 0.5 for i in range(90))


def resolve_profile(record: Record, source: str) -> str | None:
    """The PBA profile of a record from one source (see `PROFILE_SOURCES`); `None` if it has none."""
    from alignx.preferences import profile_from_vector

    if source == "given":
        return record.profile
    if source == "golden":
        return None if record.direction is None else profile_from_vector(record.direction)
    if source == "persona":
        return record.persona.profile()
    raise ValueError(f"unknown profile source {source!r}; choose one of {', '.join(PROFILE_SOURCES)}")


def preprocess_records(records: list[Record], spec: BenchmarkSpec) -> list[Record]:
    """The common path: keep the spec's persona types, fill the golden direction, set the profile.

    Records are copied; the loaded list is not modified. A record whose profile source yields
    nothing keeps its given ``profile`` (PBA then fails on it with a clear message).
    """
    out = []
    for r in records:
        r = dataclasses.replace(r, persona=restrict_persona(r.persona, spec.persona_types), extra=dict(r.extra))
        if r.direction is None and spec.golden_dimension is not None:
            r.direction = golden_direction(spec.golden_dimension)
        if spec.profile_source != "given":
            r.profile = resolve_profile(r, spec.profile_source) or r.profile
        out.append(r)
    return out


def preprocess_psoups(records: list[Record], spec: BenchmarkSpec) -> list[Record]:
    """P-SOUPS: P_PAIR persona plus the precomputed profile; every record names its persona."""
    missing = [i for i, r in enumerate(records) if r.ground_truth_persona is None or r.profile is None]
    if missing:
        raise ValueError(f"{spec.name}: record {missing[0]} lacks 'ground_truth_persona' or 'profile' "
                         "(is this a P-SOUPS file?)")
    return preprocess_records(records, spec)


# ----------------------------------------------------------------------------- registry

_REGISTRY: dict[str, BenchmarkSpec] = {}


def register(spec: BenchmarkSpec) -> BenchmarkSpec:
    """Add ``spec`` to the registry. Raises `ValueError` if its name is taken."""
    if spec.name in _REGISTRY:
        raise ValueError(f"benchmark {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_benchmark(name: str) -> BenchmarkSpec:
    """Look a benchmark up by name. Raises `KeyError` listing the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; valid names: {', '.join(_REGISTRY)}") from None


def list_benchmarks() -> list[BenchmarkSpec]:
    """All registered benchmarks, in registration order."""
    return list(_REGISTRY.values())


def data_sha256(path: str | os.PathLike) -> str:
    """sha256 of a data file; for a folder, of the sorted (relative path, file sha256) lines of its
    ``*.parquet`` / ``*.json`` / ``*.jsonl`` files."""
    path = Path(path)

    def file_hash(p: Path) -> str:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    if path.is_file():
        return file_hash(path)
    files = sorted(p for ext in ("*.parquet", "*.json", "*.jsonl") for p in path.rglob(ext))
    lines = "".join(f"{p.relative_to(path).as_posix()} {file_hash(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# P-SOUPS (Jang et al. 2023): 3 axes x 2 opposite personas, P_PAIR persona (4 pairs per record).
for _axis, _what in [
    ("friendly_unfriendly", "friendly/witty vs unfriendly"),
    ("student_phd", "elementary-school vs PhD level"),
    ("concise_detail", "concise vs detailed"),
]:
    register(BenchmarkSpec(
        name=f"psoups-{_axis}",
        description=f"P-SOUPS {_axis}: {_what} personas, P_PAIR persona + precomputed profile",
        persona_types=("PAIR",),
        default_file=f"P-Soups/{_axis}.json",
        preprocess=preprocess_psoups,
        prompt_fields=("prompt", "Pair-wise Comparative Feedback", "profile"),
        supports_split=True,
        paper_column="P-SOUPS (P_PAIR)",
    ))

# AlignX-test (HF JinaLeejnl/AlignX-test): same targets, one persona signal per file.
_PERSONA_FIELDS = {"UGC": "User-Generated Content", "PAIR": "Pair-wise Comparative Feedback",
                   "DEMO": "Demographic Information"}
for _variant, _file, _types, _column in [
    ("ugc", "Reddit_UGC.json", ("UGC",), "AlignX_test P_UGC"),
    ("pair", "Reddit_PAIR.json", ("PAIR",), "AlignX_test P_PAIR"),
    ("demo", "Reddit_DEMO.json", ("DEMO",), "AlignX_test P_DEMO"),
    ("arbitrary", "Reddit_arbitrary.json", PERSONA_TYPES, "AlignX_test P (all)"),
]:
    register(BenchmarkSpec(
        name=f"alignx-test-{_variant}",
        description=f"AlignX-test, {_column.removeprefix('AlignX_test ')} persona ({_file}) + precomputed profile",
        persona_types=_types,
        default_file=f"AlignX-test/{_file}",
        preprocess=preprocess_records,
        prompt_fields=("prompt", *(_PERSONA_FIELDS[t] for t in _types), "profile"),
        paper_column=_column,
    ))
register(BenchmarkSpec(
    name="alignx-test-golden",
    description="AlignX-test (Reddit_arbitrary.json), PBA profile verbalised from the record's own "
                "Preference Direction (the paper's 'w. Golden P~' upper bound)",
    persona_types=PERSONA_TYPES,
    default_file="AlignX-test/Reddit_arbitrary.json",
    preprocess=preprocess_records,
    prompt_fields=("prompt", "User-Generated Content", "Pair-wise Comparative Feedback", "Demographic Information",
                   "Preference Direction"),
    profile_source="golden",
    paper_column="AlignX_test, PBA w. Golden P~",
))

# UF-P-4 (UltraFeedback-P, 4 users = 4 alignment dimensions), P_PAIR persona.
for _dim, _index in UFP4_DIMENSIONS.items():
    register(BenchmarkSpec(
        name=f"ufp4-{_dim}",
        description=f"UF-P-4 {_dim}: P_PAIR persona + precomputed profile (golden: dimension {_index})",
        persona_types=("PAIR",),
        default_file=f"UF-P-4/{_dim}.json",
        preprocess=preprocess_records,
        prompt_fields=("prompt", "Pair-wise Comparative Feedback", "profile"),
        golden_dimension=_index,
        paper_column="UF-P-4 (P_PAIR)",
    ))

register(BenchmarkSpec(
    name="prism",
    description="PRISM (Kirk et al. 2024): real users' pairs, P_PAIR persona + precomputed profile",
    persona_types=("PAIR",),
    default_file="PRISM.json",
    preprocess=preprocess_records,
    prompt_fields=("prompt", "Pair-wise Comparative Feedback", "profile"),
    paper_column="PRISM (P_PAIR)",
))

register(BenchmarkSpec(
    name="alignx-parquet",
    description="AlignX parquet shards (HF JinaLeejnl/AlignX): full persona; profile = get_profile over "
                "the persona items' directions",
    persona_types=PERSONA_TYPES,
    default_file="AlignX/",
    preprocess=preprocess_records,
    prompt_fields=("prompt", "User-Generated Content", "Pair-wise Comparative Feedback", "Demographic Information",
                   "Preference Direction (of the items)"),
    profile_source="persona",
))
del _axis, _what, _variant, _file, _types, _column, _dim, _index


def main() -> None:
    """Print the registry as a table."""
    print(f"{'name':28} {'persona':14} {'profile':8} {'split':5} {'default file':34} description")
    for s in list_benchmarks():
        print(f"{s.name:28} {'+'.join(s.persona_types):14} {s.profile_source:8} {'yes' if s.supports_split else '':5} "
              f"{s.default_file:34} {s.description}")


if __name__ == "__main__":
    main()
