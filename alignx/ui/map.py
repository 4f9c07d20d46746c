"""The Map tab: the preference space as a UMAP scatter of a population (generated users, the example
personas, saved personas and annotators, a loaded benchmark's profiles), the current persona placed
on it by `transform` and following the sliders, its nearest neighbours in the 90-dim space, and a
click to load one as the current persona.

Gradio's plot reports no point clicks, so two ways lead from the map to the session:

- the neighbour table: clicking a row loads that neighbour (`gr.Dataframe.select`);
- a small JavaScript bridge (`CLICK_BRIDGE`, run by a `gr.HTML`): it listens to plotly's
  ``plotly_click`` on the map and sends the point's index to the server through the HTML
  component's ``click`` event; the point's details then show with a button to load it.

The same bridge carries the other direction: when only the vector changes (a slider moved), the
server sends the ★ and the neighbour rings as a few hundred bytes of JSON, restyled in place,
instead of redrawing the 5,000-point figure (about 1.3 MB). The map follows every change of the
session's vector through ``state.change``, whichever tab made it.

The map itself is the app's one shared `alignx.explore.projection.MapCache`, built in the
background at start-up; until it is ready the tab shows what it is doing, and draws the map as
soon as it is (a `gr.Timer` polls, then stops).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from alignx.compare import parse_vector
from alignx.explore import population as pop_lib
from alignx.explore.population import Point, Population, group_scores
from alignx.explore.projection import Layout, MapCache, Placement, ProjectionMap
from alignx.preferences import DIMENSIONS, GROUPS, NEUTRAL
from alignx.session import Session
from alignx.ui.common import MAX_SERVER_UPLOAD_BYTES, PRIVATE, QUIET, AppContext, View, shows_errors

MAP_QUEUE = dict(concurrency_id="map", concurrency_limit=1)  # redraws: read the session, write only map state
MAP_WAIT_S = 600  # the `project` API waits this long for a first fit
SOURCE_COLOURS = {"generated": "#9aa5b1", "example": "#e4572e", "store": "#0f9d9a", "annotator": "#5b8c00",
                  "benchmark": "#7b2cbf"}
CLUSTER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                   "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d")
NEIGHBOUR_HEADERS = ["#", "name", "source", "L1 distance", "strongest labels"]
HELP = (
    "Each dot is one user's 90-dim preference vector, laid out by UMAP (L1 metric): nearby dots prefer "
    "alike. Grey dots are generated from a seeded prior (a mixture of archetypes with sparse ternary "
    "directions); the example personas, your saved personas and any benchmark file you add are drawn "
    "larger. The ★ is the current persona, placed with UMAP's `transform` (no refit); it moves when the "
    "sliders move. Hover a dot for its strongest labels.")

# The JavaScript bridge between the plot and the server, run by a gr.HTML when it renders:
# - map -> server: a plotly_click on a dot sends its index through the HTML component's click event;
# - server -> map: a slider move sends only the star and the neighbour rings (the HTML component's
#   value, JSON), applied with Plotly.restyle, instead of the whole 5,000-point figure (about 1.3 MB).
#   An update older than the figure on screen (layout.meta.overlay) is not applied.
# It re-attaches when the plot element is replaced (e.g. a tab is re-rendered).
CLICK_BRIDGE = """
window.__alignxMapTrigger = trigger;
const parse = (text) => { try { return text ? JSON.parse(text) : null; } catch (e) { return null; } };
window.__alignxMapOverlay = parse(props.value) || window.__alignxMapOverlay;
const apply = () => {
  const gd = document.querySelector('#map-plot .js-plotly-plot');
  if (!gd || !gd.data || !gd.layout || !window.Plotly) return;
  if (typeof gd.on === 'function' && !gd.__alignxClick) {
    gd.__alignxClick = true;
    gd.on('plotly_click', (ev) => {
      const p = ev && ev.points && ev.points[0];
      if (!p || p.customdata === undefined || p.customdata === null) return;
      const index = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
      if (Number.isInteger(Number(index))) window.__alignxMapTrigger('click', {index: Number(index)});
    });
  }
  const o = window.__alignxMapOverlay;
  const shown = Math.max((gd.layout.meta && gd.layout.meta.overlay) || 0, gd.__alignxOverlay || 0);
  if (!o || o.version <= shown) return;
  const names = gd.data.map(t => t.name);
  const star = names.indexOf('current persona'), rings = names.indexOf('nearest neighbours');
  if (star < 0 || rings < 0) return;
  gd.__alignxOverlay = o.version;
  window.Plotly.restyle(gd, {x: [o.nx], y: [o.ny], customdata: [o.nc], text: [o.nt]}, [rings]);
  window.Plotly.restyle(gd, {x: [[o.x]], y: [[o.y]], hovertext: [[o.hover]]}, [star]);
};
watch('value', () => { window.__alignxMapOverlay = parse(props.value) || window.__alignxMapOverlay; apply(); });
clearInterval(window.__alignxMapTimer);
window.__alignxMapTimer = setInterval(apply, 300);
"""
BRIDGE_HTML = "<p>Click a dot to see it below; click a neighbour's row to load it.</p>"


@dataclass
class MapState:
    """One browser tab's map state (deep-copyable, in a `gr.State`).

    Args:
        figure (`tuple`): what the plot's figure shows (map, colouring, neighbours listed, extra
            points); () before the first draw.
        vector (`tuple`): the vector the ★ shows.
        version (`int`): of the last figure or ★ update sent to the page (the bridge applies newer ones only).
        benchmark (`Population`, *optional*): the profiles of the benchmark file this user added.
        extra (`Population`, *optional*): the points drawn after the fitted ones (store, then
            benchmark), so a clicked index finds its point.
        listed (`list[Point]`): the neighbours in the table, nearest first.
        selected (`Point`, *optional*): the point last clicked on the map.
    """

    figure: tuple = ()
    vector: tuple = ()
    version: int = 0
    benchmark: Population | None = None
    extra: Population | None = None
    listed: list[Point] = field(default_factory=list)
    selected: Point | None = None


# ---------------------------------------------------------------------------- colouring and figure


def colour_choices() -> list[tuple[str, str]]:
    """The "Colour by" menu: source, cluster, each group's score, each dimension."""
    groups = [(f"Group score: {g}", f"group:{i}") for i, g in enumerate(GROUPS)]
    dims = [(f"Dimension {d.index}: {d.name}", f"dim:{d.index}") for d in DIMENSIONS]
    return [("Source", "source"), ("Cluster (HDBSCAN on the map)", "cluster"), *groups, *dims]


