"""Issue 31: IB's refusals as a real gateway answers them, seen by an unmodified ib_insync
client: the code and IB's text, the id it is tied to, and nothing else changed."""

from __future__ import annotations

import contextlib
import math
import re
import time
from typing import Any

import pytest
from ib_insync import IB, LimitOrder, Stock

from ibsim import codes
from ibsim.harness import ControlError, IbsimThread
from tests.ibsim.conftest import NOW, client, put, wait_ib

Err = tuple[int, int, str]


def errors_of(ib: IB) -> list[Err]:
    seen: list[Err] = []
    ib.errorEvent += lambda req, code, msg, c: seen.append((req, code, msg))
    return seen


def codes_for(seen: list[Err], req_id: int) -> list[int]:
    return [c for r, c, _m in seen if r == req_id]


@pytest.fixture
def read_only_sim() -> Any:
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=NOW, read_only=True) as s:
        yield s


# ---- Read-Only API ---------------------------------------------------------------------


def test_read_only_refuses_orders_whatif_and_cancels_with_321_on_their_ids(
        read_only_sim: Any) -> None:
    sim = read_only_sim
    assert sim.get_state()["faults"]["read_only"] is True
    ib = client(sim, 1, readonly=True)  # as a user of a read-only gateway connects
    try:
        seen = errors_of(ib)
        opt, _t = put(ib)  # reads keep working: contract details, quotes
        assert ib.positions() == [] and ib.accountValues()
        trade = ib.placeOrder(opt, LimitOrder("SELL", 1, 1.05, orderRef="ro-1"))
        oid = trade.order.orderId
        wait_ib(ib, lambda: codes_for(seen, oid), what="321 on the order id")
        ((_r, code, msg),) = [e for e in seen if e[0] == oid]
        assert code == 321
        assert msg == "Error validating request.-'bN' : cause - The API interface is" \
                      " currently in Read-Only mode."
        assert trade.orderStatus.status == "Cancelled"  # ib_insync's reading of an error
        state = sim.get_state()
        assert state["open_orders"] == [] and state["executions"] == []

        whatif = ib.whatIfOrder(opt, LimitOrder("SELL", 1, 1.05))
        assert not whatif  # the request ended with its error, no margin figures
        assert [c for _r, c, _m in seen].count(321) == 2

        ib.client.cancelOrder(4242)  # an id ibsim never saw: still 321, not 10147
        wait_ib(ib, lambda: codes_for(seen, 4242), what="321 on the cancel")
        assert codes_for(seen, 4242) == [321]
        assert "Read-Only mode" in next(m for r, _c, m in seen if r == 4242)
    finally:
        ib.disconnect()


def test_read_only_refuses_the_open_orders_request_at_connect(read_only_sim: Any) -> None:
    """Without readonly=True, ib_insync's connect asks for open and completed orders: IB
    answers 321 on -1 with no end marker, and the connect waits out its timeout."""
    ib = IB()
    seen = errors_of(ib)
    ib.connect("127.0.0.1", read_only_sim.port, clientId=2, timeout=1)
    try:
        assert ib.isConnected()
        refused = [e for e in seen if e[1] == 321]
        assert len(refused) == 2 and all(r == -1 for r, _c, _m in refused)
        assert all(m == codes.read_only("bY") for _r, _c, m in refused)
        assert ib.openTrades() == []
    finally:
        ib.disconnect()


