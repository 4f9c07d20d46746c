"""The Map tab in a real browser: Playwright driving Debian's chromium against `python app.py`.

Shows the map (a real plotly scatter of the app's 5,010 users), hovers the current persona, changes
the colouring, moves a slider and sees the ★ move, loads a neighbour from the table, and clicks a
dot on the map (the JavaScript bridge) to load an example persona. The `project` endpoint is called
through gradio_client on the same server. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import json

import pytest

from test_browser import ARTIFACTS, CHROMIUM, browser_page, textarea
from test_browser import wait_until as _wait_until

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium (make setup-dev installs it)")
STEP_S = 180  # generous: the suite shares 2 cores with the app server, the model load and chromium


def wait_until(predicate, timeout: float = STEP_S, what: str = "condition") -> float:
    return _wait_until(predicate, timeout=timeout, what=what)


MAP_READY_S = 900  # a first run fits the 5,010-point map and compiles numba's code; later runs read both

# gd._fullData: the traces as plotly drew them (numpy arrays arrive base64-encoded in gd.data).
TRACE = """(name) => {
  const gd = document.querySelector('#map-plot .js-plotly-plot');
  const t = gd && gd._fullData ? gd._fullData.find(t => t.name === name) : null;
  return t ? {x: Array.from(t.x), y: Array.from(t.y), text: Array.from(t.text || []),
              custom: Array.from(t.customdata || []), scale: !!(t.marker && t.marker.colorscale)} : null;
}"""
NAMES = "() => { const gd = document.querySelector('#map-plot .js-plotly-plot'); " \
        "return gd && gd._fullData ? gd._fullData.map(t => t.name) : []; }"
# Page coordinates of a data point, from plotly's own axes.
PIXEL = """([x, y]) => {
  const gd = document.querySelector('#map-plot .js-plotly-plot');
  const fl = gd._fullLayout, box = gd.getBoundingClientRect();
  return [box.left + fl._size.l + fl.xaxis.l2p(x), box.top + fl._size.t + fl.yaxis.l2p(y)];
}"""


# The example dot (but ``skip``) farthest in pixels from every other drawn point: a click there
# selects that dot alone, whatever layout this machine's UMAP produced.
CLEAREST_EXAMPLE = """(skip) => {
  const gd = document.querySelector('#map-plot .js-plotly-plot');
  const fl = gd._fullLayout, pts = [];
  gd._fullData.forEach((t, c) => {
    if (t.visible === false || !t.x) return;
    for (let k = 0; k < t.x.length; k++) pts.push([c, k, fl.xaxis.l2p(t.x[k]), fl.yaxis.l2p(t.y[k])]);
  });
  const ex = gd._fullData.findIndex(t => t.name === 'example');
  let best = -1, bestD = -1;
  for (const p of pts) {
    if (p[0] !== ex || (gd._fullData[ex].text[p[1]] || '').includes(skip)) continue;
    let d = Infinity;
    for (const q of pts) if (q !== p) d = Math.min(d, Math.hypot(p[2] - q[2], p[3] - q[3]));
    if (d > bestD) { bestD = d; best = p[1]; }
  }
  return best;
}"""


STAR_HOVER = """() => {
  const gd = document.querySelector('#map-plot .js-plotly-plot');
  const i = gd._fullData.findIndex(t => t.name === 'current persona');
  window.Plotly.Fx.hover(gd, [{curveNumber: i, pointNumber: 0}]);
}"""


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server.url, height=1100) as page:
        open_tab(page, "Map")
        wait_until(lambda: page.evaluate(TRACE, "current persona") is not None, timeout=MAP_READY_S,
                   what="the map to be drawn")
        yield page


def open_tab(page, name: str, timeout: float = 180) -> None:
    """Select a tab, retrying while a loading overlay covers the tab bar (the page may still be busy
    with start-up events on a loaded machine)."""
    tab = page.get_by_role("tab", name=name)

    def selected() -> bool:
        if tab.get_attribute("aria-selected") == "true":
            return True
        try:
            tab.click(timeout=5_000)
        except Exception:  # covered for now; try again
            return False
        return tab.get_attribute("aria-selected") == "true"

    wait_until(selected, timeout=timeout, what=f"the {name} tab")


def trace(page, name: str) -> dict | None:
    return page.evaluate(TRACE, name)


def listed(page) -> list[tuple[str, float]]:
    """The neighbour table's (name, L1 distance) rows."""
    cell = "#map-neighbours [data-testid='cell-{}-{}']"
    out = []
    rows = page.locator("#map-neighbours [data-testid^='cell-'][data-testid$='-0']").count()
    for r in range(rows):
        try:
            out.append((page.locator(cell.format(r, 1)).inner_text(timeout=5_000).strip(),
                        float(page.locator(cell.format(r, 3)).inner_text(timeout=5_000).strip())))
        except Exception:  # a row still rendering
            pass
    return out