def colour_values(layout: Layout, colour: str) -> tuple[str, np.ndarray | list[str]]:
    """(title, values) for a colouring: categories (source, cluster) or numbers in [0, 1]."""
    kind, _, arg = colour.partition(":")
    if kind == "source":
        return "source", list(layout.population.sources)
    if kind == "cluster":
        return "cluster", [f"cluster {c}" if c >= 0 else "no cluster" for c in layout.clusters]
    if kind == "group" and arg.isdigit() and int(arg) < len(GROUPS):
        group = GROUPS[int(arg)]
        return f"{group} (strength)", group_scores(layout.population.vectors)[group]
    if kind == "dim" and arg.isdigit() and int(arg) < len(DIMENSIONS):
        d = DIMENSIONS[int(arg)]
        return f"{d.index}. {d.name}", layout.population.vectors[:, d.index]
    raise ValueError(f"Colour by: unknown choice {colour!r}; pick one from the menu.")


def hover_texts(layout: Layout, title: str, values, indices=None) -> list[str]:
    """Hover texts: name, source, cluster and strongest labels (and the colouring's value)."""
    pop, numeric = layout.population, not isinstance(values, list)
    texts = []
    for i in range(len(pop)) if indices is None else indices:
        cluster, labels = int(layout.clusters[i]), layout.labels[i]
        text = f"<b>{pop.names[i]}</b><br>{pop.sources[i]}{f' · cluster {cluster}' if cluster >= 0 else ''}<br>"
        text += "<br>".join(labels) if labels else "(no preference)"
        if numeric:
            text += f"<br>{title}: {float(values[i]):.2f}"
        texts.append(text)
    return texts