def test_read_only_on_and_off_through_the_control_api(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    live = ib.placeOrder(spy, LimitOrder("BUY", 1, 500.0, orderRef="ro-live"))
    wait_ib(ib, lambda: live.orderStatus.status == "Submitted")
    assert sim.post("/fault/read_only", {"on": True}) == {"read_only": True}
    assert sim.get_state()["faults"]["read_only"]
    ib.cancelOrder(live.order)
    oid = live.order.orderId
    wait_ib(ib, lambda: codes_for(seen, oid), what="321 on the cancel")
    assert codes_for(seen, oid) == [321]
    assert [o["order_id"] for o in sim.get_state()["open_orders"]] == [oid]  # still working
    with pytest.raises(ControlError):
        sim.post("/fault/read_only", {"on": "yes"})
    with pytest.raises(ControlError):
        sim.post("/fault/read_only", {"on": False, "extra": 1})
    assert sim.get_state()["faults"]["read_only"]  # a bad request changed nothing
    sim.post("/fault/read_only", {"on": False})
    ib.cancelOrder(live.order)
    wait_ib(ib, lambda: sim.get_state()["open_orders"] == [], what="the cancel served")


# ---- market-data permissions -----------------------------------------------------------


def ticks_of(ib: IB) -> list[tuple[int, int]]:
    """(reqId, tickType) of every tick the client decoded."""
    seen: list[tuple[int, int]] = []

    def on(tickers: Any) -> None:
        for t in tickers:
            req = ib.wrapper.ticker2ReqId["mktData"].get(t, 0)
            seen.extend((req, tick.tickType) for tick in t.ticks)

    ib.pendingTickersEvent += on
    return seen


def an_option(ib: IB, strike: float = 585) -> Any:
    from ib_insync import Option

    from tests.ibsim.conftest import EXPIRY
    (opt,) = ib.qualifyContracts(Option("SPY", EXPIRY, strike, "P", "SMART"))
    return opt


def test_no_option_permission_answers_354_and_opens_no_line(sim: Any, connect: Any) -> None:
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "none"})
    assert sim.get_state()["faults"]["market_data"] == {"OPT": "none"}
    ib = connect()
    seen = errors_of(ib)
    opt = an_option(ib)
    t = ib.reqMktData(opt)
    req = ib.wrapper.ticker2ReqId["mktData"][t]
    wait_ib(ib, lambda: codes_for(seen, req), what="354")
    assert [(c, m) for r, c, m in seen if r == req] == [(354, codes.text(354))]
    assert codes.text(354).startswith("Requested market data is not subscribed. Check API")
    assert sim.get_state()["clients"][0]["subscriptions"] == 0
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    st = ib.reqMktData(spy)  # the stock keeps its live line
    wait_ib(ib, lambda: st.bid > 0, what="a live stock quote")
    ib.cancelMktData(opt)
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "live"})
    t = ib.reqMktData(opt)
    wait_ib(ib, lambda: t.bid > 0, what="the option quote once permitted")


def test_delayed_permission_streams_fifteen_minute_old_ticks_after_10167(
        sim: Any, connect: Any) -> None:
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "delayed"})
    ib = connect()
    seen = errors_of(ib)
    opt = an_option(ib)
    t = ib.reqMktData(opt)  # live data asked: 354, as IB answers without delayed enabled
    req = ib.wrapper.ticker2ReqId["mktData"][t]
    wait_ib(ib, lambda: codes_for(seen, req), what="354")
    assert codes_for(seen, req) == [354]
    ib.cancelMktData(opt)
    sim.post("/market", {"spot": 570.0})  # the market falls: the live put is dearer now
    live_ib = connect()
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "live"})
    lt = live_ib.reqMktData(an_option(live_ib))
    wait_ib(live_ib, lambda: lt.bid > 0, what="the live quote")
    live_bid = lt.bid
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "delayed"})
    ticks = ticks_of(ib)
    ib.reqMarketDataType(3)
    t = ib.reqMktData(opt)
    req = ib.wrapper.ticker2ReqId["mktData"][t]
    wait_ib(ib, lambda: t.bid > 0 and t.ask > 0, what="a delayed quote")
    assert [(c, m) for r, c, m in seen if r == req] == [(10167, codes.text(10167))]
    types = {tt for r, tt in ticks if r == req}
    assert {66, 67} <= types and not types & {1, 2, 4}  # delayed tick types only
    assert t.bid < live_bid - 1  # priced at the spot of fifteen minutes ago (600, not 570)


def test_competing_session_answers_10197_on_every_line_until_live(sim: Any,
                                                                   connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    opt = an_option(ib)
    t = ib.reqMktData(opt)
    wait_ib(ib, lambda: t.bid > 0, what="a live option quote")
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    st = ib.reqMktData(spy)
    req = ib.wrapper.ticker2ReqId["mktData"][t]
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "competing"})
    wait_ib(ib, lambda: codes_for(seen, req), what="10197 on the open line")
    assert [(c, m) for r, c, m in seen if r == req] == [
        (10197, "No market data during competing live session")]
    opt2 = an_option(ib, 580)
    t2 = ib.reqMktData(opt2)
    req2 = ib.wrapper.ticker2ReqId["mktData"][t2]
    wait_ib(ib, lambda: codes_for(seen, req2), what="10197 on a new line")
    ticks = ticks_of(ib)
    stock_req = ib.wrapper.ticker2ReqId["mktData"][st]
    sim.post("/market", {"spot": 590.0})  # a move that would tick every option line
    wait_ib(ib, lambda: any(r == stock_req for r, _tt in ticks), what="stock ticks")
    assert not [r for r, _tt in ticks if r in (req, req2)]  # the option lines are silent
    assert math.isnan(t2.bid)  # nothing ever came on the new line
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "live"})
    wait_ib(ib, lambda: t2.bid > 0 and 2104 in [c for _r, c, _m in seen], what="live again")


