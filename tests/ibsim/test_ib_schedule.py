"""Issue 13: IB's daily reset and weekly re-authentication on ibsim's clock
(`--ib-schedule`), and reqExecutions limited to the day since the last reset."""

from __future__ import annotations

from typing import Any

import pytest
from ib_insync import IB, MarketOrder, Option

from ibsim.harness import IbsimThread
from tests.ibsim.conftest import client, connected, wait_ib


def codes_of(ib: IB) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req, code, msg, c: codes.append(code)
    return codes


def test_executions_are_the_days_since_the_last_reset(sim: Any, connect: Any) -> None:
    ib = connect()
    (opt,) = ib.qualifyContracts(Option("SPY", "20261201", 585, "P", "SMART"))
    sale = ib.placeOrder(opt, MarketOrder("SELL", 1, orderRef="day1"))
    wait_ib(ib, lambda: sale.orderStatus.status == "Filled", what="sale")
    assert [f.execution.orderRef for f in ib.reqExecutions()] == ["day1"]
    sim.post("/clock", {"now": "2026-11-25T00:14:00-05:00"})  # before the reset: still there
    assert [f.execution.orderRef for f in ib.reqExecutions()] == ["day1"]
    sim.post("/clock", {"now": "2026-11-25T09:31:00-05:00"})
    assert ib.reqExecutions() == []  # IB's current day began at the 00:15 ET reset
    assert sim.get_state()["executions"]  # the control API keeps the record


@pytest.fixture
def scheduled() -> Any:
    with IbsimThread(seed=5, tick_interval=0.02, now="2026-11-25T00:10:00-05:00",
                     ib_schedule=True) as s:
        yield s


def test_weeknight_reset_1100_for_minutes_then_1102(scheduled: Any) -> None:
    with connected(scheduled) as ib:
        codes = codes_of(ib)
        scheduled.post("/clock", {"now": "2026-11-25T00:16:00-05:00"})  # IB: 00:15-01:45 ET
        wait_ib(ib, lambda: 1100 in codes, what="1100 at the reset")
        assert scheduled.get_state()["faults"]["outage"]
        scheduled.post("/clock", {"now": "2026-11-25T00:17:30-05:00"})
        ib.sleep(0.2)
        assert 1102 not in codes
        scheduled.post("/clock", {"now": "2026-11-25T00:18:30-05:00"})
        wait_ib(ib, lambda: 1102 in codes, what="1102 after a few minutes")
        assert not scheduled.get_state()["faults"]["outage"]


def test_friday_night_reset_is_longer_and_loses_data(scheduled: Any) -> None:
    with connected(scheduled, "2026-11-27T22:30:00-05:00") as ib:
        codes = codes_of(ib)
        scheduled.post("/clock", {"now": "2026-11-27T23:01:00-05:00"})  # IB: Fri 23:00 ET
        wait_ib(ib, lambda: 1100 in codes, what="1100")
        scheduled.post("/clock", {"now": "2026-11-28T02:30:00-05:00"})
        ib.sleep(0.2)
        assert 1101 not in codes and 1102 not in codes
        scheduled.post("/clock", {"now": "2026-11-28T03:01:00-05:00"})  # to Sat 03:00 ET
        wait_ib(ib, lambda: 1101 in codes, what="1101 after the weekend reset")


def test_sunday_reauth_logs_out_until_login(scheduled: Any) -> None:
    scheduled.post("/clock", {"now": "2026-11-29T00:50:00-05:00"})
    ib = client(scheduled)
    ib.disconnect()
    scheduled.post("/clock", {"now": "2026-11-29T01:01:00-05:00"})
    wait_ib(IB(), lambda: scheduled.get_state()["faults"]["logged_out"], what="logged out")
    with pytest.raises((TimeoutError, ConnectionError, OSError)):
        client(scheduled, 2, timeout=1.5)  # TCP accepted, nothing answers
    scheduled.post("/fault/login", {})
    with connected(scheduled, client_id=3) as ib:
        ib.sleep(0.3)  # the same Sunday: not logged out again
        assert ib.isConnected() and not scheduled.get_state()["faults"]["logged_out"]


def test_no_schedule_by_default(sim: Any, connect: Any) -> None:
    ib = connect()
    codes = codes_of(ib)
    sim.post("/clock", {"now": "2026-11-25T00:16:00-05:00"})
    ib.sleep(0.3)
    assert 1100 not in codes and not sim.get_state()["faults"]["outage"]
