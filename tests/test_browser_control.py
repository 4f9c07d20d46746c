"""The Controllability tab against a real `python app.py` (the server tests/appserver.py starts):
the ``/control`` endpoint through `gradio_client`, then a small sweep in chromium (Playwright) whose
report is downloaded. The screenshot goes to tests/artifacts/control.png."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_browser import ARTIFACTS, CHROMIUM, browser_page, textarea, wait_until


def test_control_endpoint(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/control"]
    assert [p["parameter_name"] for p in api["parameters"]] == [
        "persona", "vector", "dimensions", "values", "prompts", "methods", "pairs", "max_new_tokens", "seed", "joint"]
    vector = [0.5] * 90
    vector[0] = 1.0  # "Young"
    pairs = [{"prompt": "Name a fruit.", "chosen": "Banana, nature's smile!", "rejected": "Banana."}]
    status, effects, *plots, grid, files = client.predict(
        "", json.dumps(vector), ["Likes humor"], "0, 1", "Hi!", ["pba"], json.dumps(pairs), 8, 0, False,
        api_name="/control")
    assert status.startswith("Done in") and "of 1 pairs flip" in status
    assert [row[3] for row in effects["data"]] == [0.0, 1.0]  # one row per value
    assert len(grid["data"]) == 2 and all(row[5].strip() for row in grid["data"])
    assert {Path(f).name for f in files} >= {"report.html", "result.json", "grid.csv"}
    result = json.loads(Path(next(f for f in files if f.endswith("result.json"))).read_text())
    assert result["settings"]["vector"] == vector and result["settings"]["dimensions"] == [73]
    assert result["config"]["backbone"]["adapters"]  # the app's adapters are recorded
    with pytest.raises(Exception, match="Dimensions: unknown dimension 'Likes humour'"):
        client.predict("", "", ["Likes humour"], "0, 1", "Hi!", ["pba"], "", 8, 0, False, api_name="/control")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium "
                                                  "(make setup-dev installs it)")
def test_small_sweep_in_the_browser_and_download_the_report(server):
    ARTIFACTS.mkdir(exist_ok=True)
    with browser_page(server.url) as page:
        page.get_by_role("tab", name="Controllability").click()

        # A small sweep: the default dimension (humor), values 0 and 1, 8 new tokens, the persona's own pairs.
        values = textarea(page, "control-values")
        values.fill("0, 1")
        tokens = page.locator("#control-max-new-tokens input[type=number]")
        tokens.fill("8")
        tokens.press("Enter")
        page.get_by_text("Benchmark pairs (for the flip rate)").click()
        page.get_by_role("button", name="Use the persona's own pairs").click()
        wait_until(lambda: "chosen" in page.locator("#control-pairs").inner_text(), what="the persona's pairs")
        page.locator("#run-control").click()
        status = page.locator("#control-status")
        wait_until(lambda: "Done in" in status.inner_text(), timeout=300, what="the sweep to finish")
        assert "pairs flip" in status.inner_text()
        assert page.locator("#control-grid").get_by_text("positive").first.is_visible()
        page.locator("#control-plot-probes .js-plotly-plot").first.wait_for()
        page.locator("#control-plot-flips .js-plotly-plot").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "control.png"), full_page=True)

        # Download the standalone HTML report: it records what ran and how to rerun it.
        with page.expect_download() as download:
            page.locator('#control-report a[href*="report.html"]').first.click()
        html = Path(download.value.path()).read_text()
        assert "alignx · Preference sweep" in html and "Plotly.newPlot" in html
        assert "alignx control sweep --from-report" in html and "git commit" in html
        assert "SmolLM2-135M-Instruct" in html
