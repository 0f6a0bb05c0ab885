"""Orders entered outside the API (TWS, the mobile app) as IB delivers them: the
execution to client 0 and to the master API client only; position and portfolio
updates to every client that subscribed (ibsim/README.md names the IB sources)."""

from __future__ import annotations

from typing import Any

from ib_insync import IB

from tests.ibsim.conftest import wait_ib
from tests.ibsim.test_orders import put


def _connect(sim: Any, client_id: int, opened: list[IB]) -> IB:
    ib = IB()
    ib.RequestTimeout = 5
    ib.connect("127.0.0.1", sim.port, clientId=client_id, timeout=5)
    opened.append(ib)
    return ib


def _held(ib: IB, con_id: int) -> float:
    return sum(p.position for p in ib.positions() if p.contract.conId == con_id)


def _portfolio(ib: IB, con_id: int) -> float:
    return sum(p.position for p in ib.portfolio() if p.contract.conId == con_id)


def test_a_hand_order_reaches_client_0_and_the_master_and_positions_reach_everyone(
    sim: Any,
) -> None:
    sim.call(lambda gw: setattr(gw, "master_client_id", 9))
    opened: list[IB] = []
    try:
        tws = _connect(sim, 0, opened)
        master = _connect(sim, 9, opened)
        other = _connect(sim, 8, opened)
        opt, _t = put(other)
        sim.post("/order/external", {"client_id": 0, "orders": [
            {"order_ref": "", "con_id": opt.conId, "action": "SELL", "qty": 2}]})
        for ib in (tws, master):
            wait_ib(ib, lambda ib=ib: len(ib.fills()) == 1, what="the hand sale's fill")
        for ib in (tws, master, other):
            wait_ib(ib, lambda ib=ib: _held(ib, opt.conId) == -2, what="position -2")
            wait_ib(ib, lambda ib=ib: _portfolio(ib, opt.conId) == -2, what="portfolio -2")
        sim.post("/order/external", {"client_id": 0, "orders": [
            {"order_ref": "", "con_id": opt.conId, "action": "BUY", "qty": 2}]})
        for ib in (tws, master, other):
            wait_ib(ib, lambda ib=ib: _held(ib, opt.conId) == 0, what="position 0")
        wait_ib(master, lambda: len(master.fills()) == 2, what="the master hears both")
        assert [f.execution.side for f in tws.fills()] == ["SLD", "BOT"]
        assert all(f.execution.clientId == 0 for f in master.fills())
        # A client that is neither 0 nor the master hears no execution of it.
        assert other.fills() == []
    finally:
        for ib in opened:
            ib.disconnect()
