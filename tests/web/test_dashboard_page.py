"""Issue 19: the dashboard a trader keeps open, in headless Chromium at 1400 and 390 px.

A real engine on ibsim with a lot, the real web app under waitress, Debian's chromium
driven by Playwright. Screenshots of both widths go to test-artifacts/."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from book.store import Store
from tests.engine.test_lifecycle import enter_and_wait
from tests.web.conftest import PASSWORD
from tests.web.test_browser import ARGS, ARTIFACTS, CHROMIUM, open_dashboard

LOT_COLS = ["Lot", "Contract", "Qty", "DTE", "Delta", "OTM $", "OTM %", "Entry", "Mid",
            "Mid age", "P&L", "% max profit", "to TP", "to SL", "Premium at risk"]
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
ET_TIME = re.compile(r"\d\d:\d\d:\d\d ET")


def _cell(page: Any, header: str) -> Any:
    return page.locator("#lots tbody tr").first.locator("td").nth(LOT_COLS.index(header))


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                    "(make test installs it with apt-get)")
def test_dashboard_for_a_trader_at_desk_and_phone_widths(
    sim: Any, start_engine: Any, web_server: Any
) -> None:
    from playwright.sync_api import expect, sync_playwright

    eng = start_engine({"strategy": {"strike_selection": "otm_distance"}})
    sim.post("/market", {"spot": 601.0, "walk_sigma": 0.0})
    lot = enter_and_wait(eng, 0)
    # Two end-of-day snapshots (one with open P&L): the equity curve has two points.
    side = Store(eng.engine.cfg.storage.path)
    side.snapshot_pnl("2026-11-20", 0.0, 120.0, 1)
    side.snapshot_pnl("2026-11-23", 0.0, -35.5, 1)
    side.close()
    web = web_server(eng.engine.cfg, refresh_seconds=0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # ---- desk: 1400 px --------------------------------------------------------
            page = open_dashboard(browser, web.url, 1400, 1000, lots=1)
            heads = page.locator("#lots thead th").all_inner_texts()
            assert heads[: len(LOT_COLS)] == LOT_COLS
            assert _cell(page, "Lot").inner_text() == str(lot.id)
            # Per lot: the figures are there as numbers once the lot's quote arrives.
            for col in ("DTE", "Delta", "OTM $", "OTM %", "% max profit", "to TP", "to SL",
                        "Premium at risk"):
                expect(_cell(page, col)).to_have_text(NUMBER, timeout=15_000)
            dte = int(_cell(page, "DTE").inner_text())
            assert 0 < dte < 200, dte
            assert -1 < float(_cell(page, "Delta").inner_text()) < 0  # a put's delta
            otm = float(_cell(page, "OTM $").inner_text())
            assert otm > 0  # sold out of the money
            assert abs(float(_cell(page, "OTM %").inner_text()) - otm / 601.0 * 100) < 1.0
            # Exchange time, labelled, everywhere a time is shown.
            expect(page.locator("#link-since")).to_have_text(ET_TIME)
            expect(page.locator("#engine-clock")).to_have_text(ET_TIME)
            expect(page.locator("#spy-age")).to_contain_text(" ET, ", timeout=10_000)
            expect(page.locator("#spy-age")).to_contain_text("s ago")
            expect(page.locator("#entry-slots")).to_contain_text(re.compile(r"\d\d:\d\d ET "))
            # The equity curve from the snapshots: two points, the line drawn.
            expect(page.locator("#chart circle.equity-point")).to_have_count(2, timeout=10_000)
            d = page.locator("#equity-line").get_attribute("d") or ""
            assert d.count("L") == 1, d
            expect(page.locator("#days tbody")).to_contain_text("2026-11-23")
            expect(page.locator("#days tbody")).to_contain_text("-35.50")
            # Logged out: the actions are disabled, with a hint.
            for action in ("enter_now", "pause", "kill_switch_off", "restart_gateway"):
                expect(page.locator(f"button[data-action={action}]")).to_be_disabled()
            expect(page.locator("#action-hint")).to_contain_text("Log in")
            page.screenshot(path=str(ARTIFACTS / "dashboard-1400.png"), full_page=True)
            page.fill("#login-form input[name=password]", PASSWORD)
            page.click("#login-form button")
            expect(page.locator("button[data-action=enter_now]")).to_be_enabled()
            expect(page.locator("#action-hint")).to_have_text("")
            # "Enter now" asks first; cancelling sends nothing.
            page.click("button[data-action=enter_now]")
            expect(page.locator("#confirm")).to_be_visible()
            expect(page.locator("#confirm-text")).to_contain_text("Sell")
            page.screenshot(path=str(ARTIFACTS / "dashboard-1400-confirm.png"))
            page.click("#confirm-no")
            expect(page.locator("#confirm")).to_be_hidden()
            expect(page.locator("#action-state")).to_have_text("enter_now cancelled")
            # "Kill switch off" asks too; confirmed, its outcome is shown.
            page.click("button[data-action=kill_switch_off]")
            expect(page.locator("#confirm")).to_be_visible()
            page.click("#confirm-yes")
            expect(page.locator("#action-state")).to_contain_text("kill_switch_off accepted",
                                                                  timeout=10_000)
            # Pause needs no confirmation; its outcome is shown.
            page.click("button[data-action=pause]")
            expect(page.locator("#confirm")).to_be_hidden()
            expect(page.locator("#action-state")).to_contain_text("pause accepted",
                                                                  timeout=10_000)
            page.close()

            # ---- phone: 390 px --------------------------------------------------------
            phone = browser.new_page(viewport={"width": 390, "height": 844},
                                     device_scale_factor=2, is_mobile=True, has_touch=True)
            phone.goto(web.url + "/")
            expect(phone.locator("#lots tbody tr")).to_have_count(1, timeout=10_000)
            expect(_cell(phone, "Delta")).to_have_text(NUMBER, timeout=15_000)
            # No horizontal scroll of the page; the wide tables scroll in their own box.
            width = phone.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"page is {width} px wide at 390"
            for sel in (".card", "#login-form button", "#link-state"):
                for box in (b for b in [phone.locator(sel).first.bounding_box()] if b):
                    assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (sel, box)
            table = phone.locator("#lots").bounding_box()
            wrap = phone.locator("#lots").locator("xpath=..")
            assert table and table["width"] > 390  # wider than the screen ...
            assert wrap.evaluate("e => getComputedStyle(e).overflowX") == "auto"  # ... in a box
            phone.screenshot(path=str(ARTIFACTS / "dashboard-390.png"), full_page=True)

            # ---- the engine stops: the banner says so, the figures are marked stale ----
            eng.engine.stop()
            expect(phone.locator("#banner")).to_be_visible(timeout=30_000)
            expect(phone.locator("#banner")).to_contain_text("engine unreachable")
            for sel in ("#link-state", "#link-age", "#spy-age", "#lots tbody td >> nth=0"):
                expect(phone.locator(sel)).to_have_class(re.compile("stale"))
            phone.screenshot(path=str(ARTIFACTS / "dashboard-390-unreachable.png"),
                             full_page=True)
        finally:
            browser.close()