# ---- pacing ----------------------------------------------------------------------------

PACING = re.compile(r"Max rate of messages per second has been exceeded:max=50 rec=(\d+) \(1\)")


def test_past_50_messages_a_second_the_excess_gets_100(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    times: list[Any] = []
    ib.client.MaxRequests = 0  # ib_insync's own throttle off: a client that floods
    ib.wrapper.currentTime = lambda t: times.append(t)
    for _ in range(120):
        ib.client.reqCurrentTime()
    paced = lambda: [e for e in seen if e[1] == 100]  # noqa: E731
    wait_ib(ib, lambda: len(times) + len(paced()) == 120, what="every message answered")
    assert paced() and all(r == -1 and PACING.fullmatch(m) for r, _c, m in paced())
    ranks = sorted(int(PACING.fullmatch(m)[1]) for _r, _c, m in paced())
    assert ranks[0] == 51  # the 51st message of a second is the first refused
    assert ib.isConnected()  # one second over the limit is not yet a disconnect
    (mine,) = [c for c in sim.get("/stats")["clients"] if c["client_id"] == ib.client.clientId]
    assert mine["peak_rate"] >= 60 and mine["refused"] == len(paced())
    assert not mine["disconnected_for_pacing"]


def test_a_throttled_client_is_never_paced(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    times: list[Any] = []
    ib.wrapper.currentTime = lambda t: times.append(t)
    for _ in range(70):  # ib_insync sends these at 45 a second
        ib.client.reqCurrentTime()
    wait_ib(ib, lambda: len(times) == 70, timeout=10, what="every answer")
    assert 100 not in [c for _r, c, _m in seen]
    (mine,) = [c for c in sim.get("/stats")["clients"] if c["client_id"] == ib.client.clientId]
    assert mine["peak_rate"] <= 50


def test_a_sustained_excess_closes_the_socket(sim: Any, connect: Any) -> None:
    ib = connect()
    ib.client.MaxRequests = 0
    cid = ib.client.clientId
    deadline = time.monotonic() + 10
    while ib.isConnected() and time.monotonic() < deadline:
        for _ in range(40):
            ib.client.reqCurrentTime()
        with contextlib.suppress(ConnectionError):  # the gateway closing the socket
            ib.sleep(0.1)  # 400 a second, second after second
    assert not ib.isConnected()
    (gone,) = [c for c in sim.get("/stats")["clients"] if c["client_id"] == cid]
    assert gone["disconnected_for_pacing"] and not gone["connected"]


# ---- order rejections with IB's reasons ------------------------------------------------


def only_error(seen: list[Err], req_id: int) -> tuple[int, str]:
    ((_r, code, msg),) = [e for e in seen if e[0] == req_id]
    return code, msg


def open_ids(sim: Any) -> list[int]:
    return [o["order_id"] for o in sim.get_state()["open_orders"]]


def test_a_rejection_rule_for_options_spares_the_stock(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    naked = codes.text(201, reason=codes.NO_NAKED_PUTS)
    sim.post("/fault/reject", {"count": 1, "code": 201, "message": naked, "sec_type": "OPT",
                               "action": "SELL"})
    with pytest.raises(ControlError):
        sim.post("/fault/reject", {"count": 1, "sec_type": "OPTION"})
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    stock = ib.placeOrder(spy, LimitOrder("SELL", 1, 700.0))  # a stock order: not the rule's
    wait_ib(ib, lambda: stock.orderStatus.status == "Submitted")
    opt, t = put(ib)
    sale = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2)))
    oid = sale.order.orderId
    wait_ib(ib, lambda: codes_for(seen, oid), what="201")
    assert only_error(seen, oid) == (
        201, "Order rejected - reason:Account May Not Hold Positions: Short Put")
    assert open_ids(sim) == [stock.order.orderId]  # nothing of the sale at the broker
    assert sim.get_state()["faults"]["rejects"] == []  # the rule was used up


