"""The Annotate tab in a real browser (Playwright driving Debian's chromium, headless).

Annotates three items of the shipped queue with keyboard shortcuts (a, b, t) on responses the
embedded model generates, undoes the last one with u, and exports the choices as AlignX JSONL:
the file holds the two A / B preferences, with the texts that were on screen. Screenshots go to
tests/artifacts/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_browser import ARTIFACTS, CHROMIUM, page, textarea, wait_until  # noqa: F401 (the page fixture)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium (make setup-dev installs it)")

NAME = "keyboard tester"


def judged(page) -> int:
    """The number of items judged, read from the progress line."""
    match = re.search(r"(\d+) of \d+ items judged", page.locator("#annot-progress").inner_text())
    return int(match.group(1)) if match else -1


def shown_item(page) -> int:
    """The position of the item on screen (0 while the next one is loading)."""
    match = re.search(r"item (\d+) of \d+", page.locator("#annot-progress").inner_text())
    return int(match.group(1)) if match else 0


def shown_pair(page) -> tuple[str, str, str]:
    return (page.locator("#annot-prompt").inner_text(), textarea(page, "annot-text-a").input_value(),
            textarea(page, "annot-text-b").input_value())


def test_annotate_three_items_with_keys_undo_and_export(page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.get_by_role("tab", name="Annotate").click()
    page.locator("#annot-name input, #annot-name textarea").first.fill(NAME)
    page.get_by_text("Study settings: how the two responses are made").click()
    tokens = page.locator("#annot-max-new input[type=number]")
    tokens.fill("8")
    tokens.press("Enter")
    page.locator("#annot-start").click()
    wait_until(lambda: shown_item(page) == 1, timeout=240, what="the first pair")

    seen = []
    for n, key in enumerate(["a", "b", "t"], start=1):
        prompt, a, b = shown_pair(page)
        seen.append((prompt, a, b))
        page.locator("body").click(position={"x": 5, "y": 5})  # focus out of any text box
        page.keyboard.press(key)
        wait_until(lambda: judged(page) == n, timeout=60, what=f"choice {n} to be saved")
        wait_until(lambda: shown_item(page) == n + 1, timeout=240, what=f"item {n + 1}")
    assert "Saved" in page.locator("#annot-status").inner_text()
    page.screenshot(path=str(ARTIFACTS / "annotate.png"))

    # u undoes the tie on item 3, which comes back with the same two texts in the same order.
    page.keyboard.press("u")
    wait_until(lambda: judged(page) == 2, timeout=60, what="the undo")
    assert "Undid" in page.locator("#annot-status").inner_text()
    wait_until(lambda: shown_item(page) == 3, timeout=120, what="item 3 to come back")
    assert shown_pair(page) == seen[2]

    # Keys typed in the rationale box are text, not choices.
    rationale = textarea(page, "annot-rationale")
    rationale.fill("")
    rationale.press_sequentially("ab")
    assert judged(page) == 2 and rationale.input_value() == "ab"
    rationale.fill("")

    # Export: the two A / B preferences, with the texts that were on screen.
    page.get_by_text("Export and agreement").click()
    page.locator("#annot-export").click()
    link = page.locator("#annot-export-file a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    records = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    mine = [r for r in records if r["Annotation"]["annotator"] == NAME]
    assert [r["Annotation"]["choice"] for r in mine] == ["A", "B"]
    (p1, a1, b1), (p2, a2, b2) = seen[:2]
    assert (mine[0]["chosen"], mine[0]["rejected"]) == (a1, b1)
    assert (mine[1]["chosen"], mine[1]["rejected"]) == (b2, a2)
    assert mine[0]["prompt"] in p1 and mine[1]["prompt"] in p2
    assert "outdoor" in mine[0]["Demographic Information"].lower() or mine[0]["User-Generated Content"]
    page.locator("#annot-agree").click()  # agreement needs a second annotator: a clear note, no error
    page.get_by_text("Agreement needs at least two annotators").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "annotate-export.png"))