def star_hover(current_labels) -> str:
    return "<b>Current persona</b><br>" + ("<br>".join(current_labels) or "(no preference)")


def map_figure(layout: Layout, placement: Placement | None, colour: str, current_labels: list[str] = (),
               version: int = 0):
    """The plotly scatter: the population coloured by ``colour``, the neighbours ringed, and the
    current persona as a star. Every population point carries its layout index as ``customdata``;
    ``version`` goes in ``layout.meta.overlay`` (see `CLICK_BRIDGE`)."""
    import plotly.graph_objects as go

    title, values = colour_values(layout, colour)
    texts = hover_texts(layout, title, values)
    xy, n = layout.xy, len(layout.population)
    generated = np.array([s == "generated" for s in layout.population.sources])
    size = np.where(generated, 5, 11)
    line = np.where(generated, 0.0, 1.2)
    index = np.arange(n)
    fig = go.Figure()

    def scatter(mask, name, **marker):
        rows = index[mask]
        return go.Scatter(x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=name, customdata=rows,
                          text=[texts[i] for i in rows], hovertemplate="%{text}<extra></extra>",
                          marker=dict(size=size[rows], line=dict(width=line[rows], color="#222"), **marker))

    if isinstance(values, list):  # categories: one trace each, so the legend names them
        palette = SOURCE_COLOURS if colour == "source" else {}
        cats = sorted(set(values), key=lambda c: (c == "no cluster", len(c), c))
        values_arr = np.array(values, dtype=object)
        for j, cat in enumerate(cats):
            colour_of = palette.get(cat) or ("#c8ccd0" if cat == "no cluster"
                                             else CLUSTER_COLOURS[j % len(CLUSTER_COLOURS)])
            fig.add_trace(scatter(values_arr == cat, cat, color=colour_of, opacity=0.75))
    else:
        scale = "RdBu" if colour.startswith("dim:") else "Viridis"
        for mask, name, show in ((generated, "generated users", True), (~generated, "named points", False)):
            if mask.any():
                fig.add_trace(scatter(mask, name, color=np.asarray(values)[mask], colorscale=scale, cmin=0.0,
                                      cmax=1.0, opacity=0.8, showscale=show,
                                      colorbar=dict(title=dict(text=title[:40]), thickness=12)))
    if placement is not None:
        nb = [m.index for m in placement.neighbours]
        fig.add_trace(go.Scatter(
            x=xy[nb, 0], y=xy[nb, 1], mode="markers", name="nearest neighbours", customdata=nb,
            text=[texts[i] for i in nb], hovertemplate="%{text}<extra>neighbour</extra>",
            marker=dict(size=17, symbol="circle-open", color="#111", line=dict(width=2.5))))
        fig.add_trace(go.Scatter(
            x=[placement.x], y=[placement.y], mode="markers+text", name="current persona", text=["you"],
            textposition="top center", hovertext=[star_hover(current_labels)],
            hovertemplate="%{hovertext}<extra></extra>",
            marker=dict(size=24, symbol="star", color="#ffd400", line=dict(width=1.8, color="#111"))))
    fig.update_layout(height=640, margin=dict(l=10, r=10, t=30, b=10), hovermode="closest", uirevision="map",
                      meta=dict(overlay=version),
                      legend=dict(orientation="h", y=1.02, x=0, yanchor="bottom"), plot_bgcolor="#fbfbfc",
                      xaxis=dict(showticklabels=False, title=None, zeroline=False),
                      yaxis=dict(showticklabels=False, title=None, zeroline=False))
    return fig


def star_update(layout: Layout, placement: Placement, colour: str, current_labels: list[str], version: int) -> str:
    """The ★ and neighbour rings for `CLICK_BRIDGE` to restyle, as JSON (a few hundred bytes)."""
    title, values = colour_values(layout, colour)
    nb = [m.index for m in placement.neighbours]
    return json.dumps({"version": version, "x": placement.x, "y": placement.y, "hover": star_hover(current_labels),
                       "nx": [float(layout.xy[i, 0]) for i in nb], "ny": [float(layout.xy[i, 1]) for i in nb],
                       "nc": nb, "nt": hover_texts(layout, title, values, nb)})