def test_a_buy_larger_than_the_short_warns_2137_and_stays_live(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    opt, t = put(ib)
    sale = ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid))
    wait_ib(ib, lambda: sale.orderStatus.status == "Filled", what="the sale filled")
    buy = ib.placeOrder(opt, LimitOrder("BUY", 2, 0.05))
    oid = buy.order.orderId
    wait_ib(ib, lambda: codes_for(seen, oid), what="2137")
    assert only_error(seen, oid) == (
        2137, "The closing order quantity is greater than your current position.")
    assert buy.orderStatus.status == "Submitted" and open_ids(sim) == [oid]
    exact = ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05))  # no more than the short: quiet
    wait_ib(ib, lambda: exact.orderStatus.status == "Submitted")
    assert codes_for(seen, exact.order.orderId) == []


def test_an_order_short_of_margin_is_rejected_with_ibs_text() -> None:
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=NOW, cash=2_000.0) as sim:
        ib = client(sim, 1)
        try:
            seen = errors_of(ib)
            opt, t = put(ib)
            sale = ib.placeOrder(opt, LimitOrder("SELL", 5, round(t.ask + 1, 2)))
            oid = sale.order.orderId
            wait_ib(ib, lambda: codes_for(seen, oid), what="201")
            code, msg = only_error(seen, oid)
            assert code == 201 and re.fullmatch(
                r"Order rejected - reason:YOUR ORDER IS NOT ACCEPTED\. IN ORDER TO OBTAIN THE"
                r" DESIRED POSITION YOUR EQUITY WITH LOAN VALUE \[[\d.]+ USD\] MUST EXCEED THE"
                r" INITIAL MARGIN \[[\d.]+ USD\]", msg)
            assert open_ids(sim) == []
        finally:
            ib.disconnect()


def test_a_tif_preset_sets_day_and_warns_10349_the_order_stays_live() -> None:
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=NOW, tif_preset="DAY") as sim:
        ib = client(sim, 1)
        try:
            seen = errors_of(ib)
            opt, t = put(ib)
            gtc = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2), tif="GTC"))
            oid = gtc.order.orderId
            wait_ib(ib, lambda: codes_for(seen, oid), what="10349")
            assert only_error(seen, oid) == (10349, "Order TIF was set to DAY based on order"
                                                    " preset.")
            assert open_ids(sim) == [oid]  # working at IB (ib_insync 0.9 calls it Cancelled)
            assert sim.call(lambda gw: gw.broker.find(1, oid)["tif"]) == "DAY"
            day = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 2, 2), tif="DAY"))
            wait_ib(ib, lambda: day.orderStatus.status == "Submitted")
            assert codes_for(seen, day.order.orderId) == []
        finally:
            ib.disconnect()


def test_a_price_off_the_minimum_tick_is_refused_with_110(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    opt, t = put(ib)
    (details,) = ib.reqContractDetails(opt)
    assert details.minTick == 0.01
    bad = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2) + 0.005))
    oid = bad.order.orderId
    wait_ib(ib, lambda: codes_for(seen, oid), what="110")
    assert only_error(seen, oid) == (110, "The price does not conform to the minimum price"
                                          " variation for this contract.")
    assert open_ids(sim) == []
    good = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2)))
    wait_ib(ib, lambda: good.orderStatus.status == "Submitted")
    price = good.order.lmtPrice
    good.order.lmtPrice = price + 0.003  # a modify off the tick: the order works as it was
    ib.placeOrder(opt, good.order)
    gid = good.order.orderId
    wait_ib(ib, lambda: codes_for(seen, gid), what="110 on the modify")
    (o,) = sim.get_state()["open_orders"]
    assert o["order_id"] == gid and o["lmt_price"] == price


def test_a_reused_order_id_gets_103_and_changes_nothing(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    opt, t = put(ib)
    first = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2)))
    wait_ib(ib, lambda: first.orderStatus.status == "Submitted")
    oid = first.order.orderId
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    ib.client.placeOrder(oid, spy, LimitOrder("BUY", 1, 500.0))  # the same id, another order
    wait_ib(ib, lambda: codes_for(seen, oid), what="103")
    assert only_error(seen, oid) == (103, "Duplicate order id")
    (o,) = sim.get_state()["open_orders"]
    assert o["order_id"] == oid and o["con_id"] == opt.conId and o["action"] == "SELL"


