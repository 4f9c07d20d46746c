"""A population of 90-dim preference vectors, the points of the preference map.

A point is one user: a preference vector, a ``name``, a ``source`` and, when there is one, the
persona behind it (so loading the point in the app can set the persona too). The sources are:

- ``generated``: users drawn from a documented, seeded prior (`PopulationPrior`,
  `generate_population`), thousands of them, so that the map shows structure;
- ``example``: the example personas shipped in ``assets/personas`` (`example_population`);
- ``store``: the personas saved in the SQLite store, and ``annotator``: the store's annotators
  with their own persona and vector (`store_population`, read-only);
- ``benchmark``: the distinct profiles of a benchmark file the user loads (`benchmark_population`).

Usage::

    from alignx import personas
    from alignx.explore import population

    pop = population.base_population(personas.load_examples())   # 5,000 generated + the examples
    pop = pop + population.store_population("alignx.db")          # + saved personas
    len(pop), pop.sources[0], pop.names[0], pop.vectors.shape      # 5010, "generated", "user 0000 ...", (5010, 90)

The prior (`PopulationPrior`) mirrors how an AlignX persona's vector arises: a user has a latent
sparse ternary direction, drawn from one of a few *archetypes* (combinations of traits, or
*themes*, that many users share); each of their history items
reveals part of it; the vector is the float32 mean of the items' directions, exactly as
`alignx.preferences.mean_direction` averages real items. So generated vectors take the values a
real persona's do (0.5 ± multiples of 1/(2n)) and read through the same 0.6 / 0.4 thresholds.

Pure: stdlib, numpy and the light alignx modules (no torch, no gradio, no umap).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from alignx.personas import title
from alignx.preferences import (DIMENSIONS, GROUPS, N_DIMS, NEUTRAL, describe, dimensions_in_group,
                                parse_profile, validate_vector)
from alignx.schema import Persona, load_records, persona_from_dict, persona_to_dict

SOURCES = ("generated", "example", "store", "annotator", "benchmark")
MAX_BENCHMARK_RECORDS = 50_000  # a benchmark file is read up to this many records
MAX_BENCHMARK_POINTS = 2_000    # and gives at most this many distinct profiles


# ---------------------------------------------------------------------------- the population


@dataclass(frozen=True, eq=False)
class Point:
    """One user of a population.

    Args:
        index (`int`): position in its population.
        name (`str`): a display name, e.g. "Outdoor guide" or "user 0042 (archetype 3)".
        source (`str`): one of `SOURCES`.
        vector (`list[float]`): the 90-dim preference vector.
        persona (`dict`, *optional*): the persona in AlignX key format, when the point has one.
    """

    index: int
    name: str
    source: str
    vector: list[float]
    persona: dict | None = None


@dataclass(frozen=True, eq=False)
class Population:
    """Preference vectors with a name, a source and an optional persona each.

    Args:
        vectors (`np.ndarray`): float32, shape (n, 90), values in [0, 1].
        names (`tuple[str, ...]`): one per vector.
        sources (`tuple[str, ...]`): one per vector, each in `SOURCES`.
        personas (`tuple[dict | None, ...]`, *optional*): AlignX persona dicts, None where a point
            has no persona (generated users, benchmark profiles); default all None.
        archetypes (`np.ndarray`, *optional*): int, shape (n,): the archetype a generated user was
            drawn from, -1 for every other point; default all -1.

    Raises:
        ValueError: mismatched lengths, an unknown source, or a vector outside [0, 1].
    """

    vectors: np.ndarray
    names: tuple[str, ...]
    sources: tuple[str, ...]
    personas: tuple[dict | None, ...] = ()
    archetypes: np.ndarray | None = None

    def __post_init__(self):
        vectors = np.asarray(self.vectors, dtype=np.float32).reshape(-1, N_DIMS)
        n = len(vectors)
        if not np.all(np.isfinite(vectors)) or vectors.min(initial=0.0) < 0 or vectors.max(initial=1.0) > 1:
            raise ValueError("population vectors must be finite numbers in [0, 1]")
        personas = tuple(self.personas) or (None,) * n
        archetypes = np.full(n, -1, dtype=np.int32) if self.archetypes is None else \
            np.asarray(self.archetypes, dtype=np.int32)
        lengths = {"names": len(self.names), "sources": len(self.sources), "personas": len(personas),
                   "archetypes": len(archetypes)}
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            raise ValueError(f"population of {n} vectors has {', '.join(f'{v} {k}' for k, v in bad.items())}")
        unknown = sorted(set(self.sources) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown population source {unknown[0]!r}; expected one of {list(SOURCES)}")
        vectors.setflags(write=False)
        archetypes.setflags(write=False)
        object.__setattr__(self, "vectors", vectors)
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "personas", personas)
        object.__setattr__(self, "archetypes", archetypes)

    def __len__(self) -> int:
        return len(self.vectors)

    def __add__(self, other: Population) -> Population:
        return concat([self, other])

    def point(self, index: int) -> Point:
        """The point at ``index`` (a copy: changing it does not change the population).

        Raises:
            IndexError: no such point; the message gives the population's size.
        """
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise IndexError(f"no point #{index}: the population has {len(self)} points (0 to {len(self) - 1})")
        i = int(index)
        persona = self.personas[i]
        return Point(i, self.names[i], self.sources[i], [float(x) for x in self.vectors[i]],
                     None if persona is None else json.loads(json.dumps(persona)))

    def fingerprint(self) -> str:
        """sha256 of the vectors (float32, C order, with the shape): what a fitted map depends on.
        Names, sources and personas are display data and do not change it."""
        h = hashlib.sha256(f"{self.vectors.shape}".encode())
        h.update(np.ascontiguousarray(self.vectors, dtype=np.float32).tobytes())
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        """Points per source, in `SOURCES` order (sources with no point left out)."""
        return {s: self.sources.count(s) for s in SOURCES if s in self.sources}

    def labels(self, index: int, top_k: int = 3) -> list[str]:
        """The point's strongest labels (`strongest_labels`), for hovers and lists."""
        return strongest_labels(self.vectors[index:index + 1], top_k)[0]