def neighbour_rows(placement: Placement) -> list[list]:
    return [[rank, nb.name, nb.source, round(nb.distance, 3), " · ".join(nb.labels)]
            for rank, nb in enumerate(placement.neighbours, 1)]


def placement_text(placement: Placement) -> str:
    where = f"cluster {placement.cluster}" if placement.cluster >= 0 else "no cluster"
    first = placement.neighbours[0]
    return (f"**Current persona** at ({placement.x:.2f}, {placement.y:.2f}), {where}. Nearest in the 90-dim "
            f"space: **{first.name}** ({first.source}, L1 {first.distance:.2f}). Click a row to load a neighbour.")


def point_text(point: Point) -> str:
    labels = pop_lib.strongest_labels(np.asarray(point.vector), 5)[0]
    persona = "has a persona (loading sets persona and sliders)" if point.persona else \
        "no persona (loading sets the sliders only)"
    return f"**Selected: {point.name}** ({point.source}; {persona}). Strongest: {', '.join(labels) or 'none'}."


# ---------------------------------------------------------------------------- library calls the handlers make


def extra_points(db_path: str, benchmark: Population | None) -> Population:
    """The points placed on the fitted map for this user: the store's personas and annotators,
    then the benchmark profiles they added."""
    return pop_lib.store_population(db_path) + (benchmark or pop_lib.empty())


def point_at(fitted: ProjectionMap, extra: Population | None, index: int) -> Point:
    """The point at a layout index: a fitted one, else one of the extra points as drawn."""
    n = len(fitted.population)
    if 0 <= index < n:
        return fitted.population.point(index)
    if extra is not None and 0 <= index - n < len(extra):
        return dataclasses.replace(extra.point(index - n), index=index)
    raise ValueError(f"There is no point #{index} on the map any more; redraw it and click again.")


def nudge_choices() -> list[tuple[str, int]]:
    return [(f"{d.index}. {d.name}", d.index) for d in DIMENSIONS]


# ---------------------------------------------------------------------------- the tab


