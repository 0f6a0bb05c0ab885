"""Issue 2: the same script with ib_async, a second real client library."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

ib_async = pytest.importorskip("ib_async")


def test_connect_quote_sell_exits_cancel_with_ib_async(sim: Any) -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())
    ib = ib_async.IB()
    ib.RequestTimeout = 5
    ib.connect("127.0.0.1", sim.port, clientId=77, timeout=5)
    try:
        (opt,) = ib.qualifyContracts(ib_async.Option("SPY", "20261201", 585, "P", "SMART"))
        t = ib.reqMktData(opt)

        def until(pred: Any, what: str) -> None:
            deadline = time.monotonic() + 5
            while not pred():
                assert time.monotonic() < deadline, what
                ib.sleep(0.02)

        until(lambda: t.bid == t.bid and t.bid > 0 and t.modelGreeks is not None, "quote")
        sale = ib.placeOrder(opt, ib_async.LimitOrder("SELL", 1, t.bid, orderRef="tb:async"))
        until(lambda: sale.orderStatus.status == "Filled" and sale.fills, "sale fill")
        tp = ib.placeOrder(
            opt, ib_async.LimitOrder("BUY", 1, round(t.bid * 0.4, 2), ocaGroup="a", ocaType=1)
        )
        sl = ib.placeOrder(
            opt, ib_async.StopOrder("BUY", 1, round(t.ask * 3, 2), ocaGroup="a", ocaType=1)
        )
        until(lambda: tp.orderStatus.status == sl.orderStatus.status == "Submitted", "exits")
        ib.cancelOrder(sl.order)
        until(lambda: sl.orderStatus.status == "Cancelled", "cancel")
        assert sale.order.orderRef == "tb:async"
        assert [o["order_ref"] for o in sim.get_state()["open_orders"]] == [""]
    finally:
        ib.disconnect()


def test_ib_async_sees_399_as_validation_error_and_the_order_still_fills() -> None:
    """Issue 13: ib_async marks a trade ValidationError on warning 399 (ib_insync leaves
    it PreSubmitted); the order is working at IB all the same and fills at the open."""
    from ibsim.harness import IbsimThread

    asyncio.set_event_loop(asyncio.new_event_loop())
    with IbsimThread(seed=5, tick_interval=0.02, now="2026-11-24T08:00:00-05:00") as sim:
        ib = ib_async.IB()
        ib.RequestTimeout = 5
        ib.connect("127.0.0.1", sim.port, clientId=78, timeout=5)
        try:
            (opt,) = ib.qualifyContracts(ib_async.Option("SPY", "20261201", 585, "P", "SMART"))

            def until(pred: Any, what: str) -> None:
                deadline = time.monotonic() + 5
                while not pred():
                    assert time.monotonic() < deadline, what
                    ib.sleep(0.02)

            sale = ib.placeOrder(opt, ib_async.MarketOrder("SELL", 1))
            until(lambda: sale.orderStatus.status == "ValidationError", "399 as a warning")
            assert any(e.errorCode == 399 for e in sale.log)
            assert [o["status"] for o in sim.get_state()["open_orders"]] == ["PreSubmitted"]
            sim.post("/clock", {"now": "2026-11-24T09:31:00-05:00"})
            until(lambda: sale.orderStatus.status == "Filled", "fill at the open")
        finally:
            ib.disconnect()
