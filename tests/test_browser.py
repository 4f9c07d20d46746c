"""The app in a real browser: Playwright driving Debian's chromium (headless).

Loads an example persona, moves a slider with the keyboard and sees the PBA profile change, runs a
comparison and sees three non-empty streamed outputs, and checks that bad input gets a visible
message. Screenshots go to tests/artifacts/ (gitignored); the README's screenshot is one of them.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest

from appserver import app_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian chromium is not installed at /usr/bin/chromium (make setup-dev installs it)")


@contextlib.contextmanager
def browser_page(url: str, height: int = 1000):
    """A page of headless Debian chromium (Playwright) opened on ``url``; the browser closes on exit."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height}, accept_downloads=True)
            page.set_default_timeout(60_000)
            page.goto(url)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with browser_page(app_server(tmp_path_factory.getbasetemp() / "app").url) as page:
        page.get_by_role("tab", name="Persona").wait_for()
        yield page


def textarea(page, elem_id: str):
    return page.locator(f"#{elem_id} textarea").first


def wait_until(predicate, timeout: float = 60, what: str = "condition") -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.perf_counter() - start


def test_load_example_move_slider_compare(page):
    ARTIFACTS.mkdir(exist_ok=True)

    # 1. Load an example persona on the Persona tab.
    page.locator("#example-persona input").click()
    page.get_by_role("option", name="Teen gamer").click()
    page.locator("#load-example").click()
    wait_until(lambda: "sixteen-year-old" in textarea(page, "demographics").input_value(), what="the persona")
    assert page.get_by_text("valorant").first.is_visible()

    # 2. Its directions set the sliders; the profile preview is the exact PBA text.
    page.get_by_role("tab", name="Preferences").click()
    preview = textarea(page, "profile-preview")
    wait_until(lambda: "Likes gaming" in preview.input_value(), what="the persona's profile")
    before = preview.input_value()
    assert "High Neuroticism" not in before

    # 3. Move slider 2 (Neuroticism) to its maximum with the keyboard: it now reads positive.
    slider = page.locator("#dim-2 input[type=range]")
    slider.focus()
    slider.press("End")
    wait_until(lambda: "High Neuroticism" in preview.input_value(), what="the profile to change")
    assert preview.input_value() != before
    assert "positive" in page.locator("#dim-2").inner_text()
    page.screenshot(path=str(ARTIFACTS / "preferences.png"))

    # 4. The name filter shows only matching sliders.
    query = page.locator("#slider-filter textarea")
    query.press_sequentially("fashion")  # typed, so the box fires its input events
    wait_until(lambda: not page.locator("#dim-2").is_visible(), what="the filter")
    assert page.locator("#dim-89").is_visible()
    query.press("Control+a")
    query.press("Backspace")
    wait_until(lambda: page.locator("#dim-2").is_visible(), what="the filter to clear")

    # 5. Compare: three columns stream from one batch.
    page.get_by_role("tab", name="Compare").click()
    tokens = page.locator("#max-new-tokens input[type=number]")
    tokens.fill("24")
    tokens.press("Enter")
    outputs = [textarea(page, f"out-{m}") for m in ("ica", "pba", "universal")]
    page.locator("#run-compare").click()
    first = wait_until(lambda: any(o.input_value().strip() for o in outputs), timeout=240, what="a first token")
    done = wait_until(lambda: "done in" in page.locator("#compare-status").inner_text(), timeout=240,
                      what="the comparison to finish")
    texts = [o.input_value() for o in outputs]
    assert all(t.strip() for t in texts), texts
    print(f"\nbrowser: click -> first token on screen {first:.2f} s, -> done {first + done:.2f} s")
    page.locator("#compare-status").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "app.png"))

    # The exact prompts: PBA's carries the changed profile, ICA's the raw persona.
    page.get_by_text("Exact prompts each method received").click()
    assert "High Neuroticism" in textarea(page, "prompt-pba").input_value()
    assert "valorant" in textarea(page, "prompt-ica").input_value()

    # The session remembers the comparison: export it and read it back.
    page.get_by_role("tab", name="Session").click()
    page.get_by_role("button", name="Export session").click()
    with page.expect_download() as download:
        page.locator("#session-file a").first.click()
    data = json.loads(Path(download.value.path()).read_text())
    assert [data["outputs"][m] for m in ("ica", "pba", "universal")] == texts
    assert data["vector"][2] == 1.0 and data["generation"]["max_new_tokens"] == 24