def empty() -> Population:
    """A population with no point."""
    return Population(np.zeros((0, N_DIMS), dtype=np.float32), (), ())


def concat(populations: Sequence[Population]) -> Population:
    """The points of several populations, in order."""
    populations = [p for p in populations if len(p)]
    if not populations:
        return empty()
    if len(populations) == 1:
        return populations[0]
    return Population(np.concatenate([p.vectors for p in populations]),
                      tuple(n for p in populations for n in p.names),
                      tuple(s for p in populations for s in p.sources),
                      tuple(x for p in populations for x in p.personas),
                      np.concatenate([p.archetypes for p in populations]))


def from_personas(named: Mapping[str, Persona | dict], source: str) -> Population:
    """A population of personas by name; those that carry no preference signal are left out.

    Args:
        named (`Mapping[str, Persona | dict]`): personas (or AlignX persona dicts) by display name.
        source (`str`): the source of every point (one of `SOURCES`).
    """
    vectors, names, persona_dicts = [], [], []
    for name, persona in named.items():
        if not isinstance(persona, Persona):
            persona = persona_from_dict(persona, source=name)
        vector = persona.preference_vector()
        if vector is None:
            continue
        vectors.append(validate_vector(vector, what=f"persona {name!r}"))
        names.append(name)
        persona_dicts.append(persona_to_dict(persona))
    if not vectors:
        return empty()
    return Population(np.stack(vectors), tuple(names), (source,) * len(names), tuple(persona_dicts))


# ---------------------------------------------------------------------------- the generated prior