def star(page) -> tuple[float, float]:
    t = trace(page, "current persona")
    return t["x"][0], t["y"][0]


def choose(page, elem_id: str, typed: str, option: str) -> None:
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(typed)
    page.get_by_role("option", name=option, exact=True).click()


def load_example(page, name: str, marker: str) -> None:
    open_tab(page, "Persona")
    page.locator("#example-persona input").click()
    page.get_by_role("option", name=name).click()
    page.locator("#load-example").click()
    wait_until(lambda: marker in textarea(page, "demographics").input_value(), what=f"the {name} persona")
    open_tab(page, "Map")


def test_map_shows_hovers_and_recolours(page):
    ARTIFACTS.mkdir(exist_ok=True)
    status = page.locator("#map-status").inner_text()
    assert "UMAP of 5,010 users" in status and "5,000 generated · 10 example" in status, status
    assert {"generated", "example", "nearest neighbours", "current persona"} <= set(page.evaluate(NAMES))
    assert len(trace(page, "generated")["x"]) == 5000
    # The default persona (Outdoor guide) is its own nearest neighbour, listed first.
    assert "Outdoor guide (example, L1 0.00)" in page.locator("#map-placement").inner_text()
    assert page.locator("#map-neighbours").get_by_text("Outdoor guide").first.is_visible()

    # Hovering the ★ shows the current persona's strongest labels. A saved copy of the same persona
    # (an earlier test may have stored one) sits exactly under the ★, and plotly then shows the
    # smaller marker's label: the same labels, so accept either header.
    page.locator("#map-plot").scroll_into_view_if_needed()
    hover = page.locator("#map-plot .hoverlayer")
    nudge = [0]

    def hovered() -> bool:  # move again each time: a redraw of the plot drops the hover label
        x, y = page.evaluate(PIXEL, list(star(page)))
        nudge[0] = 1 - nudge[0]
        page.mouse.move(x + nudge[0], y)
        return "Likes outdoors" in (hover.text_content() or "")

    wait_until(hovered, what="the hover label")
    page.screenshot(path=str(ARTIFACTS / "map.png"))
    # The ★'s own label, whatever lies under it (plotly's hover call on the star's trace).
    page.evaluate(STAR_HOVER)
    wait_until(lambda: "Current persona" in (hover.text_content() or ""), what="the star's hover label")
    assert "Likes outdoors" in hover.text_content()

    # Colour by a dimension: one continuous colour scale; then by cluster: one trace per cluster.
    choose(page, "map-colour", "humor", "Dimension 73: humor")
    wait_until(lambda: trace(page, "generated users") is not None, what="the dimension colouring")
    assert trace(page, "generated users")["scale"]
    assert "73. humor" in trace(page, "generated users")["text"][0]
    choose(page, "map-colour", "Cluster", "Cluster (HDBSCAN on the map)")
    wait_until(lambda: any(n.startswith("cluster ") for n in page.evaluate(NAMES)), what="the cluster colouring")
    page.screenshot(path=str(ARTIFACTS / "map-clusters.png"))
    choose(page, "map-colour", "Source", "Source")
    wait_until(lambda: trace(page, "generated") is not None, what="the source colouring")


FIGURE_VERSION = "() => document.querySelector('#map-plot .js-plotly-plot').layout.meta.overlay"


def test_the_star_follows_the_sliders(page):
    before, figure = star(page), page.evaluate(FIGURE_VERSION)
    open_tab(page, "Preferences")
    preview = textarea(page, "profile-preview")
    slider = page.locator("#dim-3 input[type=range]")  # extraversion
    slider.focus()
    slider.press("End")
    wait_until(lambda: "High Extraversion" in preview.input_value(), what="the profile to change")
    open_tab(page, "Map")
    wait_until(lambda: star(page) != before, what="the star to move")
    moved = star(page)
    # Only the star and the rings were sent and restyled, not the 5,000-point figure.
    assert page.evaluate(FIGURE_VERSION) == figure
    assert page.evaluate("() => document.querySelector('#map-plot .js-plotly-plot').__alignxOverlay") > figure

    # The Map tab's own slider moves it too, and the Preferences tab follows.
    choose(page, "map-nudge-dim", "humor", "73. humor")
    nudge = page.locator("#map-nudge input[type=range]")
    nudge.focus()
    nudge.press("End")
    wait_until(lambda: star(page) != moved, what="the star to move again")
    open_tab(page, "Preferences")
    wait_until(lambda: "Likes humor" in preview.input_value(), what="the Preferences tab to follow")
    open_tab(page, "Map")


