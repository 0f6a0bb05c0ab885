"""Issue 20: what outside IB clients ask of a gateway, through unmodified ib_async (and
ib_insync where it decodes differently) over real sockets."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ibsim.harness import IbsimThread

iba = pytest.importorskip("ib_async")

NOW = "2026-11-24T10:00:00-05:00"
EXPIRY = "20261201"
ISSUE_TAGS = {
    "NetLiquidation", "TotalCashValue", "SettledCash", "AccruedCash", "BuyingPower",
    "EquityWithLoanValue", "PreviousDayEquityWithLoanValue", "GrossPositionValue", "RegTEquity",
    "RegTMargin", "SMA", "InitMarginReq", "MaintMarginReq", "AvailableFunds", "ExcessLiquidity",
    "Cushion", "FullInitMarginReq", "FullMaintMarginReq", "FullAvailableFunds",
    "FullExcessLiquidity", "LookAheadInitMarginReq", "LookAheadMaintMarginReq",
    "LookAheadAvailableFunds", "LookAheadExcessLiquidity", "HighestSeverity",
    "DayTradesRemaining", "Leverage", "AccountType", "Currency",
}


@pytest.fixture
def quiet_sim() -> Iterator[IbsimThread]:
    """A still market (no walk) so margins can be checked to the cent."""
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.05, now=NOW) as s:
        s.post("/market", {"walk_sigma": 0.0, "spot": 600.0})
        yield s


@pytest.fixture
def aib(quiet_sim: IbsimThread) -> Iterator[Any]:
    asyncio.set_event_loop(asyncio.new_event_loop())
    ib = iba.IB()
    ib.RequestTimeout = 30  # requests wait behind the client's own 45/s pacing queue
    ib.connect("127.0.0.1", quiet_sim.port, clientId=41, timeout=5)
    yield ib
    ib.disconnect()


def until(ib: Any, pred: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    # A deadline, not a delay: generous so a busy machine is not a failure.
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        ib.sleep(0.02)


def errors_of(ib: Any) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req, code, msg, *rest: seen.append((req, code, msg))
    return seen


def summary(ib: Any, tags: str) -> dict[str, tuple[str, str]]:
    """A raw reqAccountSummary with this tag list: {tag: (value, currency)}."""
    rows: dict[str, tuple[str, str]] = {}

    def on(v: Any) -> None:
        rows[v.tag] = (v.value, v.currency)

    ib.accountSummaryEvent += on
    req_id = ib.client.getReqId()
    fut = ib.wrapper.startReq(req_id)
    ib.client.reqAccountSummary(req_id, "All", tags)
    ib.run(asyncio.wait_for(fut, 5))
    ib.client.cancelAccountSummary(req_id)
    ib.accountSummaryEvent -= on
    return rows


# ---- 1. the margin account -------------------------------------------------------------


def test_account_values_full_set_consistent_with_short_puts(aib: Any, quiet_sim: Any) -> None:
    ib = aib
    # The crash the issue saw: an ib_async bot reading the keys a margin account has.
    first = {v.tag: v.value for v in ib.accountSummary()}
    assert ISSUE_TAGS - {"Currency"} <= set(first), ISSUE_TAGS - set(first)
    assert first["InitMarginReq"] == "0.00" and first["AccountType"] == "INDIVIDUAL"
    assert set(summary(ib, "All")) >= ISSUE_TAGS
    assert set(summary(ib, "InitMarginReq,Cushion,NoSuchTag")) == {"InitMarginReq", "Cushion"}
    ledger = summary(ib, "$LEDGER:ALL")
    assert ledger["CashBalance"] == ("100000.00", "BASE")

    (opt,) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 585, "P", "SMART"))
    t = ib.reqMktData(opt)
    until(ib, lambda: t.bid == t.bid and t.bid > 0 and t.modelGreeks, "put quote")
    sale = ib.placeOrder(opt, iba.LimitOrder("SELL", 2, t.bid, orderRef="t20:acct"))
    until(ib, lambda: sale.orderStatus.status == "Filled", "sale fill")
    mark = t.modelGreeks.optPrice
    spot, strike = 600.0, 585.0
    # IB's uncovered put: max(20% of the underlying - OTM amount, 10% of strike) + premium.
    expected = (max(0.20 * spot - (spot - strike), 0.10 * strike) + mark) * 100 * 2

    def values() -> dict[str, float | str]:
        out: dict[str, float | str] = {}
        for v in ib.accountValues():
            if v.currency in ("USD", ""):
                try:
                    out[v.tag] = float(v.value)
                except ValueError:
                    out[v.tag] = v.value
        return out

    until(ib, lambda: abs(float(values().get("InitMarginReq", 0)) - expected) < 1.0,
          "updated InitMarginReq", timeout=10)
    v = values()
    assert set(v) >= ISSUE_TAGS, ISSUE_TAGS - set(v)
    cash = v["TotalCashValue"]
    assert cash == pytest.approx(100_000 + 2 * 100 * sale.orderStatus.avgFillPrice - 1.30,
                                 abs=0.02)
    assert v["NetLiquidation"] == pytest.approx(cash - 2 * 100 * mark, abs=0.05)
    assert v["EquityWithLoanValue"] == pytest.approx(cash, abs=0.01)  # options: no loan value
    assert v["MaintMarginReq"] == pytest.approx(expected, abs=1.0)
    assert v["FullMaintMarginReq"] == v["MaintMarginReq"] == v["LookAheadMaintMarginReq"]
    assert v["AvailableFunds"] == pytest.approx(v["EquityWithLoanValue"] - v["InitMarginReq"],
                                                abs=0.02)
    assert v["ExcessLiquidity"] == pytest.approx(
        v["EquityWithLoanValue"] - v["MaintMarginReq"], abs=0.02)
    assert v["Cushion"] == pytest.approx(v["ExcessLiquidity"] / v["NetLiquidation"], abs=1e-5)
    assert v["BuyingPower"] == pytest.approx(4 * v["AvailableFunds"], abs=0.05)
    assert v["GrossPositionValue"] == pytest.approx(2 * 100 * mark, abs=0.05)
    assert v["Currency"] == "USD" and v["DayTradesRemaining"] == -1
    # The summary says the same as the updates.
    s = summary(ib, "All")
    for tag in ("NetLiquidation", "InitMarginReq", "MaintMarginReq", "AvailableFunds",
                "ExcessLiquidity", "EquityWithLoanValue", "SMA", "RegTMargin"):
        assert float(s[tag][0]) == pytest.approx(float(v[tag]), abs=0.05), tag


# ---- 2. every request with an id gets its answer or an error with that id ----------------


def test_requests_ibsim_does_not_serve_fail_fast_with_their_id(aib: Any) -> None:
    ib = aib
    errs = errors_of(ib)
    spy = iba.Stock("SPY", "SMART", "USD", conId=756733)
    t0 = time.monotonic()
    # Each blocks on its request id in ib_async (no timeout: a -1 error left them hanging).
    ib.RequestTimeout = 0
    assert not ib.reqMatchingSymbols("SP")
    assert not ib.reqFundamentalData(spy, "ReportSnapshot")
    assert not ib.calculateImpliedVolatility(
        iba.Option("SPY", EXPIRY, 585, "P", "SMART", conId=0), 1.0, 600.0)
    assert time.monotonic() - t0 < 5
    codes = [(code, req > 0) for req, code, _ in errs]
    assert codes.count((320, True)) == 3, errs
    assert all(req != -1 for req, code, _ in errs if code in (320, 321)), errs


def _bag(*legs: tuple[Any, str]) -> Any:
    return iba.Contract(secType="BAG", symbol=legs[0][0].symbol, exchange="SMART",
                        currency="USD",
                        comboLegs=[iba.ComboLeg(conId=c.conId, ratio=1, action=side,
                                                exchange="SMART") for c, side in legs])


def test_combo_roll_fills_at_the_net_and_bad_combos_get_their_ids(aib: Any,
                                                                  quiet_sim: Any) -> None:
    ib = aib
    errs = errors_of(ib)
    near, far = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 585, "P", "SMART"),
                                    iba.Option("SPY", EXPIRY, 580, "P", "SMART"))
    (qqq_put,) = ib.qualifyContracts(iba.Option("QQQ", EXPIRY, 500, "P", "SMART"))
    qn, qf = ib.reqMktData(near), ib.reqMktData(far)
    until(ib, lambda: all(q.bid == q.bid and q.bid > 0 for q in (qn, qf)), "leg quotes")
    sale = ib.placeOrder(near, iba.LimitOrder("SELL", 1, qn.bid, orderRef="t20:short"))
    until(ib, lambda: sale.orderStatus.status == "Filled", "the short put")
    roll = _bag((near, "BUY"), (far, "SELL"))  # buy back 585, sell 580: a debit
    net = round(qn.ask - qf.bid, 2)
    st = ib.whatIfOrder(roll, iba.LimitOrder("BUY", 1, net))
    assert float(st.initMarginChange) < 0  # the farther strike needs less margin
    assert st.commission == pytest.approx(1.30)
    assert quiet_sim.get_state()["positions"][0]["local_symbol"] == near.localSymbol
    low = ib.placeOrder(roll, iba.LimitOrder("BUY", 1, round(net - 0.5, 2), orderRef="t20:lo"))
    until(ib, lambda: low.orderStatus.status == "Submitted", "a combo resting below the net")
    ib.cancelOrder(low.order)
    until(ib, lambda: low.orderStatus.status == "Cancelled", "combo cancel")
    trade = ib.placeOrder(roll, iba.LimitOrder("BUY", 1, round(net + 0.05, 2),
                                               orderRef="t20:roll"))
    until(ib, lambda: trade.orderStatus.status == "Filled" and len(trade.fills) == 2,
          "the roll's two leg fills")
    assert trade.orderStatus.avgFillPrice == pytest.approx(net, abs=0.011)
    legs = {f.contract.conId: (f.execution.side, f.execution.price) for f in trade.fills}
    assert legs[near.conId][0] == "BOT" and legs[far.conId][0] == "SLD"
    assert legs[near.conId][1] - legs[far.conId][1] == pytest.approx(net, abs=0.011)
    held = {p["local_symbol"]: p["position"] for p in quiet_sim.get_state()["positions"]}
    assert held == {far.localSymbol: -1.0}
    # A combo across underlyings, and combo market data: each gets its own id.
    t = ib.reqMktData(roll)
    bad = ib.placeOrder(_bag((near, "BUY"), (qqq_put, "SELL")), iba.LimitOrder("BUY", 1, 0.1))
    until(ib, lambda: bad.orderStatus.status == "Cancelled", "the mixed combo's rejection")
    assert any(r == bad.order.orderId and c == 201 and "one underlying" in m
               for r, c, m in errs)
    until(ib, lambda: any(r == ib.wrapper.ticker2ReqId["mktData"][t] for r, _c, _m in errs),
          "combo market data answered on its id")
    assert all(r != -1 for r, c, _m in errs if c in (320, 321)), errs


# ---- 3. completed orders and history ----------------------------------------------------


def test_completed_orders_with_ib_async_and_ib_insync(aib: Any, quiet_sim: Any) -> None:
    ib = aib
    (opt,) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 585, "P", "SMART"))
    t = ib.reqMktData(opt)
    until(ib, lambda: t.bid == t.bid and t.bid > 0, "quote")
    sale = ib.placeOrder(opt, iba.LimitOrder("SELL", 1, t.bid, orderRef="t20:sale"))
    resting = ib.placeOrder(opt, iba.LimitOrder("SELL", 1, round(t.ask * 5, 2),
                                                orderRef="t20:rest"))
    until(ib, lambda: sale.orderStatus.status == "Filled"
          and resting.orderStatus.status == "Submitted", "fill and a resting order")
    ib.cancelOrder(resting.order)
    until(ib, lambda: resting.orderStatus.status == "Cancelled", "cancel")
    done = {tr.order.orderRef: tr for tr in ib.reqCompletedOrders(False)}
    assert done["t20:sale"].orderStatus.status == "Filled"
    assert done["t20:sale"].order.filledQuantity == 1
    assert done["t20:sale"].order.permId == sale.order.permId
    assert done["t20:rest"].orderStatus.status == "Cancelled"
    assert done["t20:sale"].contract.localSymbol == opt.localSymbol
    # ib_insync decodes the same messages.
    from ib_insync import IB

    old = IB()
    old.connect("127.0.0.1", quiet_sim.port, clientId=42, timeout=5)
    try:
        refs = {tr.order.orderRef: tr.orderStatus.status for tr in old.reqCompletedOrders(False)}
        assert refs == {"t20:sale": "Filled", "t20:rest": "Cancelled"}
    finally:
        old.disconnect()


def test_historical_bars_and_head_timestamp(aib: Any) -> None:
    ib = aib
    (spy,) = ib.qualifyContracts(iba.Stock("SPY", "SMART", "USD"))
    (opt,) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 585, "P", "SMART"))
    minute = ib.reqHistoricalData(spy, "", "1 D", "1 min", "TRADES", True)
    assert len(minute) == 390  # one regular session of minutes
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in minute)
    assert all(b.volume > 0 for b in minute)
    assert abs(minute[-1].close - 600.0) < 0.6  # history meets the live price
    hours = ib.reqHistoricalData(spy, "", "1 M", "1 hour", "MIDPOINT", True)
    assert 100 < len(hours) < 200 and all(b.volume == -1 for b in hours)
    last_hour = hours[-1]  # 09:30-10:00 today: the same walk as the minutes
    inside = [b for b in minute if b.date >= last_hour.date]
    assert last_hour.open == inside[0].open and last_hour.close == inside[-1].close
    days = ib.reqHistoricalData(spy, "", "1 Y", "1 day", "BID_ASK", True)
    assert 245 <= len(days) <= 256
    assert all(b.low < b.high for b in days)
    year_min = ib.reqHistoricalData(spy, "", "1 Y", "1 min", "TRADES", True, timeout=60)
    assert len(year_min) == len(days) * 390 - 390 + 30  # today: 09:30-10:00
    opt_bars = ib.reqHistoricalData(opt, "", "5 D", "1 hour", "TRADES", True)
    assert opt_bars and all(0 < b.close < 50 for b in opt_bars)
    again = ib.reqHistoricalData(spy, "", "1 D", "1 min", "TRADES", True)
    assert [b.close for b in again] == [b.close for b in minute]  # seeded, reproducible
    head = ib.reqHeadTimeStamp(spy, "TRADES", True)
    assert (head.year, head.month, head.day) == (1993, 1, 29)
    assert ib.reqHeadTimeStamp(opt, "TRADES", True).year == 2025
    errs = errors_of(ib)
    assert len(ib.reqHistoricalData(spy, "", "2 Y", "1 day", "TRADES", True)) == 0
    assert len(ib.reqHistoricalData(spy, "", "1 D", "1 min", "TRADES", True,
                                    keepUpToDate=True)) == 0
    assert [code for _r, code, _m in errs] == [162, 162]
    assert all(r > 0 for r, _c, _m in errs)


# ---- 4. the ticks a real feed has, and the line limit -------------------------------------


def test_feed_ticks_open_interest_and_line_limit(aib: Any) -> None:
    ib = aib
    errs = errors_of(ib)
    (spy,) = ib.qualifyContracts(iba.Stock("SPY", "SMART", "USD"))
    (opt,) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 585, "P", "SMART"))
    ts = ib.reqMktData(spy, "101")
    to = ib.reqMktData(opt, "101")
    until(ib, lambda: all(x == x and x > 0 for x in (ts.close, ts.open, ts.high, ts.low,
                                                     ts.volume)), "SPY day ticks")
    assert ts.low <= ts.open <= ts.high
    until(ib, lambda: to.putOpenInterest == to.putOpenInterest and to.putOpenInterest > 0
          and to.volume > 0 and to.close > 0, "option open interest and volume")
    assert ts.callOpenInterest > 0 and ts.putOpenInterest > 0
    (other,) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 590, "P", "SMART"))
    plain = ib.reqMktData(other)
    until(ib, lambda: plain.bid == plain.bid, "a line without 101")
    assert plain.putOpenInterest != plain.putOpenInterest  # nan: not asked for
    # 100 lines per client: three are open, 97 more fit, the next gets error 101.
    strikes = [float(k) for k in range(500, 597)]
    contracts = ib.qualifyContracts(*[iba.Option("SPY", EXPIRY, k, "C", "SMART")
                                      for k in strikes])
    for c in contracts:
        ib.reqMktData(c)
    (c600, c601) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 600, "C", "SMART"),
                                       iba.Option("SPY", EXPIRY, 601, "C", "SMART"))
    one_more = ib.reqMktData(c600)
    # ~100 requests go out at the client's own pace (45/s): seconds, more on a busy machine.
    until(ib, lambda: any(code == 101 for _r, code, _m in errs), "error 101", timeout=60)
    ((req, _code, msg),) = [e for e in errs if e[1] == 101]
    assert req == ib.wrapper.ticker2ReqId["mktData"][one_more] and "Max number" in msg
    ib.cancelMktData(contracts[0])
    again = ib.reqMktData(c601)
    until(ib, lambda: again.bid == again.bid, "a line after one was freed")


# ---- 5. whatIf ---------------------------------------------------------------------------


def test_what_if_for_known_contracts_and_errors_for_invalid(aib: Any, quiet_sim: Any) -> None:
    ib = aib
    errs = errors_of(ib)
    (opt,) = ib.qualifyContracts(iba.Option("SPY", EXPIRY, 585, "P", "SMART"))
    st = ib.whatIfOrder(opt, iba.LimitOrder("SELL", 1, 1.0))
    assert float(st.initMarginBefore) == 0.0 and st.commission > 0
    init = float(st.initMarginChange)
    # 20% of 600 - 15 OTM = 105 per share, plus the premium: about 10,500 + 100 x mark.
    assert 10_500 < init < 10_500 + 100 * 5
    assert float(st.equityWithLoanChange) == pytest.approx(100 * 1.0 - 0.65, abs=0.01)
    stock = ib.whatIfOrder(iba.Stock("SPY", "SMART", "USD"), iba.MarketOrder("BUY", 100))
    assert float(stock.initMarginChange) == pytest.approx(0.5 * 100 * 600, rel=0.01)
    assert float(stock.maintMarginChange) == pytest.approx(0.25 * 100 * 600, rel=0.01)
    state = quiet_sim.get_state()
    assert state["open_orders"] == [] and state["positions"] == []  # nothing was placed
    # 321 is IB's code for a contract that fails validation; ib_async counts it a warning
    # and waits out its timeout, as it would against IB.
    ib.RequestTimeout = 1
    with pytest.raises(asyncio.TimeoutError):  # no exchange
        ib.whatIfOrder(iba.Stock("SPY", "", "USD"), iba.MarketOrder("BUY", 1))
    t0 = time.monotonic()
    ib.whatIfOrder(iba.Stock("NOPE", "SMART", "USD"), iba.MarketOrder("BUY", 1))
    assert time.monotonic() - t0 < 1  # 200 ends the request at once
    assert [(code, req > 0) for req, code, _m in errs] == [(321, True), (200, True)]
    bad = ib.placeOrder(iba.Stock("SPY", "", "USD"), iba.MarketOrder("BUY", 1))
    until(ib, lambda: any(r == bad.order.orderId and c == 321 for r, c, _m in errs),
          "321 on the order's id")


# ---- the README's trader script ----------------------------------------------------------


def test_readme_trader_script_runs(quiet_sim: Any) -> None:
    text = (Path(__file__).resolve().parents[2] / "ibsim" / "README.md").read_text()
    (script,) = re.findall(r"```python\n(# trader_script\.py.*?)```", text, re.S)
    asyncio.set_event_loop(asyncio.new_event_loop())
    out: dict[str, Any] = {"PORT": quiet_sim.port}
    exec(compile(script, "trader_script.py", "exec"), out)  # our own README
    assert out["sale"].orderStatus.status == "Filled"
    assert len(out["bars"]) == 390 and float(out["summary"]["InitMarginReq"]) > 0


# ---- 6. more underlyings ---------------------------------------------------------------


def test_more_underlyings_chains_index_and_forex(aib: Any, quiet_sim: Any) -> None:
    ib = aib
    errs = errors_of(ib)
    qqq, iwm, aapl = ib.qualifyContracts(iba.Stock("QQQ", "SMART", "USD"),
                                         iba.Stock("IWM", "SMART", "USD"),
                                         iba.Stock("AAPL", "SMART", "USD"))
    (vix,) = ib.qualifyContracts(iba.Index("VIX", "CBOE", "USD"))
    eur, gbp, jpy = ib.qualifyContracts(iba.Forex("EURUSD"), iba.Forex("GBPUSD"),
                                        iba.Forex("USDJPY"))
    assert (qqq.conId, iwm.conId, vix.conId, eur.conId) == (320227571, 9579970, 13455763,
                                                            12087792)
    assert eur.localSymbol == "EUR.USD" and jpy.localSymbol == "USD.JPY" and aapl.conId > 0
    for under in (qqq, iwm):
        (chain,) = [c for c in ib.reqSecDefOptParams(under.symbol, "", "STK", under.conId)
                    if c.exchange == "SMART"]
        assert int(chain.underlyingConId) == under.conId and chain.expirations[0] == "20261124"
        [t] = ib.reqTickers(under)
        strike = max(k for k in chain.strikes if k <= t.marketPrice() * 0.97)
        (put,) = ib.qualifyContracts(iba.Option(under.symbol, EXPIRY, strike, "P", "SMART"))
        assert put.localSymbol.startswith(under.symbol) and put.conId not in (0, qqq.conId)
        (details,) = ib.reqContractDetails(put)
        assert details.underConId == under.conId
        q = ib.reqMktData(put)
        until(ib, lambda q=q: q.bid == q.bid and q.bid > 0 and q.modelGreeks, "option quote")
        assert q.modelGreeks.undPrice == pytest.approx(t.marketPrice(), rel=0.01)
        st = ib.whatIfOrder(put, iba.LimitOrder("SELL", 1, q.bid))
        und = q.modelGreeks.undPrice
        rule = (max(0.2 * und - (und - strike), 0.1 * strike) + q.modelGreeks.optPrice) * 100
        assert float(st.initMarginChange) == pytest.approx(rule, rel=0.01)
        sale = ib.placeOrder(put, iba.LimitOrder("SELL", 1, q.bid, orderRef="t20:" + under.symbol))
        until(ib, lambda sale=sale: sale.orderStatus.status == "Filled", "sale on " + under.symbol)
    quotes = {c.symbol: ib.reqMktData(c) for c in (vix, eur, gbp, jpy)}
    until(ib, lambda: all(t.last == t.last for t in [quotes["VIX"]])
          and all(t.bid == t.bid and t.ask > t.bid for s, t in quotes.items() if s != "VIX"),
          "index and forex quotes")
    assert 1.0 < quotes["EUR"].bid < 1.2 and 140 < quotes["USD"].bid < 160
    assert quotes["VIX"].bid != quotes["VIX"].bid  # an index has no bid
    fx = ib.whatIfOrder(eur, iba.MarketOrder("BUY", 20_000))
    assert float(fx.initMarginChange) == pytest.approx(0.03 * 20_000 * quotes["EUR"].ask,
                                                       rel=0.01)
    assert fx.commission == 2.0
    bars = ib.reqHistoricalData(eur, "", "1 D", "1 hour", "MIDPOINT", False)
    assert bars and all(1.0 < b.close < 1.2 for b in bars) and len({b.close for b in bars}) > 3
    refused = ib.placeOrder(vix, iba.MarketOrder("BUY", 1))
    until(ib, lambda: refused.orderStatus.status == "Cancelled", "index order refused")
    assert any(r == refused.order.orderId and c == 201 for r, c, _m in errs)
    held = {p["local_symbol"][:3] for p in quiet_sim.get_state()["positions"]}
    assert held == {"QQQ", "IWM"}
