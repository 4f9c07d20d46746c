"""The preference map: a UMAP (umap-learn) of a population of 90-dim preference vectors, fitted
once and cached on disk, with new personas placed by `transform`, never by refitting.

Usage::

    from alignx import personas
    from alignx.explore import population, projection

    pop = population.base_population(personas.load_examples())   # 5,000 generated users + examples
    fitted = projection.fit_map(pop)            # read from the cache when this population was fitted
    placed = fitted.project(vector, k=10)       # coordinates, cluster and the 10 nearest neighbours
    placed.x, placed.y, [n.name for n in placed.neighbours]

Choices:

- **Metric: L1 (manhattan).** A preference vector is a mean of ternary directions: 1 / 0 prefer
  the higher / lower level, 0.5 is no preference. Between two ternary vectors L1 counts a
  dimension the other ignores as 0.5 and an opposite one as 1, the number of label edits
  between two profiles, with every dimension weighing the same; squared (euclidean) distances
  would let one opposite dimension outweigh two missing ones. Cosine is undefined for the
  all-neutral vector (every user with no preference). The nearest neighbours listed in the app are
  in the same metric, in the 90-dim space.
- **Exact neighbours.** The k-nearest-neighbour graph of the fit is computed exactly (the 25
  million L1 distances of 5,000 points take about a second with scipy), passed to umap as
  ``precomputed_knn``, and `ExactIndex` answers `transform`'s neighbour queries. This avoids
  pynndescent's search functions, which numba compiles afresh in every process (about 45 s here)
  and cannot cache.
- **Cache.** ``<cache>/maps/<key>.pkl``, under `alignx.backbone.cache_root` (``$ALIGNX_CACHE``,
  default ``~/.cache/alignx``). The key hashes the population's vectors
  (`Population.fingerprint`), the parameters and the umap-learn version, so a changed population
  or parameter is a new fit. The files are pickles: keep the folder private to the user.
- **Numba's disk cache.** `import_umap` points ``NUMBA_CACHE_DIR`` at ``<cache>/numba`` (unless
  set) and turns on caching for umap's jitted functions, which umap itself does not cache. The
  first process compiles them (here, on a loaded 2-core machine: ``import umap`` 36 s, the first
  `transform` 16 s); later processes load them (``import umap`` 2 to 6 s, the first `transform`
  0.07 s). ``benchmarks/bench_map.py --cold`` measures both.
- **One numba thread per placement.** Placing one vector is tiny work; starting numba's parallel
  regions on a busy machine cost more than the work (`_transform`).
- **Clusters.** HDBSCAN (scikit-learn) on the 2-D map; a placed point takes the cluster of the
  nearest fitted point on the map. -1 means "in no cluster".

May import numpy, scipy, scikit-learn and umap-learn (lazily); never gradio or torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import pickle
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alignx.explore.population import Population, concat, strongest_labels
from alignx.preferences import N_DIMS, validate_vector

log = logging.getLogger(__name__)

FORMAT = "alignx-map"
VERSION = 1
# metric name (umap's) -> scipy.spatial.distance.cdist's name
METRICS = {"manhattan": "cityblock", "euclidean": "euclidean"}
MAX_NEIGHBOURS = 100
_PLACEMENT_CACHE = 20_000  # placed vectors remembered per map (store personas, benchmark profiles)


# ---------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ProjectionParams:
    """How the map is fitted.

    Args:
        n_neighbors (`int`, defaults to 15): UMAP's neighbourhood size (local vs global structure).
        min_dist (`float`, defaults to 0.25): how tightly UMAP packs close points (umap's default
            0.1 draws the generated archetypes as tight blobs with no inner structure).
        metric (`str`, defaults to `"manhattan"`): "manhattan" (L1, see the module docstring) or
            "euclidean"; also the metric of the nearest neighbours.
        random_state (`int`, defaults to 0): the seed; the same seed and population give the same map.
        n_epochs (`int`, *optional*): UMAP's optimisation epochs (default: umap's choice, 500 for
            up to 10,000 points).
    """

    n_neighbors: int = 15
    min_dist: float = 0.25
    metric: str = "manhattan"
    random_state: int = 0
    n_epochs: int | None = None

    def __post_init__(self):
        if not isinstance(self.n_neighbors, int) or not 2 <= self.n_neighbors <= 200:
            raise ValueError(f"n_neighbors: expected a whole number from 2 to 200, got {self.n_neighbors!r}")
        if not 0.0 <= self.min_dist <= 1.0:
            raise ValueError(f"min_dist: expected a number in [0, 1], got {self.min_dist!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric: expected one of {list(METRICS)}, got {self.metric!r}")
        if not isinstance(self.random_state, int) or self.random_state < 0:
            raise ValueError(f"random_state: expected a whole number >= 0, got {self.random_state!r}")
        if self.n_epochs is not None and (not isinstance(self.n_epochs, int) or self.n_epochs < 1):
            raise ValueError(f"n_epochs: expected a whole number >= 1 or None, got {self.n_epochs!r}")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$ALIGNX_CACHE``, else ``~/.cache/alignx``: `alignx.backbone.cache_root`,
    mirrored here so that this module does not import torch (a test checks they agree)."""
    return Path(cache_dir or os.environ.get("ALIGNX_CACHE") or Path.home() / ".cache" / "alignx")


