"""Security in a real browser (Playwright driving /usr/bin/chromium, headless, like tests/test_browser.py).

A persona whose texts hold ``<script>`` and ``<img onerror=...>`` is uploaded on the Persona tab:
every place that shows it (demographics box, UGC table, persona JSON) shows the markup as text, no
element is injected, and no script runs (``window.__pwned`` stays unset). The Annotate tab's
"Your data" notice says what is stored.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from alignx import privacy

from test_browser import CHROMIUM, page, textarea, wait_until  # noqa: F401 (the page fixture)

XSS_PERSONA = Path(__file__).parent / "fixtures" / "bad" / "xss_persona.json"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed at /usr/bin/chromium")


def test_persona_markup_is_shown_as_text_and_never_runs(page):
    persona = json.loads(XSS_PERSONA.read_text())
    demographics = persona["Demographic Information"]
    comment = persona["User-Generated Content"][0]["comment"]
    page.get_by_role("tab", name="Persona").click()
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Upload persona JSON").click()
    chooser.value.set_files(str(XSS_PERSONA))
    wait_until(lambda: textarea(page, "demographics").input_value() == demographics, what="the uploaded persona")
    time.sleep(1.0)  # an injected <img src=x onerror=...> would have fired by now

    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("script", has_text="__pwned").count() == 0
    assert page.locator("b", has_text="bold?").count() == 0  # the UGC prompt "<b>bold?</b>" is not markup
    # the UGC table's cells show the markup as text
    assert page.get_by_text(comment, exact=True).filter(visible=True).count() >= 1
    assert page.get_by_text("<b>bold?</b>", exact=True).filter(visible=True).count() >= 1
    page.get_by_text("Persona's own direction, and the persona as AlignX JSON").click()
    wait_until(lambda: "__pwned=1" in page.locator("#persona-json").inner_text(), what="the persona JSON")
    assert page.evaluate("window.__pwned") is None


def test_your_data_notice_is_on_the_annotate_tab(page):
    page.get_by_role("tab", name="Annotate").click()
    page.get_by_text("Your data: what is stored, export it, delete it").click()
    notice = page.locator("#privacy-notice")
    wait_until(lambda: notice.is_visible(), what="the privacy notice")
    text = notice.inner_text()
    assert "What is stored, and where." in text and "sensitive traits" in text and "analytics are off" in text
    assert page.locator("#export-my-data").is_visible() and page.locator("#delete-my-data").is_visible()
    assert privacy.NOTICE.startswith("**What is stored")
