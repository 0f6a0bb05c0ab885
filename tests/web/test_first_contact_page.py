"""Issue 30 on the page, in headless Chromium: a read-only gateway is named on the link
card with IB's last refusal and its fix, and every time shown is on the engine's clock
(simulated in these tests: ManualClock at 10:00 ET), which the header says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.web.test_browser import ARGS, CHROMIUM, open_dashboard


def _seconds(hms: str) -> int:
    h, m, s = (int(x) for x in re.match(r"(\d\d):(\d\d):(\d\d) ET", hms).groups())  # type: ignore[union-attr]
    return h * 3600 + m * 60 + s


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                    "(make test installs it with apt-get)")
@pytest.mark.parametrize("sim", [{"read_only": True}], indirect=True)
def test_link_card_names_read_only_and_times_follow_the_engine_clock(
        sim: Any, start_engine: Any, web_server: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    eng = start_engine()
    web = web_server(eng.engine.cfg, refresh_seconds=0.5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = open_dashboard(browser, web.url, 1400, 1000, lots=0)
            expect(page.locator("#link-reason")).to_contain_text("read-only API",
                                                                 timeout=10_000)
            expect(page.locator("#link-refusal")).to_contain_text("IB 321 read only")
            expect(page.locator("#link-refusal")).to_contain_text("Fix: untick")
            expect(page.locator("#link-mdtype")).to_have_text("live")
            expect(page.locator("#clock-kind")).to_contain_text("simulated clock")
            # The engine's clock stands at 10:00:00 ET: the link's "since" (a wall-clock
            # stamp seconds ago) is shown on it, not at the machine's wall-clock time.
            expect(page.locator("#engine-clock")).to_have_text("10:00:00 ET")
            since = page.locator("#link-since").inner_text()
            assert abs(_seconds(since) - 10 * 3600) < 120, since
        finally:
            browser.close()