def test_load_a_neighbour_from_the_table(page):
    open_tab(page, "Preferences")
    before = textarea(page, "profile-preview").input_value()
    open_tab(page, "Map")
    cell = page.locator("#map-neighbours [data-testid='cell-1-1']")  # the second-nearest neighbour's name
    name = cell.inner_text().strip()
    cell.click()
    page.get_by_text(f"Loaded '{name}'").first.wait_for()
    # The loaded point is now the current persona: listed at distance 0 (first, or after an
    # identical vector drawn before it, e.g. the example a saved copy was made from).
    wait_until(lambda: "L1 0.00" in page.locator("#map-placement").inner_text()
               and (name, 0.0) in listed(page), what="the map to follow")
    open_tab(page, "Preferences")
    wait_until(lambda: textarea(page, "profile-preview").input_value() != before, what="the sliders to change")
    open_tab(page, "Map")


def test_click_a_dot_on_the_map_to_load_its_persona(page):
    load_example(page, "Teen gamer", "sixteen-year-old")
    wait_until(lambda: "Teen gamer (example, L1 0.00)" in page.locator("#map-placement").inner_text(),
               what="the map to follow the persona")
    examples = trace(page, "example")
    page.locator("#map-plot").scroll_into_view_if_needed()
    i = page.evaluate(CLEAREST_EXAMPLE, "<b>Teen gamer</b>")
    name = examples["text"][i].split("<b>", 1)[1].split("</b>", 1)[0]
    page.mouse.click(*page.evaluate(PIXEL, [examples["x"][i], examples["y"][i]]))
    wait_until(lambda: f"Selected: {name}" in page.locator("#map-selected").inner_text(),
               what=f"the clicked dot ({name}) to be selected")
    page.locator("#map-load-selected").click()
    open_tab(page, "Persona")
    wait_until(lambda: "sixteen-year-old" not in textarea(page, "demographics").input_value(),
               what="the persona to change")
    open_tab(page, "Map")
    wait_until(lambda: f"{name} (example, L1 0.00)" in page.locator("#map-placement").inner_text(),
               what=f"the star on {name}")
    page.screenshot(path=str(ARTIFACTS / "map-loaded.png"))


def test_add_a_benchmark_files_profiles(page, tmp_path):
    from alignx.schema import Record, save_records

    path = tmp_path / "my-benchmark.jsonl"
    save_records([Record("p", "a", "b", profile="Likes humor, High Agreeableness"),
                  Record("q", "a", "b", profile="Likes humor, High Agreeableness"),
                  Record("r", "a", "b", profile="Dislikes humor, Low Agreeableness")], path)
    page.get_by_text("Add a benchmark file's profiles").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload a benchmark file").click()
    chooser.value.set_files(str(path))
    wait_until(lambda: trace(page, "benchmark") is not None, what="the benchmark points")
    assert "2 benchmark" in page.locator("#map-status").inner_text()
    texts = trace(page, "benchmark")["text"]
    assert any("Likes humor, High Agreeableness (2 records)" in t for t in texts)
    page.get_by_role("button", name="Remove the benchmark points").click()
    wait_until(lambda: trace(page, "benchmark") is None, what="the benchmark points to go")


def test_project_endpoint(server):
    from gradio_client import Client

    from alignx import personas
    from alignx.explore import population

    client = Client(server.url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert [p["parameter_name"] for p in api["/project"]["parameters"]] == ["vector", "k"]
    vector = personas.derive_vector(personas.load_examples()["teen-gamer"])
    out = client.predict(json.dumps(vector), 5, api_name="/project")
    assert set(out) >= {"x", "y", "cluster", "neighbours", "metric", "population"}
    assert out["metric"] == "manhattan" and out["population"] >= 5010 and len(out["neighbours"]) == 5
    assert out["neighbours"][0]["name"] == "Teen gamer" and out["neighbours"][0]["distance"] == 0
    assert out["neighbours"][0]["labels"] == population.strongest_labels(vector)[0]
    with pytest.raises(Exception, match="expected 90 values, got 2"):
        client.predict("[0.5, 0.5]", 5, api_name="/project")