@dataclass(frozen=True)
class PopulationPrior:
    """How generated users are drawn: a mixture of archetypes with sparse ternary directions.

    1. ``n_themes`` themes, each a sparse ternary direction: a uniform number of dimensions in
       ``theme_dims`` (inclusive) chosen uniformly from the 90, each 1 or 0 with equal odds, the
       rest 0.5 (a theme is a trait many users share, such as "concise, direct, likes science").
       ``n_archetypes`` archetypes each combine a uniform number in ``themes_per_archetype`` of
       distinct themes (where two themes set the same dimension, the first wins). Archetypes that
       share a theme are close, so the population has structure at two scales. Archetype weights
       are drawn from a symmetric Dirichlet(``concentration``).
    2. A user picks an archetype by weight. Their latent direction keeps each of its dimensions
       with probability ``keep`` (flipping its polarity with probability ``flip``). With probability
       ``blend`` the user also leans towards a second archetype (by weight, another one): each of
       its dimensions the first leaves neutral joins with probability ``keep / 2``. Last come a
       Poisson(``extra_dims``) number of idiosyncratic dimensions of random polarity.
    3. The user has a uniform number of history items in ``items`` (inclusive). Each item reveals
       each latent dimension with probability ``reveal`` (its direction is the latent value there,
       0.5 elsewhere); an item that would reveal nothing reveals one latent dimension.
    4. The user's vector is the float32 mean of the items' directions
       (`alignx.preferences.mean_direction`), as for a real AlignX persona.

    With the defaults an item has about 4 non-neutral dimensions, as the example personas' items
    have 3 to 6, and a user's profile about 9 labels (5 to 13 for 90% of users).

    Args:
        n_users (`int`, defaults to 5000), n_themes (`int`, 12), theme_dims (`tuple[int, int]`, (3, 6)),
        n_archetypes (`int`, 16), themes_per_archetype (`tuple[int, int]`, (2, 3)), concentration (`float`, 2.0),
        keep (`float`, 0.65), flip (`float`, 0.05), blend (`float`, 0.35), extra_dims (`float`, 2.5),
        items (`tuple[int, int]`, (4, 8)), reveal (`float`, 0.45), seed (`int`, 0).
    """

    n_users: int = 5000
    n_themes: int = 12
    theme_dims: tuple[int, int] = (3, 6)
    n_archetypes: int = 16
    themes_per_archetype: tuple[int, int] = (2, 3)
    concentration: float = 2.0
    keep: float = 0.65
    flip: float = 0.05
    blend: float = 0.35
    extra_dims: float = 2.5
    items: tuple[int, int] = (4, 8)
    reveal: float = 0.45
    seed: int = 0

    def __post_init__(self):
        def fail(name, expected):
            raise ValueError(f"PopulationPrior.{name}: expected {expected}, got {getattr(self, name)!r}")

        if not isinstance(self.n_users, int) or self.n_users < 0:
            fail("n_users", "a whole number >= 0")
        for name in ("n_themes", "n_archetypes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                fail(name, "a whole number >= 1")
        lo, hi = self.theme_dims
        if not 1 <= lo <= hi <= N_DIMS:
            fail("theme_dims", f"(low, high) with 1 <= low <= high <= {N_DIMS}")
        lo, hi = self.themes_per_archetype
        if not 1 <= lo <= hi <= self.n_themes:
            fail("themes_per_archetype", f"(low, high) with 1 <= low <= high <= n_themes ({self.n_themes})")
        lo, hi = self.items
        if not 1 <= lo <= hi:
            fail("items", "(low, high) with 1 <= low <= high")
        for name in ("keep", "flip", "blend", "reveal"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "a probability in [0, 1]")
        if self.concentration <= 0:
            fail("concentration", "a number > 0")
        if self.extra_dims < 0:
            fail("extra_dims", "a number >= 0")

    def themes(self) -> np.ndarray:
        """The theme directions, float32 (n_themes, 90)."""
        rng = np.random.default_rng([self.seed, 0])
        themes = np.full((self.n_themes, N_DIMS), NEUTRAL, dtype=np.float32)
        for t in range(self.n_themes):
            dims = rng.choice(N_DIMS, rng.integers(self.theme_dims[0], self.theme_dims[1] + 1), replace=False)
            themes[t, dims] = rng.integers(0, 2, len(dims))
        return themes

    def archetypes(self) -> tuple[np.ndarray, np.ndarray]:
        """The archetype directions, float32 (n_archetypes, 90), and their weights (sum 1)."""
        themes = self.themes()
        rng = np.random.default_rng([self.seed, 2])
        directions = np.full((self.n_archetypes, N_DIMS), NEUTRAL, dtype=np.float32)
        for k in range(self.n_archetypes):
            n = rng.integers(self.themes_per_archetype[0], self.themes_per_archetype[1] + 1)
            for t in rng.choice(self.n_themes, n, replace=False):
                free = (directions[k] == NEUTRAL) & (themes[t] != NEUTRAL)
                directions[k, free] = themes[t, free]
        weights = rng.dirichlet(np.full(self.n_archetypes, self.concentration))
        return directions, weights


def generate_population(prior: PopulationPrior | None = None) -> Population:
    """Users drawn from ``prior`` (see `PopulationPrior`); the same prior always gives the same users.

    Returns:
        `Population`: ``n_users`` points of source "generated", named "user 0042 (archetype 3)",
        with ``archetypes`` set.
    """
    prior = prior or PopulationPrior()
    directions, weights = prior.archetypes()
    rng = np.random.default_rng([prior.seed, 1])
    n, k = prior.n_users, prior.n_archetypes
    which = rng.choice(k, size=n, p=weights)
    # 2. the latent directions: keep, flip, blend a second archetype, add idiosyncratic dimensions
    latent = directions[which].copy()                                            # (n, 90)
    latent[(latent != NEUTRAL) & (rng.random(latent.shape) >= prior.keep)] = NEUTRAL
    flip = (latent != NEUTRAL) & (rng.random(latent.shape) < prior.flip)
    latent[flip] = 1.0 - latent[flip]
    if k > 1:
        second = _other_archetype(which, weights, rng)
        joins = ((rng.random(n) < prior.blend)[:, None] & (directions[second] != NEUTRAL) & (latent == NEUTRAL)
                 & (rng.random(latent.shape) < prior.keep / 2))
        latent[joins] = directions[second][joins]
    rank = np.argsort(np.argsort(rng.random(latent.shape), axis=1), axis=1)      # a random order of the dims
    extra = rank < np.minimum(rng.poisson(prior.extra_dims, n), N_DIMS)[:, None]
    latent[extra] = rng.integers(0, 2, latent.shape)[extra]
    # 3.-4. the items, each revealing part of the latent direction, and their float32 mean
    vectors = _mean_of_items(latent, rng.integers(prior.items[0], prior.items[1] + 1, n), prior.reveal, rng)
    width = len(str(max(n - 1, 0)))
    names = tuple(f"user {u:0{width}d} (archetype {which[u]})" for u in range(n))
    return Population(vectors, names, ("generated",) * n, archetypes=which)


def _other_archetype(which: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each user, a second archetype drawn by weight among the others."""
    second = rng.choice(len(weights), size=len(which), p=weights)
    same = np.flatnonzero(second == which)
    while len(same):  # redraw the clashes (the weights are conditioned on "not the first")
        second[same] = rng.choice(len(weights), size=len(same), p=weights)
        same = same[second[same] == which[same]]
    return second


def _mean_of_items(latent: np.ndarray, n_items: np.ndarray, reveal: float, rng: np.random.Generator) -> np.ndarray:
    """Per user, the float32 mean of ``n_items[u]`` item directions, each revealing each latent
    dimension with probability ``reveal`` (at least one, when the user has any)."""
    n, most = len(latent), int(n_items.max(initial=1))
    active = latent != NEUTRAL                                                   # (n, 90)
    valid = np.arange(most)[None, :] < n_items[:, None]                          # (n, items)
    shown = (rng.random((n, most, N_DIMS)) < reveal) & active[:, None, :]
    empty_items = valid & ~shown.any(axis=2) & active.any(axis=1)[:, None]
    pick = np.argmax(rng.random((n, most, N_DIMS)) * active[:, None, :], axis=2)  # a random active dim
    u, j = np.nonzero(empty_items)
    shown[u, j, pick[u, j]] = True
    items = np.where(shown & valid[:, :, None], latent[:, None, :], np.float32(NEUTRAL)).astype(np.float32)
    items[~valid] = 0.0  # absent items add nothing to the sum
    # `mean_direction` without its per-row validation (valid by construction): a float32 sum
    # divided by n, as torch computes the official mean; these sums of halves are exact.
    return items.sum(axis=1, dtype=np.float32) / n_items.astype(np.float32)[:, None]


# ---------------------------------------------------------------------------- the other sources


def example_population(examples: Mapping[str, Persona]) -> Population:
    """The example personas (name -> `Persona`, e.g. `alignx.personas.load_examples()`), titled."""
    return from_personas({title(name): p for name, p in examples.items()}, "example")


def base_population(examples: Mapping[str, Persona], prior: PopulationPrior | None = None) -> Population:
    """The app's map population: users generated from ``prior`` (default `PopulationPrior()`),
    then the example personas. Saved personas and benchmark profiles are placed on its map."""
    return generate_population(prior) + example_population(examples)


def store_population(db_path: str | os.PathLike) -> Population:
    """The personas saved in the SQLite store (source "store"), then its annotators (source
    "annotator": their own persona and preference vector), read through `alignx.store.Store`.
    A persona with no preference signal is left out.
    """
    from alignx.store import Store

    with Store.open(db_path) as store:
        saved = {name: store.load_persona(name) for name in store.list_personas()}
        annotators = [(name, *store.load_annotator(name)) for name in store.list_annotators()] \
            if hasattr(store, "list_annotators") else []
    if not annotators:
        return from_personas(saved, "store")
    vectors = np.stack([validate_vector(v, what=f"annotator {n!r}") for n, _, v in annotators])
    return from_personas(saved, "store") + Population(
        vectors, tuple(n for n, _, _ in annotators), ("annotator",) * len(annotators),
        tuple(persona_to_dict(p) for _, p, _ in annotators))


def record_vector(record) -> np.ndarray | None:
    """The preference vector a benchmark record stands for: its ``profile`` (parsed to 1 / 0 / 0.5),
    else its own ``Preference Direction``, else its persona's (`Persona.preference_vector`)."""
    if record.profile:
        return parse_profile(record.profile)
    if record.direction is not None:
        return np.asarray(record.direction, dtype=np.float32)
    return record.persona.preference_vector()


def benchmark_population(path: str | os.PathLike, *, limit: int = MAX_BENCHMARK_RECORDS,
                         max_points: int = MAX_BENCHMARK_POINTS) -> Population:
    """The distinct profiles of a benchmark file (source "benchmark").

    Each record gives a vector (`record_vector`); records with the same vector make one point,
    named by its first record and the count: "Likes humor, High Agreeableness (12 records)".

    Args:
        path: an AlignX-format records file (.json, .jsonl, .parquet, or a folder of shards), as
            `alignx.schema.load_records` reads.
        limit (`int`): read at most this many records.
        max_points (`int`): keep at most this many distinct profiles (the most frequent).

    Raises:
        FileNotFoundError, SchemaError: from `load_records`.
        ValueError: a profile that does not parse (names the record), or no record with a profile,
            direction or persona directions.
    """
    name = Path(path).name
    counts: dict[bytes, list] = {}
    for i, record in enumerate(load_records(path, limit=limit)):
        try:
            vector = record_vector(record)
        except ValueError as exc:
            raise ValueError(f"{name}: record {i}: {exc}") from exc
        if vector is None:
            continue
        v = validate_vector(vector, what=f"{name}: record {i}").astype(np.float32)
        entry = counts.setdefault(v.tobytes(), [v, 0, record.profile])
        entry[1] += 1
    if not counts:
        raise ValueError(f"{name}: no record has a profile, a Preference Direction or persona directions "
                         "to place on the map")
    entries = sorted(counts.values(), key=lambda e: -e[1])[:max_points]
    names = []
    for v, n, profile in entries:
        text = profile or ", ".join(label for label, _ in describe(v.astype(np.float64), 3)) or "all neutral"
        text = text if len(text) <= 80 else text[:77] + "…"
        names.append(f"{text} ({n} record{'s' * (n != 1)})")
    return Population(np.stack([e[0] for e in entries]), tuple(names), ("benchmark",) * len(entries))


# ---------------------------------------------------------------------------- per-point summaries

_POSITIVE = np.array([d.positive_label for d in DIMENSIONS], dtype=object)
_NEGATIVE = np.array([d.negative_label for d in DIMENSIONS], dtype=object)


def strongest_labels(vectors, top_k: int = 3) -> list[list[str]]:
    """Each vector's strongest labels: `alignx.preferences.describe` for many vectors at once.

    Args:
        vectors: shape (n, 90) (or one vector).
        top_k (`int`): at most this many labels per vector.

    Returns:
        `list[list[str]]`: per vector, the labels of the entries furthest from 0.5 (positive label
        above 0.5, negative below), largest first, ties in index order; 0.5 entries never appear.
    """
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    dist = np.abs(v - NEUTRAL)
    order = np.argsort(-dist, axis=1, kind="stable")[:, :top_k]
    strength = np.take_along_axis(dist, order, axis=1)
    above = np.take_along_axis(v, order, axis=1) > NEUTRAL
    names = np.where(above, _POSITIVE[order], _NEGATIVE[order])
    return [list(row[keep]) for row, keep in zip(names, strength > 0)]



def group_scores(vectors) -> dict[str, np.ndarray]:
    """Per group (`alignx.preferences.GROUPS`), how strongly each vector holds preferences in it:
    the mean of ``2 * |v - 0.5|`` over the group's dimensions, 0 (no preference in the group) to 1
    (every dimension at an extreme).

    Args:
        vectors: shape (n, 90) or (90,).

    Returns:
        `dict[str, np.ndarray]`: group -> float32 array of shape (n,).
    """
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    strength = 2.0 * np.abs(v - NEUTRAL)
    return {g: strength[:, [d.index for d in dimensions_in_group(g)]].mean(axis=1) for g in GROUPS}


def with_point(session, point: Point):
    """The session with a population point loaded: its vector, and its persona when it has one.

    Args:
        session (`alignx.session.Session`): the current session.
        point (`Point`): e.g. ``population.point(i)``.

    Returns:
        `alignx.session.Session`: a new session; the prompt, backbone and settings are kept.
    """
    changes = {"vector": point.vector}
    if point.persona is not None:
        changes["persona"] = point.persona
    return session.copy(**changes)


__all__ = [
    "MAX_BENCHMARK_POINTS", "MAX_BENCHMARK_RECORDS", "SOURCES", "Point", "Population", "PopulationPrior",
    "base_population", "benchmark_population", "concat", "empty", "example_population",
    "from_personas", "generate_population", "group_scores", "record_vector", "store_population",
    "strongest_labels", "with_point",
]