def test_bad_input_gets_a_visible_message(page):
    page.get_by_role("tab", name="Preferences").click()
    page.get_by_text("The vector as JSON").click()
    box = page.get_by_label("Paste a vector (a JSON list of 90 numbers in [0, 1])")
    box.fill("[0.5, 2]")
    page.get_by_role("button", name="Set the sliders to this vector").click()
    page.get_by_text("Vector: expected 90 values, got 2").first.wait_for()
    time.sleep(0.5)  # let the toast finish sliding in
    page.screenshot(path=str(ARTIFACTS / "error.png"))
    # The page keeps working afterwards.
    page.locator("#reset").click()
    preview = textarea(page, "profile-preview")
    wait_until(lambda: preview.input_value().startswith("Older, Male, Low Neuroticism"), what="the reset profile")


def test_store_and_session_round_trips(page, tmp_path):
    page.get_by_role("tab", name="Persona").click()
    demo = textarea(page, "demographics")
    page.locator("#example-persona input").click()
    page.get_by_role("option", name="Outdoor guide").click()
    page.locator("#load-example").click()
    wait_until(lambda: "mountain guide" in demo.input_value(), what="the outdoor guide")

    # Save in the SQLite store, load something else, load it back by name.
    page.get_by_label("Save as").fill("Guide copy")
    page.get_by_role("button", name="Save to store").click()
    page.get_by_text("Saved persona 'Guide copy' in the store.").first.wait_for()
    page.locator("#example-persona input").click()
    page.get_by_role("option", name="Retired engineer").click()
    page.locator("#load-example").click()
    wait_until(lambda: "electrical engineer" in demo.input_value(), what="the retired engineer")
    page.locator("#saved-personas input").click()
    page.get_by_role("option", name="Guide copy").click()
    page.get_by_role("button", name="Load", exact=True).click()
    wait_until(lambda: "mountain guide" in demo.input_value(), what="the saved persona")

    # Export the session, edit the file, import it: persona, sliders and prompt follow.
    page.get_by_role("tab", name="Session").click()
    page.get_by_role("button", name="Export session").click()
    link = page.locator("#session-file a").first
    with page.expect_download() as download:
        link.click()
    data = json.loads(Path(download.value.path()).read_text())
    assert data["format"] == "alignx-session" and "mountain guide" in data["persona"]["Demographic Information"]
    data["prompt"], data["vector"] = "Shared prompt", [0.5] * 89 + [1.0]  # "Likes fashion"
    shared = tmp_path / "shared-session.json"
    shared.write_text(json.dumps(data))
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import session").click()
    chooser.value.set_files(str(shared))
    page.get_by_text("Session imported").first.wait_for()
    page.get_by_role("tab", name="Preferences").click()
    wait_until(lambda: textarea(page, "profile-preview").input_value() == "Likes fashion", what="the imported vector")
    page.get_by_role("tab", name="Compare").click()
    wait_until(lambda: textarea(page, "prompt").input_value() == "Shared prompt", what="the imported prompt")

    # A file that is not a session gets a clear message.
    bad = tmp_path / "not-a-session.json"
    bad.write_text('{"prompt": "x"}')
    page.get_by_role("tab", name="Session").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Import session").click()
    chooser.value.set_files(str(bad))
    page.get_by_text("this is not an alignx session file").first.wait_for()
