"""The preference map: the population (prior, sources) and the UMAP projection (real umap-learn on a
small population: determinism, placement by `transform`, the disk cache and its invalidation)."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from alignx import personas, preferences
from alignx.explore import population as P
from alignx.explore import projection as J
from alignx.schema import Persona, PairItem, Record, save_records
from alignx.session import Session
from alignx.store import Store

SMALL = P.PopulationPrior(n_users=300, seed=7)


@pytest.fixture(scope="module")
def examples():
    return personas.load_examples()


@pytest.fixture(scope="module")
def small_pop(examples):
    return P.generate_population(SMALL) + P.example_population(examples)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("alignx-cache")


@pytest.fixture(scope="module")
def fitted(small_pop, cache):
    return J.fit_map(small_pop, cache_dir=cache)


def nudged(vector, dim: int, step: float = 0.1) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float64).copy()
    v[dim] = v[dim] + step if v[dim] + step <= 1.0 else v[dim] - step
    return v


# ---------------------------------------------------------------------------- the prior


def test_prior_is_seeded():
    a, b = P.generate_population(SMALL), P.generate_population(SMALL)
    assert np.array_equal(a.vectors, b.vectors) and a.names == b.names
    assert np.array_equal(a.archetypes, b.archetypes)
    other = P.generate_population(P.PopulationPrior(n_users=300, seed=8))
    assert not np.array_equal(a.vectors, other.vectors)


def test_prior_properties():
    prior = P.PopulationPrior(n_users=2000, seed=3)
    pop = P.generate_population(prior)
    v = pop.vectors
    assert v.dtype == np.float32 and v.shape == (2000, preferences.N_DIMS)
    assert v.min() >= 0.0 and v.max() <= 1.0
    assert set(pop.sources) == {"generated"} and len(set(pop.names)) == len(pop)
    # Each vector is a float32 mean of 1 / 0 / 0.5 item directions: 0.5 + multiples of 1/(2 m),
    # m items, m in prior.items.
    lo, hi = prior.items
    halves = [np.isclose(v * 2 * m, np.round(v * 2 * m), atol=1e-4).all(axis=1) for m in range(lo, hi + 1)]
    assert np.logical_or.reduce(halves).all()
    # Sparse: a typical profile has a handful of labels, never most of the 90 (float32 thresholds).
    labels = ((v.astype(np.float64) >= preferences.POSITIVE_THRESHOLD)
              | (v.astype(np.float64) <= preferences.NEGATIVE_THRESHOLD)).sum(axis=1)
    assert labels[0] == sum(preferences.summarize_vector(v[0].astype(float))[k] for k in ("positive", "negative"))
    assert 5 <= np.median(labels) <= 15 and labels.max() < 45
    # Archetypes are drawn by their weights.
    directions, weights = prior.archetypes()
    share = np.bincount(pop.archetypes, minlength=prior.n_archetypes) / len(pop)
    assert np.abs(share - weights).max() < 0.04
    assert directions.shape == (prior.n_archetypes, preferences.N_DIMS)
    # Structure: a user's nearest neighbour (L1) is mostly of their archetype, far above chance.
    sample = np.random.default_rng(0).choice(len(pop), 400, replace=False)
    d = J.pairwise(v[sample], v, "manhattan")
    d[np.arange(len(sample)), sample] = np.inf
    same = (pop.archetypes[d.argmin(axis=1)] == pop.archetypes[sample]).mean()
    chance = (weights ** 2).sum()
    assert same > 0.5 > 3 * chance, (same, chance)


def test_default_population_has_5000_generated_users_and_the_examples(examples):
    assert P.PopulationPrior().n_users >= 5000
    pop = P.base_population(examples)
    assert pop.counts() == {"generated": 5000, "example": len(examples)} and len(examples) == 10
    point = pop.point(len(pop) - 1)
    assert point.source == "example" and point.persona is not None
    assert point.vector == pytest.approx(personas.derive_vector(examples["teen-gamer"]))


def test_bad_prior_names_the_field():
    with pytest.raises(ValueError, match="keep"):
        P.PopulationPrior(keep=1.5)
    with pytest.raises(ValueError, match="themes_per_archetype"):
        P.PopulationPrior(n_themes=2, themes_per_archetype=(2, 3))


# ---------------------------------------------------------------------------- the other sources


def test_store_population_reads_personas_and_annotators(tmp_path, examples):
    db = tmp_path / "alignx.db"
    with Store.open(db) as store:
        store.save_persona("my guide", examples["outdoor-guide"])
        store.save_persona("blank", Persona())  # no preference signal: left out
        if hasattr(store, "save_annotator"):
            store.save_annotator("ann", Persona(demographics="An annotator."), [0.5] * 89 + [1.0])
    pop = P.store_population(db)
    assert pop.names[0] == "my guide" and pop.sources[0] == "store" and "blank" not in pop.names
    assert pop.personas[0]["Demographic Information"] == examples["outdoor-guide"].demographics
    if "ann" in pop.names:
        i = pop.names.index("ann")
        assert pop.sources[i] == "annotator" and pop.vectors[i, 89] == 1.0


def test_benchmark_population_groups_records_by_profile(tmp_path):
    pair = PairItem("Say hi.", "Hey!", "Hello.")
    records = [Record("p", "a", "b", Persona(pairs=[pair]), profile="Likes humor, High Agreeableness")
               for _ in range(3)]
    records.append(Record("p", "a", "b", Persona(pairs=[pair]), profile="Dislikes humor"))
    records.append(Record("p", "a", "b", Persona(pairs=[pair]), direction=(0.5,) * 89 + (1.0,)))
    path = tmp_path / "bench.jsonl"
    save_records(records, path)
    pop = P.benchmark_population(path)
    assert pop.names == ("Likes humor, High Agreeableness (3 records)", "Dislikes humor (1 record)",
                         "Likes fashion (1 record)")
    assert set(pop.sources) == {"benchmark"}
    assert pop.vectors[0, 73] == 1.0 and pop.vectors[0, 5] == 1.0 and pop.vectors[1, 73] == 0.0

    save_records([Record("p", "a", "b", profile="Likes humour")], tmp_path / "bad.json")
    with pytest.raises(ValueError, match=r"bad.json: record 0: .*Likes humour"):
        P.benchmark_population(tmp_path / "bad.json")
    save_records([Record("p", "a", "b")], tmp_path / "none.json")
    with pytest.raises(ValueError, match="no record has a profile"):
        P.benchmark_population(tmp_path / "none.json")


def test_labels_scores_and_loading_a_point(small_pop):
    labels = P.strongest_labels(small_pop.vectors[:50], 3)
    for row, got in zip(small_pop.vectors[:50], labels):
        assert got == [label for label, _ in preferences.describe(row.astype(float), 3)]
    scores = P.group_scores(small_pop.vectors)
    assert set(scores) == set(preferences.GROUPS)
    assert all(0.0 <= s.min() and s.max() <= 1.0 for s in scores.values())
    assert P.group_scores(np.full(90, 0.5))["Interests"][0] == 0.0

    session = Session(prompt="hi")
    generated = small_pop.point(0)
    after = P.with_point(session, generated)
    assert after.vector == pytest.approx(generated.vector) and after.persona == session.persona
    example = small_pop.point(len(small_pop) - 1)
    after = P.with_point(session, example)
    assert after.persona == example.persona and after.prompt == "hi"
    with pytest.raises(IndexError, match="no point #9999"):
        small_pop.point(9999)


# ---------------------------------------------------------------------------- the projection (real umap-learn)


def test_numba_cache_is_under_the_alignx_cache():
    umap = J.import_umap()
    import numba.core.config
    from numba.core.caching import NullCache

    assert os.environ["NUMBA_CACHE_DIR"] == str(J.numba_cache_dir()) == numba.core.config.CACHE_DIR
    # umap declares no cached function; import_umap turns the cache on for them.
    assert not isinstance(umap.umap_.smooth_knn_dist._cache, NullCache)
    assert J.IMPORT_SECONDS["cached_functions"] > 50


def test_cache_root_mirrors_the_backbone(monkeypatch, tmp_path):
    from alignx.backbone import cache_root

    monkeypatch.setenv("ALIGNX_CACHE", str(tmp_path))
    assert J.cache_root() == cache_root() == tmp_path
    assert J.maps_dir() == tmp_path / "maps"
    assert J.cache_root("/x") == cache_root("/x")


def test_fit_is_deterministic_with_a_fixed_seed(small_pop, fitted, tmp_path):
    again = J.fit_map(small_pop, cache_dir=tmp_path, refit=True)
    assert not again.from_cache
    assert np.array_equal(fitted.embedding, again.embedding)
    assert np.array_equal(fitted.clusters, again.clusters)
    v = nudged(small_pop.vectors[3], 40)
    assert np.array_equal(fitted.place(v), again.place(v))
    other = J.fit_map(small_pop, J.ProjectionParams(random_state=1), cache_dir=tmp_path)
    assert not np.allclose(other.embedding, fitted.embedding)


def test_nudged_copy_lands_among_the_members_neighbours(small_pop, fitted):
    rng = np.random.default_rng(11)
    members = [*rng.choice(len(small_pop) - 10, 30, replace=False), *range(len(small_pop) - 10, len(small_pop))]
    knn, _ = J.exact_knn(small_pop.vectors, 15, "manhattan")
    within = []
    for m in members:
        v = nudged(small_pop.vectors[m], int(rng.integers(90)))
        placed = fitted.project(v, k=5)
        # In the 90-dim space the member is the nearest point, at the nudge's L1 distance.
        assert placed.neighbours[0].index == m
        assert placed.neighbours[0].distance == pytest.approx(0.1, abs=1e-5)
        # On the map the copy lands inside the member's neighbourhood: no farther from the member
        # than the member's own 15 nearest neighbours (90-dim) are drawn.
        spread = np.linalg.norm(fitted.embedding[knn[m, 1:]] - fitted.embedding[m], axis=1).max()
        within.append(np.hypot(placed.x - fitted.embedding[m, 0], placed.y - fitted.embedding[m, 1]) <= spread)
    assert np.mean(within) >= 0.9, f"{np.mean(within):.0%} of nudged copies landed among their member's neighbours"


def test_cache_hits_and_is_invalidated_when_the_population_changes(small_pop, fitted, cache):
    assert not fitted.from_cache
    assert (J.maps_dir(cache) / f"{fitted.key}.pkl").is_file()
    hit = J.fit_map(small_pop, cache_dir=cache)
    assert hit.from_cache and hit.key == fitted.key and np.array_equal(hit.embedding, fitted.embedding)

    vectors = small_pop.vectors.copy()
    vectors[0, 0] = 0.25 if vectors[0, 0] != 0.25 else 0.75  # one slider of one user
    changed = P.Population(vectors, small_pop.names, small_pop.sources, small_pop.personas)
    assert changed.fingerprint() != small_pop.fingerprint()
    refit = J.fit_map(changed, cache_dir=cache)
    assert not refit.from_cache and refit.key != fitted.key
    assert len(list(J.maps_dir(cache).glob("*.pkl"))) == 2

    renamed = P.Population(small_pop.vectors, tuple(f"x{i}" for i in range(len(small_pop))), small_pop.sources)
    assert J.fit_map(renamed, cache_dir=cache).from_cache  # names are display data, not the fit
    assert J.map_key(small_pop, J.ProjectionParams(min_dist=0.5)) != fitted.key


def test_a_corrupt_cache_file_is_refitted(small_pop, fitted, tmp_path):
    path = J.maps_dir(tmp_path) / f"{fitted.key}.pkl"
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"format": "something else"}))
    again = J.fit_map(small_pop, cache_dir=tmp_path)
    assert not again.from_cache and np.array_equal(again.embedding, fitted.embedding)


def test_project_returns_coordinates_and_neighbours(small_pop, fitted, examples):
    extra = P.example_population({"guide copy": examples["outdoor-guide"]})
    extra = P.Population(extra.vectors, ("guide copy",), ("store",), extra.personas)
    v = personas.derive_vector(examples["outdoor-guide"])
    placed = J.project(fitted, v, k=4, extra=extra)
    assert {n.name for n in placed.neighbours[:2]} == {"Outdoor guide", "guide copy"}
    assert placed.neighbours[0].distance == 0.0 and placed.population == len(small_pop) + 1
    data = json.loads(json.dumps(placed.to_dict()))
    assert set(data) == {"x", "y", "cluster", "neighbours", "metric", "map_key", "population"}
    assert data["neighbours"][0]["labels"] and data["metric"] == "manhattan"
    layout = fitted.layout(extra)
    assert len(layout.population) == len(layout.xy) == len(layout.labels) == len(small_pop) + 1
    # The copy is placed by transform next to the original.
    assert np.linalg.norm(layout.xy[-1] - fitted.embedding[small_pop.names.index("Outdoor guide")]) < 1.0


def test_bad_input_gets_a_clear_message(fitted):
    with pytest.raises(ValueError, match="expected 90 values, got 3"):
        fitted.place([0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="outside"):
        fitted.project([2.0] + [0.5] * 89)
    with pytest.raises(ValueError, match="k from 1 to 100"):
        fitted.neighbours([0.5] * 90, k=0)
    with pytest.raises(ValueError, match="more points than n_neighbors"):
        J.fit_map(P.generate_population(P.PopulationPrior(n_users=10)), refit=True)
    with pytest.raises(ValueError, match="metric"):
        J.ProjectionParams(metric="cosine")


def test_map_cache_builds_in_the_background(small_pop, fitted, cache):
    maps = J.MapCache(cache_dir=cache)  # `fitted` is in this cache: the build reads it
    assert "not started" in maps.status()
    maps.set_population(small_pop)
    maps.warm()
    built = maps.get(timeout=600)
    assert maps.peek() is built and built.from_cache and built.key == fitted.key
    assert maps.status().startswith(f"UMAP of {len(small_pop):,} users")
    assert {"import_umap_s", "load_s", "first_transform_s"} <= set(maps.timings)
    assert "first transform" in maps.status()
    with pytest.raises(RuntimeError, match="already being built"):
        maps.set_population(small_pop)

    broken = J.MapCache(cache_dir=cache)
    broken.set_population(P.generate_population(P.PopulationPrior(n_users=5)))
    with pytest.raises(RuntimeError, match="could not be built: a map needs more points"):
        broken.get(timeout=600)
    assert broken.failed and "could not be built" in broken.status()
