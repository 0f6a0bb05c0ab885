"""Issue 2: the requests ib_insync makes, answered as IB Gateway answers them."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from ib_insync import IB, Contract, Option, Stock

from tests.ibsim.conftest import wait_ib


def test_connect_is_fast_and_syncs_the_account(sim: Any, connect: Any) -> None:
    t0 = time.monotonic()
    ib = connect()
    assert time.monotonic() - t0 < 1.0
    assert ib.managedAccounts() == ["DU1234567"]
    assert {v.tag for v in ib.accountValues()} >= {"NetLiquidation", "TotalCashValue"}


def test_several_clients_and_a_duplicate_client_id(sim: Any, connect: Any) -> None:
    a, b = connect(11), connect(12)
    assert a.isConnected() and b.isConnected()
    assert len(sim.get_state()["clients"]) == 2
    dup = IB()
    errors: list[int] = []
    dup.errorEvent += lambda req, code, msg, c: errors.append(code)
    with pytest.raises((TimeoutError, ConnectionError)):
        dup.connect("127.0.0.1", sim.port, clientId=11, timeout=1)
    assert 326 in errors
    assert a.isConnected()


def test_current_time_and_market_data_type(sim: Any, connect: Any) -> None:
    ib = connect()
    assert abs(ib.reqCurrentTime().timestamp() - time.time()) < 5
    ib.reqMarketDataType(3)
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    t = ib.reqMktData(spy)
    wait_ib(ib, lambda: t.bid == t.bid and t.bid > 0, what="delayed SPY bid")
    assert t.marketDataType == 3


def test_qualify_stock_options_and_unknown(sim: Any, connect: Any) -> None:
    ib = connect()
    for exch in ("SMART", "BATS"):
        (spy,) = ib.qualifyContracts(Stock("SPY", exch, "USD"))
        assert spy.conId == 756733 and spy.exchange == exch
    (opt,) = ib.qualifyContracts(Option("SPY", "20261127", 585, "P", "SMART"))
    assert opt.conId > 0 and opt.localSymbol == "SPY   261127P00585000"
    assert opt.multiplier == "100"
    errors: list[int] = []
    ib.errorEvent += lambda req, code, msg, c: errors.append(code)
    assert ib.qualifyContracts(Stock("NOPE", "SMART", "USD")) == []
    assert 200 in errors


def test_option_chain_parameters(sim: Any, connect: Any) -> None:
    ib = connect()
    params = ib.reqSecDefOptParams("SPY", "", "STK", 756733)
    smart = next(p for p in params if p.exchange == "SMART")
    exps = smart.expirations
    assert exps[0] == "20261124"
    assert "20261126" not in exps  # Thanksgiving: no expiry on a holiday
    assert {"20261125", "20261127", "20261130", "20261218"} <= set(exps)  # daily, month-end
    assert max(exps) >= "20271101"  # twelve months of expiries
    strikes = smart.strikes
    assert min(strikes) >= 600 * 0.7 - 1 and max(strikes) <= 600 * 1.3 + 1
    assert all(b - a == 1 for a, b in itertools.pairwise(strikes))


def test_contract_details_with_wildcards(sim: Any, connect: Any) -> None:
    ib = connect()
    details = ib.reqContractDetails(Option("SPY", "20261127", 0.0, "P", "SMART"))
    assert len(details) > 100
    assert {d.contract.right for d in details} == {"P"}
    details = ib.reqContractDetails(
        Contract(secType="OPT", symbol="SPY", strike=585.0, right="P", exchange="SMART")
    )
    assert len({d.contract.lastTradeDateOrContractMonth for d in details}) > 20


def test_spy_ticks_move_and_cancel_stops_them(sim: Any, connect: Any) -> None:
    ib = connect()
    spy = ib.qualifyContracts(Stock("SPY", "BATS", "USD"))[0]
    t = ib.reqMktData(spy)
    seen: set[float] = set()
    wait_ib(ib, lambda: (seen.add(t.last) or len(seen)) > 3, what="moving SPY prices")
    assert t.bid < t.ask and t.bidSize > 0 and t.askSize > 0
    ib.cancelMktData(spy)
    wait_ib(
        ib, lambda: sim.get_state()["clients"][0]["subscriptions"] == 0, what="subscription gone"
    )


def test_option_ticks_carry_model_greeks(sim: Any, connect: Any) -> None:
    ib = connect()
    (opt,) = ib.qualifyContracts(Option("SPY", "20261201", 585, "P", "SMART"))
    t = ib.reqMktData(opt)
    wait_ib(ib, lambda: t.modelGreeks is not None and t.bid > 0, what="greeks")
    g = t.modelGreeks
    assert -0.5 < g.delta < 0 and 0.05 < g.impliedVol < 1.0
    assert abs(g.undPrice - sim.get_state()["spot"]) < 2
    assert round(t.bid, 2) == t.bid and t.ask - t.bid >= 0.01
    otm = ib.qualifyContracts(Option("SPY", "20261201", 560, "P", "SMART"))[0]
    far = ib.reqMktData(otm)
    wait_ib(ib, lambda: far.modelGreeks is not None, what="far greeks")
    assert far.modelGreeks.impliedVol > g.impliedVol  # put skew


def test_snapshot_ends(sim: Any, connect: Any) -> None:
    ib = connect()
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    (t,) = ib.reqTickers(spy)
    assert t.bid > 0 and t.ask > t.bid
