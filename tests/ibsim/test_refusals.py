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