def build_map(ctx: AppContext, state: gr.State, maps: MapCache) -> View:
    """The Map tab. ``maps`` is the app's shared `MapCache`; the tab gives it the population (the
    generated users and the example personas) and the app warms it at start-up."""
    if maps.population is None:
        maps.set_population(pop_lib.base_population(ctx.examples))
    start = ctx.defaults.vector
    first_dim = int(np.argmax(np.abs(np.asarray(start) - NEUTRAL)))
    gr.Markdown(HELP)
    with gr.Row():
        colour = gr.Dropdown(colour_choices(), value="source", label="Colour by", scale=3, elem_id="map-colour")
        k = gr.Slider(1, 30, value=10, step=1, label="Neighbours listed", scale=1, elem_id="map-k")
        redraw = gr.Button("Redraw (re-read the store)", scale=1, size="sm")
    status = gr.Markdown(maps.status(), elem_id="map-status")
    plot = gr.Plot(label="Preference map", show_label=False, elem_id="map-plot")
    bridge = gr.HTML("", html_template=BRIDGE_HTML, js_on_load=CLICK_BRIDGE, elem_id="map-click-bridge")
    with gr.Row():
        nudge_dim = gr.Dropdown(nudge_choices(), value=first_dim, label="Nudge a dimension", scale=2,
                                elem_id="map-nudge-dim")
        nudge = gr.Slider(0, 1, value=round(start[first_dim], 3), step=0.01, label="Its value (moves the ★)",
                          scale=3, elem_id="map-nudge")
    placed = gr.Markdown(elem_id="map-placement")
    neighbours = gr.Dataframe(headers=NEIGHBOUR_HEADERS, value=[], interactive=False, wrap=True,
                              column_widths=["6%", "26%", "12%", "12%", "44%"], elem_id="map-neighbours",
                              label="Nearest neighbours in the 90-dim space (click a row to load it)")
    with gr.Row():
        selected = gr.Markdown("No point selected on the map yet.", elem_id="map-selected")
        load_selected = gr.Button("Load the selected point", interactive=False, scale=0, elem_id="map-load-selected")
    with gr.Accordion("Add a benchmark file's profiles", open=False):
        gr.Markdown("An AlignX-format records file (.json, .jsonl or .parquet): each distinct profile (else "
                    "the record's Preference Direction, else its persona's directions) becomes a point, placed "
                    "on the map with `transform`.")
        with gr.Row():
            upload = gr.UploadButton("Upload a benchmark file", file_types=[".json", ".jsonl", ".parquet"])
            clear = gr.Button("Remove the benchmark points", size="sm")
    mstate = gr.State(MapState())
    timer = gr.Timer(1.0)

    draw_outputs = [plot, bridge, status, placed, neighbours, nudge, mstate, timer]
    drawn_already = [gr.skip()] * (len(draw_outputs) - 1) + [gr.Timer(active=False)]

    # Handlers
    def draw(session: Session, colour_key, n_neighbours, dim, nudge_value, ms: MapState, full: bool):
        """The whole figure (``full``, or the first time), else only the ★, rings, table and texts."""
        fitted = maps.peek()
        if fitted is None:  # still building (the timer polls), or failed (the timer stops)
            return [gr.skip(), gr.skip(), maps.status(), *[gr.skip()] * 4, gr.Timer(active=not maps.failed)]
        vector = tuple(session.vector)
        full = full or not ms.figure or ms.figure[0] != fitted.key
        if not full and ms.vector == vector:
            return drawn_already
        extra = extra_points(ctx.db_path, ms.benchmark) if full else ms.extra
        placement = fitted.project(session.vector, int(n_neighbours), extra)
        layout = fitted.layout(extra)
        current = pop_lib.strongest_labels(np.asarray(vector))[0]
        version = ms.version + 1
        if full:
            figure, star = map_figure(layout, placement, colour_key, current, version), gr.skip()
        else:
            figure, star = gr.skip(), star_update(layout, placement, colour_key, current, version)
        listed = [point_at(fitted, extra, nb.index) for nb in placement.neighbours]
        shown = (fitted.key, colour_key, int(n_neighbours), extra.fingerprint() if extra else "")
        ms = dataclasses.replace(ms, figure=shown if full else ms.figure, vector=vector, version=version,
                                 extra=extra, listed=listed)
        value = None if dim is None else round(session.vector[int(dim)], 3)  # the slider shows 3 decimals
        nudge_update = gr.skip() if value is None or abs(value - (nudge_value or 0.0)) < 5e-4 else value
        counts = " · ".join(f"{n:,} {s}" for s, n in layout.population.counts().items())
        return [figure, star, f"{maps.status()} Shown: {counts}.", placement_text(placement),
                neighbour_rows(placement), nudge_update, ms, gr.Timer(active=False)]

    @shows_errors
    def follow(session, colour_key, n_neighbours, dim, nudge_value, ms):
        return draw(session, colour_key, n_neighbours, dim, nudge_value, ms, full=False)

    @shows_errors
    def redraw_now(session, colour_key, n_neighbours, dim, nudge_value, ms):
        return draw(session, colour_key, n_neighbours, dim, nudge_value, ms, full=True)

    def set_dimension(session: Session, dim, value):
        if dim is None:
            raise gr.Error("Pick a dimension to nudge first.", print_exception=False)
        vector = list(session.vector)
        vector[int(dim)] = float(value)
        return session.copy(vector=vector)

    def show_dimension(session: Session, dim):
        return gr.skip() if dim is None else round(session.vector[int(dim)], 3)

    @shows_errors
    def load_row(session: Session, ms: MapState, evt: gr.SelectData):
        row = evt.row_value or []
        if not row or not str(row[0]).isdigit() or not 1 <= int(row[0]) <= len(ms.listed):
            raise ValueError("That row is not a neighbour any more; wait for the table to refresh and click again.")
        point = ms.listed[int(row[0]) - 1]
        gr.Info(f"Loaded {point.name!r} ({point.source}) as the current persona.")
        return pop_lib.with_point(session, point)

    @shows_errors
    def select_point(ms: MapState, evt: gr.EventData):
        fitted = maps.peek()
        index = getattr(evt, "_data", {}).get("index") if evt is not None else None
        if fitted is None or not isinstance(index, int):
            raise ValueError("The map is not ready yet; click again in a moment.")
        point = point_at(fitted, ms.extra, index)
        return dataclasses.replace(ms, selected=point), point_text(point), gr.update(interactive=True)

    @shows_errors
    def load_point(session: Session, ms: MapState):
        if ms.selected is None:
            raise ValueError("Click a point on the map first.")
        gr.Info(f"Loaded {ms.selected.name!r} ({ms.selected.source}) as the current persona.")
        return pop_lib.with_point(session, ms.selected)

    @shows_errors
    def add_benchmark(ms: MapState, file):
        path = Path(getattr(file, "name", file) if file is not None else "")
        if file is None or not path.is_file():
            raise ValueError("No file was uploaded.")
        if path.stat().st_size > MAX_SERVER_UPLOAD_BYTES:
            raise ValueError(f"{path.name} is larger than {MAX_SERVER_UPLOAD_BYTES // 2**20} MB; upload a smaller "
                             "file, or place its profiles with the library (`alignx.explore.projection`).")
        bench = pop_lib.benchmark_population(path)
        gr.Info(f"Placing {len(bench):,} distinct profiles from {path.name} on the map.")
        return dataclasses.replace(ms, benchmark=bench)

    @shows_errors
    def project(vector: str, k: int = 10) -> dict:
        """Place a preference vector on the preference map (UMAP `transform`, no refit) and find its
        nearest neighbours in the 90-dim space (L1), among the generated users, the example personas
        and the store's saved personas and annotators.

        Args:
            vector: 90 numbers in [0, 1], as a JSON list.
            k: how many nearest neighbours to return (1 to 100).

        Returns:
            {"x", "y", "cluster", "neighbours": [{"index", "name", "source", "distance", "x", "y",
            "labels"}], "metric", "map_key", "population"}
        """
        if not isinstance(vector, str) or not vector.strip():
            raise ValueError("Vector: pass a JSON list of 90 numbers in [0, 1].")
        v = parse_vector(vector)
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not float(k).is_integer():
            raise ValueError(f"k: expected a whole number from 1 to 100, got {k!r}")
        try:
            fitted = maps.get(timeout=MAP_WAIT_S)
        except (TimeoutError, RuntimeError) as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        return fitted.project(v, int(k), pop_lib.store_population(ctx.db_path)).to_dict()

    # Register listeners
    draw_inputs = [state, colour, k, nudge_dim, nudge, mstate]
    state.change(follow, draw_inputs, draw_outputs, trigger_mode="always_last", api_visibility="private",
                 show_progress="hidden", **MAP_QUEUE)
    timer.tick(follow, draw_inputs, draw_outputs, api_visibility="private", show_progress="hidden", **MAP_QUEUE)
    for event in (colour.input, k.release, redraw.click):
        event(redraw_now, draw_inputs, draw_outputs, api_visibility="private", show_progress="hidden", **MAP_QUEUE)
    nudge_dim.input(show_dimension, [state, nudge_dim], nudge, **QUIET)
    upload.upload(add_benchmark, [mstate, upload], mstate, **PRIVATE).success(
        redraw_now, draw_inputs, draw_outputs, api_visibility="private", **MAP_QUEUE)
    clear.click(lambda ms: dataclasses.replace(ms, benchmark=None), mstate, mstate, **QUIET).success(
        redraw_now, draw_inputs, draw_outputs, api_visibility="private", **MAP_QUEUE)
    bridge.click(select_point, mstate, [mstate, selected, load_selected], **PRIVATE)
    reloads = [
        neighbours.select(load_row, [state, mstate], state, **PRIVATE),
        load_selected.click(load_point, [state, mstate], state, **PRIVATE),
        # The ★ follows through state.change; the reload refills the Preferences sliders too.
        nudge.input(set_dimension, [state, nudge_dim, nudge], state, trigger_mode="always_last",
                    show_progress="hidden", **PRIVATE),
    ]

    return View(reloads=reloads, components={"project": project})


__all__ = ["CLICK_BRIDGE", "MapState", "build_map", "colour_choices", "map_figure", "star_update"]
