"""Issue 13: trading sessions as IB applies them (regular hours by default)."""

from __future__ import annotations

from typing import Any

import pytest
from ib_insync import IB, LimitOrder, MarketOrder, Option, Stock, StopOrder

from ibsim.harness import IbsimThread
from tests.ibsim.conftest import connected, wait_ib

PRE_MARKET = "2026-11-24T08:00:00-05:00"


@pytest.fixture
def early() -> Any:
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=PRE_MARKET) as s:
        yield s


def warnings_of(ib: IB) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req, code, msg, c: seen.append((req, code, msg))
    return seen


def test_option_order_before_the_open_rests_with_399_then_fills_at_the_open(early: Any) -> None:
    with connected(early) as ib:
        seen = warnings_of(ib)
        (opt,) = ib.qualifyContracts(Option("SPY", "20261201", 585, "P", "SMART"))
        t = ib.reqMktData(opt)
        wait_ib(ib, lambda: t.bid > 0, what="quote")
        sale = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.bid - 0.05, 2)))
        wait_ib(ib, lambda: any(c == 399 for _r, c, _m in seen), what="399")
        req, _c, msg = next(x for x in seen if x[1] == 399)
        assert req == sale.order.orderId
        assert "will not be placed at the exchange until 2026-11-24 09:30:00 US/Eastern" in msg
        ib.sleep(0.3)  # a marketable limit, many ticks: still resting
        assert sale.orderStatus.status == "PreSubmitted" and sale.isActive()
        assert not sale.fills
        early.post("/clock", {"now": "2026-11-24T09:31:00-05:00"})
        wait_ib(ib, lambda: sale.orderStatus.status == "Filled", what="fill at the open")


def test_spy_outside_rth_trades_pre_market_only_with_the_flag(early: Any) -> None:
    with connected(early) as ib:
        seen = warnings_of(ib)
        (spy,) = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
        plain = ib.placeOrder(spy, MarketOrder("BUY", 10))
        flagged = ib.placeOrder(spy, MarketOrder("BUY", 10, outsideRth=True))
        wait_ib(ib, lambda: flagged.orderStatus.status == "Filled", what="extended-hours fill")
        wait_ib(ib, lambda: any(r == plain.order.orderId and c == 399 for r, c, _ in seen))
        assert plain.orderStatus.status == "PreSubmitted" and not plain.fills
        assert not any(r == flagged.order.orderId for r, _c, _m in seen)


def test_stops_do_not_trigger_after_the_close(early: Any) -> None:
    with connected(early, "2026-11-24T16:30:00-05:00") as ib:
        (opt,) = ib.qualifyContracts(Option("SPY", "20261201", 585, "P", "SMART"))
        t = ib.reqMktData(opt)
        wait_ib(ib, lambda: t.ask > 0, what="quote")
        stop = ib.placeOrder(opt, StopOrder("BUY", 1, round(t.ask * 0.5, 2)))  # through
        ib.sleep(0.3)
        assert stop.orderStatus.status == "PreSubmitted" and not stop.fills
        early.post("/clock", {"now": "2026-11-25T09:30:00-05:00"})
        wait_ib(ib, lambda: stop.orderStatus.status == "Filled", what="stop at the next open")


def test_half_day_closes_options_at_13_and_details_carry_the_hours(early: Any) -> None:
    with connected(early, "2026-11-27T13:05:00-05:00") as ib:  # day after Thanksgiving
        seen = warnings_of(ib)
        (opt,) = ib.qualifyContracts(Option("SPY", "20261204", 585, "P", "SMART"))
        [det] = ib.reqContractDetails(opt)
        assert det.liquidHours.startswith("20261127:0930-20261127:1300;20261128:CLOSED")
        assert det.tradingHours.startswith("20261127:0930-20261127:1300")
        assert det.timeZoneId == "US/Eastern"
        [spy] = ib.reqContractDetails(Stock("SPY", "SMART", "USD"))
        assert spy.tradingHours.startswith("20261127:0400-20261127:1700;")
        assert "20261130:0400-20261130:2000" in spy.tradingHours
        assert "20261130:0930-20261130:1600" in spy.liquidHours
        sale = ib.placeOrder(opt, MarketOrder("SELL", 1))
        wait_ib(ib, lambda: any(c == 399 for _r, c, _m in seen), what="399 after 13:00")
        assert "2026-11-30 09:30:00" in next(m for _r, c, m in seen if c == 399)
        assert sale.orderStatus.status == "PreSubmitted"


def test_an_oca_pair_held_for_the_open_fills_one_leg_only(early: Any) -> None:
    """Both legs of an OCA pair placed before the open rest PreSubmitted; at the open the
    first to fill cancels the other, which stays cancelled (the release of held orders
    revived it in the same pass and it filled too: found by the chaos soak)."""
    with connected(early) as ib:
        (opt,) = ib.qualifyContracts(Option("SPY", "20261201", 585, "P", "SMART"))
        t = ib.reqMktData(opt)
        wait_ib(ib, lambda: t.ask > 0, what="quote")
        legs = []
        for order in (LimitOrder("BUY", 1, round(t.ask + 1.0, 2)),  # marketable
                      StopOrder("BUY", 1, round(t.ask * 0.5, 2))):  # through
            order.ocaGroup, order.ocaType = "pair-1", 2
            legs.append(ib.placeOrder(opt, order))
        wait_ib(ib, lambda: all(x.orderStatus.status == "PreSubmitted" for x in legs),
                what="both legs held for the open")
        early.post("/clock", {"now": "2026-11-24T09:31:00-05:00"})
        wait_ib(ib, lambda: any(x.orderStatus.status == "Filled" for x in legs),
                what="a leg filled at the open")
        wait_ib(ib, lambda: any(x.orderStatus.status == "Cancelled" for x in legs),
                what="the other leg cancelled")
        ib.sleep(0.5)  # many ticks: the cancelled leg must not come back
        assert sorted(x.orderStatus.status for x in legs) == ["Cancelled", "Filled"]
        assert len(early.get_state()["executions"]) == 1