def test_cancels_of_unknown_and_done_orders_get_10147_and_161(sim: Any, connect: Any) -> None:
    ib = connect()
    seen = errors_of(ib)
    ib.client.cancelOrder(987654)
    wait_ib(ib, lambda: codes_for(seen, 987654), what="10147")
    assert only_error(seen, 987654) == (
        10147, "OrderId 987654 that needs to be cancelled is not found.")
    opt, t = put(ib)
    trade = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2)))
    wait_ib(ib, lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    wait_ib(ib, lambda: trade.orderStatus.status == "Cancelled")
    oid, perm = trade.order.orderId, trade.order.permId
    seen.clear()
    ib.client.cancelOrder(oid)  # cancelled already: not in a cancellable state
    wait_ib(ib, lambda: codes_for(seen, oid), what="161")
    assert only_error(seen, oid) == (
        161, f"Cancel attempted when order is not in a cancellable state. Order permId ={perm}")


# ---- a fill while the client is away, across the daily reset ---------------------------


def test_filled_while_away_fills_then_moves_past_the_reset(sim: Any) -> None:
    ib = client(sim, 7)
    opt, t = put(ib)
    sale = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2), orderRef="tb:9:sale"))
    wait_ib(ib, lambda: sale.orderStatus.status == "Submitted")
    ib.disconnect()  # the engine goes down
    with pytest.raises(ControlError):
        sim.filled_while_away(order_ref="no-such-order")
    got = sim.filled_while_away(order_ref="tb:9:sale")
    assert [f["order_ref"] for f in got["filled"]] == ["tb:9:sale"]
    assert got["filled_at"] == "2026-11-24T10:00:00-05:00"
    assert got["now"] == "2026-11-25T00:19:00-05:00"  # past IB's 00:15 ET reset
    ib = client(sim, 7)  # the engine back
    try:
        assert ib.reqExecutions() == []  # IB's current day turned over
        assert [tr for tr in ib.reqCompletedOrders(False)
                if tr.order.orderRef == "tb:9:sale"] == []
        assert [(p.contract.conId, p.position) for p in ib.positions()] == [(opt.conId, -1)]
        assert ib.openTrades() == []
        assert sim.get_state()["executions"][-1]["order_ref"] == "tb:9:sale"  # the record
    finally:
        ib.disconnect()


# ---- ticks on change (IB's rhythm) -----------------------------------------------------


def _ticks_while_still(sim: Any, ib: IB) -> tuple[int, int]:
    """(ticks of a put line on subscribing, frames ibsim sent the client over the next
    ten ticks) with the market held still (ib_insync drops a repeated tick itself, so
    the later ones are counted at ibsim)."""
    sim.post("/market", {"walk_sigma": 0.0, "drift": 0.0})
    ticks = ticks_of(ib)
    opt = an_option(ib)
    t = ib.reqMktData(opt)
    wait_ib(ib, lambda: t.bid > 0 and t.ask > 0, what="the current values at once")
    req = ib.wrapper.ticker2ReqId["mktData"][t]
    ib.sleep(0.1)
    first = sum(1 for r, _tt in ticks if r == req)

    def sent() -> int:
        (mine,) = [c for c in sim.post("/feed", {"since": 1e11})["sessions"]
                   if c["client_id"] == ib.client.clientId]
        return int(mine["sent"])

    before, tick_no = sent(), sim.get_state()["tick"]
    wait_ib(ib, lambda: sim.get_state()["tick"] >= tick_no + 10, what="ten ticks")
    return first, sent() - before


def test_ticks_only_on_change_by_default(sim: Any, connect: Any) -> None:
    assert sim.get_state()["tick_mode"] == "change"
    first, later = _ticks_while_still(sim, connect())
    assert first >= 4 and later == 0  # bid, ask, greeks... once; nothing while still


def test_tick_mode_interval_resends_every_tick() -> None:
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=NOW,
                     tick_mode="interval") as sim:
        ib = client(sim, 1)
        try:
            first, later = _ticks_while_still(sim, ib)
            assert first >= 4 and later >= 10 * 4  # each tick: bid, ask, greeks again
        finally:
            ib.disconnect()
