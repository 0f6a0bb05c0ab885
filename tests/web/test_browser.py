"""Issue 6: the dashboard in headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.engine.test_lifecycle import enter_and_wait
from tests.web.conftest import PASSWORD

PNL_COL = 10  # the P&L column of #lots (Lot, Contract, Qty, DTE, Delta, OTM $, OTM %, ...)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def open_dashboard(browser: Any, url: str, width: int, height: int, lots: int) -> Any:
    """A page on the dashboard, once it shows the link READY and `lots` lot rows."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url + "/")
    expect(page.locator("#link-state")).to_have_text("READY", timeout=10_000)
    expect(page.locator("#lots tbody tr")).to_have_count(lots, timeout=10_000)
    return page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                    "(make test installs it with apt-get)")
def test_dashboard_shows_lots_and_pauses_after_login(
    sim: Any, start_engine: Any, web_server: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    eng = start_engine({"schedule": {"entry_times": ["15:00", "15:30"]},
                        "strategy": {"strike_selection": "otm_distance"}})
    sim.post("/market", {"spot": 601.0, "walk_sigma": 0.0})
    enter_and_wait(eng, 0)
    sim.post("/market", {"spot": 600.5})
    enter_and_wait(eng, 1)
    # Engine text with markup in it (issue 18): shown as text, never parsed as HTML.
    eng.engine.alerts.raise_alert("reconcile", '<img id="injected" src="x"> odd contract',
                                  severity="warning")
    web = web_server(eng.engine.cfg, refresh_seconds=0.5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = open_dashboard(browser, web.url, 1280, 900, lots=2)
            rows = page.locator("#lots tbody tr")
            pnl = [rows.nth(i).locator("td").nth(PNL_COL) for i in range(2)]
            for cell in pnl:
                expect(cell).not_to_have_text("–", timeout=10_000)
            assert pnl[0].inner_text() != pnl[1].inner_text()
            expect(page.locator("#alerts")).to_contain_text('<img id="injected" src="x">',
                                                            timeout=10_000)
            assert page.locator("#injected").count() == 0
            page.fill("#login-form input[name=password]", PASSWORD)
            page.click("#login-form button")
            expect(page.locator("#who")).to_have_text("operator")
            page.click("button[data-action=pause]")
            expect(page.locator("#paused-flag")).to_have_text("paused", timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    assert eng.book().is_paused().get(timeout=5) is True