def maps_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where fitted maps are cached: ``<cache_root>/maps``."""
    return cache_root(cache_dir) / "maps"


def umap_version() -> str:
    return importlib.metadata.version("umap-learn")


def map_key(population: Population, params: ProjectionParams) -> str:
    """The cache key of a fit: a hash of the population's vectors, the parameters and umap's version."""
    text = json.dumps({"format": FORMAT, "version": VERSION, "umap": umap_version(),
                       "params": dataclasses.asdict(params), "population": population.fingerprint()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------- umap with numba's cache

_import_lock = threading.Lock()
IMPORT_SECONDS: dict[str, float] = {}


def numba_cache_dir() -> Path:
    """``$NUMBA_CACHE_DIR`` when set, else ``<cache_root>/numba`` (`alignx.backbone.cache_root`)."""
    return Path(os.environ.get("NUMBA_CACHE_DIR") or cache_root() / "numba")


def import_umap():
    """Import umap-learn with numba's on-disk cache on, and return the ``umap`` module.

    Sets ``NUMBA_CACHE_DIR`` (see `numba_cache_dir`) before numba reads it, then turns on caching
    for every jitted function of umap and pynndescent that does not cache itself, so later
    processes load the compiled code instead of compiling it again. Thread-safe; the first call's
    duration is kept in ``IMPORT_SECONDS["import_umap"]``.
    """
    with _import_lock:
        if "import_umap" in IMPORT_SECONDS:
            return sys.modules["umap"]
        start = time.perf_counter()
        folder = numba_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(folder)
        import numba
        from numba.core import config as numba_config

        if numba_config.CACHE_DIR != str(folder):  # numba was imported before the variable was set
            numba_config.reload_config()
        # Functions that cannot be cached (closures) say so once per compile; nothing to act on.
        warnings.filterwarnings("ignore", message=r"(?s).*[Cc]annot cache compiled function",
                                category=numba.NumbaWarning)
        import umap

        IMPORT_SECONDS["cached_functions"] = _cache_jitted_functions()
        IMPORT_SECONDS["import_umap"] = time.perf_counter() - start
        return umap


def _cache_jitted_functions() -> int:
    """Turn on numba's disk cache for umap's and pynndescent's jitted functions (umap declares
    none with ``cache=True``). Must run before their first compile; returns how many were turned on."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    seen, n = set(), 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("umap", "pynndescent")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and id(obj) not in seen:
                seen.add(id(obj))
                if isinstance(getattr(obj, "_cache", None), NullCache):
                    obj.enable_caching()
                    n += 1
    return n


# ---------------------------------------------------------------------------- exact neighbours


def pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances between the rows of ``a`` and of ``b`` in ``metric`` (float64, shape (len(a), len(b)))."""
    from scipy.spatial.distance import cdist

    return cdist(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), METRICS[metric])


def _k_smallest(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indices and values of the k smallest entries, in increasing order (ties by index)."""
    k = min(k, d.shape[1])
    idx = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
    vals = np.take_along_axis(d, idx, axis=1)
    order = np.lexsort((idx, vals), axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(vals, order, axis=1)


def exact_knn(vectors: np.ndarray, k: int, metric: str, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row among the rows, itself first (umap's convention).

    Returns:
        `(indices int32 (n, k), distances float32 (n, k))`.
    """
    n = len(vectors)
    indices = np.empty((n, k), dtype=np.int32)
    dists = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(n, start + chunk))
        d = pairwise(vectors[rows], vectors, metric)
        d[np.arange(len(rows)), rows] = -1.0  # itself first, even among exact duplicates
        idx, vals = _k_smallest(d, k)
        vals[:, 0] = 0.0
        indices[rows], dists[rows] = idx, vals
    return indices, dists


class ExactIndex:
    """Exact nearest-neighbour search over the fitted vectors, the search index umap's `transform`
    queries (``query(X, k, epsilon)`` -> indices, distances; ``_angular_trees`` picks its epsilon,
    which exact search does not need)."""

    _angular_trees = False

    def __init__(self, data: np.ndarray, metric: str):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.metric = metric

    def query(self, X, k: int, epsilon: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        idx, vals = _k_smallest(pairwise(X, self.data, self.metric), k)
        return idx.astype(np.int32), vals.astype(np.float32)


# ---------------------------------------------------------------------------- the fitted map


def _transform(model, vectors: np.ndarray) -> np.ndarray:
    """umap's `transform` on one numba thread: placing a few points is tiny work, and starting
    numba's parallel regions on a busy 2-core machine took 20x longer than the work itself
    (90 ms vs 4 ms per placement here)."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(model.transform(vectors), dtype=np.float32)
    finally:
        numba.set_num_threads(threads)



@dataclass
class Neighbour:
    """A nearest neighbour of a placed vector.

    Args:
        index (`int`): the point's index in the map's layout (the population, then any extra points).
        name (`str`), source (`str`): as in the population.
        distance (`float`): in the map's metric, in the 90-dim space.
        x (`float`), y (`float`): the point on the map.
        labels (`list[str]`): its strongest labels.
    """

    index: int
    name: str
    source: str
    distance: float
    x: float
    y: float
    labels: list[str]


@dataclass
class Placement:
    """Where a vector lands on the map, and its nearest neighbours in the 90-dim space.

    Args:
        x (`float`), y (`float`): the `transform` coordinates.
        cluster (`int`): the cluster of the nearest fitted point on the map (-1: none).
        neighbours (`list[Neighbour]`): nearest first.
        metric (`str`): the distance of the neighbours.
        map_key (`str`): the fitted map's cache key.
        population (`int`): how many points the neighbours were searched among.
    """

    x: float
    y: float
    cluster: int
    neighbours: list[Neighbour] = field(default_factory=list)
    metric: str = "manhattan"
    map_key: str = ""
    population: int = 0

    def to_dict(self) -> dict:
        """Plain JSON values (the `project` API's answer)."""
        return dataclasses.asdict(self)


@dataclass
class Layout:
    """Every point shown on a map: the fitted population, then extra points placed by `transform`.

    Args:
        population (`Population`): all the points.
        xy (`np.ndarray`): float32 (n, 2) map coordinates.
        clusters (`np.ndarray`): int (n,) clusters (-1: none).
        labels (`list[list[str]]`): each point's three strongest labels.
        fitted (`int`): how many of the first points were fitted (the rest were placed).
    """

    population: Population
    xy: np.ndarray
    clusters: np.ndarray
    labels: list[list[str]]
    fitted: int


class ProjectionMap:
    """A fitted map: the population, its 2-D embedding and clusters, and the umap model that places
    new vectors. Read-only once built; `place` is thread-safe."""

    def __init__(self, population: Population, params: ProjectionParams, model, embedding: np.ndarray,
                 clusters: np.ndarray, key: str, *, from_cache: bool, seconds: float):
        self.population, self.params, self.model = population, params, model
        self.embedding = np.asarray(embedding, dtype=np.float32)
        self.clusters = np.asarray(clusters, dtype=np.int32)
        self.key, self.from_cache, self.seconds = key, from_cache, seconds
        self._lock = threading.Lock()
        self._placed: dict[bytes, np.ndarray] = {}
        self._tree = None  # a KD-tree of the embedding, built on first use
        self._labels: list[list[str]] | None = None  # the population's strongest labels, on first use
        self._last_layout: tuple | None = None  # (extra points' key, Layout) of the last `layout` call

    def __len__(self) -> int:
        return len(self.population)

    def place(self, vectors) -> np.ndarray:
        """Map coordinates of new vectors, by umap's `transform` (no refit).

        Args:
            vectors: one 90-dim vector or an array of shape (m, 90), values in [0, 1].

        Returns:
            `np.ndarray`: float32, shape (m, 2). A vector placed before is answered from memory
            (the same vector always lands in the same place: umap's transform seed is fixed).

        Raises:
            VectorError (a `ValueError`): a malformed vector (names the row).
        """
        if np.ndim(vectors) == 2:
            rows = np.stack([validate_vector(r, what=f"vector {i}") for i, r in enumerate(vectors)]) \
                if len(vectors) else np.zeros((0, N_DIMS))
        else:
            rows = validate_vector(vectors)[None, :]
        rows = rows.astype(np.float32)
        if not len(rows):
            return np.zeros((0, 2), dtype=np.float32)
        keys = [r.tobytes() for r in rows]
        with self._lock:
            missing = [i for i, k in enumerate(keys) if k not in self._placed]
            if missing:
                unique = list(dict.fromkeys(keys[i] for i in missing))
                todo = np.stack([np.frombuffer(k, dtype=np.float32) for k in unique])
                xy = _transform(self.model, todo)
                if len(self._placed) + len(unique) > _PLACEMENT_CACHE:
                    self._placed.clear()
                self._placed.update(zip(unique, xy))
            return np.stack([self._placed[k] for k in keys])

    def cluster_at(self, xy: np.ndarray) -> np.ndarray:
        """The cluster of the nearest fitted point on the map, for each row of ``xy`` (m, 2)."""
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.embedding)
        return self.clusters[self._tree.query(np.atleast_2d(xy))[1]]

    def layout(self, extra: Population | None = None) -> Layout:
        """The fitted population plus ``extra`` points (saved personas, benchmark profiles, …)
        placed by `transform`."""
        if self._labels is None:
            self._labels = strongest_labels(self.population.vectors)
        if extra is None or not len(extra):
            return Layout(self.population, self.embedding, self.clusters, self._labels, len(self.population))
        key = (extra.fingerprint(), extra.names, extra.sources)
        last = self._last_layout  # the app asks for the same extra points on every slider move
        if last is not None and last[0] == key:
            return last[1]
        xy = self.place(extra.vectors)
        layout = Layout(concat([self.population, extra]), np.concatenate([self.embedding, xy]),
                        np.concatenate([self.clusters, self.cluster_at(xy)]),
                        self._labels + strongest_labels(extra.vectors), len(self.population))
        self._last_layout = (key, layout)
        return layout

    def neighbours(self, vector, k: int = 10, layout: Layout | None = None) -> list[Neighbour]:
        """The ``k`` points nearest to ``vector`` in the 90-dim space (map metric), nearest first;
        ties in index order.

        Args:
            vector: 90 numbers in [0, 1].
            k (`int`): 1 to `MAX_NEIGHBOURS`.
            layout (`Layout`, *optional*): the points to search (default: the fitted population).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_NEIGHBOURS:
            raise ValueError(f"neighbours: expected k from 1 to {MAX_NEIGHBOURS}, got {k!r}")
        layout = layout or self.layout()
        v = validate_vector(vector)
        idx, vals = _k_smallest(pairwise(v[None, :], layout.population.vectors, self.params.metric), int(k))
        pop = layout.population
        return [Neighbour(int(i), pop.names[i], pop.sources[i], round(float(d), 6), float(layout.xy[i, 0]),
                          float(layout.xy[i, 1]), layout.labels[i]) for i, d in zip(idx[0], vals[0])]

    def project(self, vector, k: int = 10, extra: Population | None = None) -> Placement:
        """Place ``vector`` on the map (`transform`) and find its ``k`` nearest neighbours among
        the population and ``extra``.

        Args:
            vector: 90 numbers in [0, 1] (e.g. the app's sliders).
            k (`int`, defaults to 10): how many neighbours, 1 to `MAX_NEIGHBOURS`.
            extra (`Population`, *optional*): more points to show and search (placed by `transform`).

        Returns:
            `Placement`.
        """
        layout = self.layout(extra)
        neighbours = self.neighbours(vector, k, layout)
        xy = self.place(vector)[0]
        return Placement(float(xy[0]), float(xy[1]), int(self.cluster_at(xy)[0]), neighbours,
                         self.params.metric, self.key, len(layout.population))


def project(fitted: ProjectionMap, vector, k: int = 10, extra: Population | None = None) -> Placement:
    """Coordinates, cluster and nearest neighbours of a vector on a fitted map (`ProjectionMap.project`)."""
    return fitted.project(vector, k, extra)


# ---------------------------------------------------------------------------- fitting and the cache


def cluster_embedding(embedding: np.ndarray) -> np.ndarray:
    """HDBSCAN clusters of the 2-D map (min cluster size 1% of the points, at least 5); -1 = none."""
    from sklearn.cluster import HDBSCAN

    if len(embedding) < 10:
        return np.full(len(embedding), -1, dtype=np.int32)
    size = max(5, len(embedding) // 100)
    return HDBSCAN(min_cluster_size=size, copy=True).fit_predict(embedding).astype(np.int32)


def _fit(population: Population, params: ProjectionParams):
    umap = import_umap()
    if len(population) <= params.n_neighbors:
        raise ValueError(f"a map needs more points than n_neighbors={params.n_neighbors}; "
                         f"the population has {len(population)}")
    X = population.vectors
    indices, dists = exact_knn(X, params.n_neighbors, params.metric)
    model = umap.UMAP(n_neighbors=params.n_neighbors, min_dist=params.min_dist, metric=params.metric,
                      random_state=params.random_state, n_epochs=params.n_epochs, n_jobs=1,
                      precomputed_knn=(indices, dists, ExactIndex(X, params.metric)))
    with warnings.catch_warnings():
        # umap warns that a search index which is not pynndescent's cannot transform; ExactIndex can.
        warnings.filterwarnings("ignore", message=r"(?s).*knn_search_index", category=UserWarning)
        embedding = model.fit_transform(X)
    return model, np.asarray(embedding, dtype=np.float32)


def fit_map(population: Population, params: ProjectionParams | None = None, *,
            cache_dir: str | os.PathLike | None = None, refit: bool = False) -> ProjectionMap:
    """The map of ``population``: read from the cache, else fitted (and cached).

    Args:
        population (`Population`): at least ``n_neighbors + 1`` points.
        params (`ProjectionParams`, *optional*): defaults to `ProjectionParams()`.
        cache_dir: the alignx cache folder (default `alignx.backbone.cache_root`); maps go in
            ``<cache_dir>/maps``.
        refit (`bool`): fit even when a cached map exists (and replace it).

    Returns:
        `ProjectionMap`, with ``from_cache`` and ``seconds`` (time to load or fit).
    """
    params = params or ProjectionParams()
    key = map_key(population, params)
    path = maps_dir(cache_dir) / f"{key}.pkl"
    start = time.perf_counter()
    if not refit and path.is_file():
        cached = _read(path, key)
        if cached is not None:
            return ProjectionMap(population, params, cached["model"], cached["embedding"], cached["clusters"], key,
                                 from_cache=True, seconds=time.perf_counter() - start)
    model, embedding = _fit(population, params)
    clusters = cluster_embedding(embedding)
    seconds = time.perf_counter() - start
    _write(path, {"format": FORMAT, "version": VERSION, "key": key, "params": dataclasses.asdict(params),
                  "umap": umap_version(), "model": model, "embedding": embedding, "clusters": clusters,
                  "fit_seconds": seconds})
    return ProjectionMap(population, params, model, embedding, clusters, key, from_cache=False, seconds=seconds)


def _read(path: Path, key: str) -> dict | None:
    import_umap()  # the pickle holds a umap.UMAP
    try:
        with open(path, "rb") as f:
            data = pickle.load(f)
        if data.get("format") != FORMAT or data.get("version") != VERSION or data.get("key") != key:
            raise ValueError("not this map")
        return data
    except Exception as exc:  # a corrupt or outdated file is refitted, never fatal
        log.warning("ignoring the cached map %s (%s); refitting", path, exc)
        return None


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------- the app's shared map


class MapCache:
    """The app's one read-only map, shared by all sessions, built in the background.

    `warm` starts a thread that imports umap (with numba's disk cache), reads or fits the map of
    the population given to `set_population`, and places one vector so that `transform`'s compiled
    code is loaded before any user asks. `peek` never waits (the app shows `status` meanwhile);
    `get` waits.

    Args:
        params (`ProjectionParams`, *optional*): the fit's parameters.
        cache_dir (*optional*): the alignx cache folder (default `alignx.backbone.cache_root`).
    """

    def __init__(self, params: ProjectionParams | None = None, cache_dir: str | os.PathLike | None = None):
        self.params, self.cache_dir = params or ProjectionParams(), cache_dir
        self._lock = threading.Lock()
        self._population: Population | None = None
        self._thread: threading.Thread | None = None
        self._map: ProjectionMap | None = None
        self._error: BaseException | None = None
        self.stage = "not started"
        self.timings: dict[str, float] = {}

    def set_population(self, population: Population) -> None:
        """The population to map (before `warm`; the app passes the generated users + examples)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("MapCache.set_population: the map is already being built")
            self._population = population

    @property
    def population(self) -> Population | None:
        return self._population

    @property
    def failed(self) -> bool:
        """Whether the build failed (`status` says why)."""
        return self._error is not None

    def warm(self) -> threading.Thread:
        """Start building the map in a background thread (once); returns the thread."""
        with self._lock:
            if self._population is None:
                raise RuntimeError("MapCache.warm: call set_population first")
            if self._thread is None:
                self._thread = threading.Thread(target=self._build, daemon=True, name="alignx-map-warm")
                self._thread.start()
            return self._thread

    def _build(self) -> None:
        try:
            self.stage = "importing umap-learn"
            start = time.perf_counter()
            import_umap()
            self.timings["import_umap_s"] = time.perf_counter() - start
            n = len(self._population)
            self.stage = f"loading or fitting the map of {n:,} users (a first fit takes a minute; then it is cached)"
            fitted = fit_map(self._population, self.params, cache_dir=self.cache_dir)
            self.timings["fit_s" if not fitted.from_cache else "load_s"] = fitted.seconds
            self.stage = "compiling transform"
            start = time.perf_counter()
            fitted.place(np.full(N_DIMS, 0.5))
            self.timings["first_transform_s"] = time.perf_counter() - start
            self._map = fitted
            self.stage = "ready"
            log.info("preference map ready: %s", self.timings)
        except BaseException as exc:  # shown by status(); get() raises it
            self._error = exc
            self.stage = "failed"
            log.exception("the preference map could not be built")

    def peek(self) -> ProjectionMap | None:
        """The map if it is ready, else None (starting the build if needed); never waits."""
        if self._map is None and self._error is None and self._population is not None:
            self.warm()
        return self._map

    def get(self, timeout: float | None = None) -> ProjectionMap:
        """The map, waiting for the build (started if needed).

        Raises:
            TimeoutError: not ready within ``timeout`` seconds. RuntimeError: the build failed.
        """
        if self._map is None:
            self.warm().join(timeout)
        if self._error is not None:
            raise RuntimeError(f"the preference map could not be built: {self._error}") from self._error
        if self._map is None:
            raise TimeoutError(f"the preference map is not ready yet ({self.stage})")
        return self._map

    def status(self) -> str:
        """One line for the app: what is happening, or what the map is."""
        if self._error is not None:
            return f"The map could not be built: {self._error}"
        fitted = self._map
        if fitted is None:
            return f"Preparing the map: {self.stage}…"
        how = (f"read from the cache in {fitted.seconds:.1f} s" if fitted.from_cache
               else f"fitted in {fitted.seconds:.0f} s")
        t = self.timings
        warm = f"; warm-up: import umap {t['import_umap_s']:.1f} s, first transform {t['first_transform_s']:.2f} s" \
            if {"import_umap_s", "first_transform_s"} <= set(t) else ""
        return f"UMAP of {len(fitted):,} users ({self.params.metric} metric), {how}{warm}."


__all__ = [
    "METRICS", "ExactIndex", "Layout", "MapCache", "Neighbour", "Placement", "ProjectionMap", "ProjectionParams",
    "cluster_embedding", "exact_knn", "fit_map", "import_umap", "map_key", "maps_dir", "numba_cache_dir",
    "project", "umap_version",
]
