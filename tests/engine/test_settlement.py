"""Issue 16 acceptance: how a short put ends when no exit fill of ours says so (early
assignment, expiry by OCC's rule at the real close, an exit filled while the engine
was down across IB's daily reset), through ibsim's /assign, /clock and /market."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tests.engine.conftest import ET, RunningEngine
from tests.engine.test_lifecycle import enter_and_wait
from tests.engine.test_outside_close import alerts, cfg, our_buys
from tests.support.zmq_request import wait_for_value, wait_until
from trading.records import Lot

REPAIR = 6.0  # the repair interval of cfg()
SALE_FEE = 0.65  # ibsim's commission for one option contract


def closed(eng: RunningEngine, lot_id: int, timeout: float = 15.0) -> Lot:
    return wait_for_value(lambda: eng.book().lot(lot_id).get(timeout=5),
                          lambda x: x.state == "closed", timeout, f"lot {lot_id} closed")


def set_time(sim: Any, eng: RunningEngine | None, when: datetime) -> None:
    sim.post("/clock", {"now": when.isoformat()})
    if eng is not None:
        eng.clock.set(when)


# IB books an assignment's two legs as separate position updates in no documented
# order: together, the option's first, or the shares' first (a second apart).
@pytest.mark.parametrize("first", ["both", "option", "shares"])
def test_early_assignment_closes_the_lot_assigned_and_cancels_its_exits(
    sim: Any, start_engine: Any, first: str
) -> None:
    eng = start_engine(cfg(stop_loss_ratio=20.0))
    lot = enter_and_wait(eng, 0)
    assert len(our_buys(sim, lot.con_id)) == 2
    spot = lot.strike - 2.0  # two dollars in the money, held still
    sim.post("/market", {"spot": spot, "walk_sigma": 0.0})
    wait_until(lambda: abs((eng.engine.directory.quotes[eng.engine.directory.spy_con_id].mid
                            or 0) - spot) < 0.02, 10, message="the engine sees the new spot")
    sim.post("/assign", {"con_id": lot.con_id, "qty": 1, "first": first, "gap": 1.0})
    # Within one repair interval: closed as assigned, no BUY of ours left on the contract.
    got = closed(eng, lot.id, REPAIR)
    wait_until(lambda: not our_buys(sim, lot.con_id), REPAIR,
               message="no BUY of ours live on the assigned contract")
    assert got.close_reason == "assigned"
    assert got.exit_price == pytest.approx(2.0, abs=0.02)  # intrinsic at assignment
    want = round((lot.entry_price - got.exit_price) * 100 - SALE_FEE, 2)
    assert got.realized_pnl == want and not got.pnl_estimated
    (alert,) = alerts(eng, "assigned")
    assert "100 SPY shares bought at" in alert["message"]
    assert "100 SPY shares now held" in alert["message"]
    # Not a hand close, and the leftover exits were cancelled without a stray alert.
    eng.ask("repair_exits")
    assert alerts(eng, "closed_outside") == [] and alerts(eng, "stray_exits_cancelled") == []
    assert alerts(eng, "outside_position") == []
    assert eng.ask("trades")["trades"][0]["close_reason"] == "assigned"


def test_otm_expiry_on_a_half_day_settles_at_the_one_oclock_close(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg(target_dte=3))
    lot = enter_and_wait(eng, 0)
    assert lot.expiry == "20261127"  # the Friday after Thanksgiving: closes at 13:00
    sim.post("/market", {"walk_sigma": 0.0})
    set_time(sim, eng, datetime(2026, 11, 27, 13, 5, tzinfo=ET))
    got = closed(eng, lot.id)
    assert got.close_reason == "expired" and got.exit_price == 0.0
    assert got.realized_pnl == round(lot.entry_price * 100 - SALE_FEE, 2)
    # Its exits are cancelled now (IB would leave them until the overnight settlement).
    wait_until(lambda: not our_buys(sim, lot.con_id), REPAIR + 5,
               message="the expired lot's exits cancelled")
    # The broker still lists the short put until the night: not an outside sale.
    assert [p["position"] for p in sim.get_state()["positions"]] == [-1]
    eng.ask("repair_exits")
    assert alerts(eng, "outside_position") == [] and alerts(eng, "closed_outside") == []
    # Monday 02:00 the position goes: nothing more happens to the lot.
    set_time(sim, eng, datetime(2026, 11, 30, 2, 30, tzinfo=ET))
    wait_until(lambda: not sim.get_state()["positions"], 10, message="settled at ibsim")
    eng.ask("repair_exits")
    again = eng.book().lot(lot.id).get(timeout=5)
    assert again.close_reason == "expired" and again.realized_pnl == got.realized_pnl
    assert alerts(eng, "closed_outside") == [] and alerts(eng, "assigned") == []


def test_itm_expiry_is_assigned_overnight_at_the_close_price(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg(target_dte=3, stop_loss_ratio=20.0))
    lot = enter_and_wait(eng, 0)
    assert lot.expiry == "20261127"
    # Thanksgiving (no session: no stop triggers), then in the money at the half day's close.
    set_time(sim, eng, datetime(2026, 11, 26, 12, 0, tzinfo=ET))
    close = lot.strike - 3.0
    sim.post("/market", {"spot": close, "walk_sigma": 0.0})
    wait_until(lambda: abs((eng.engine.directory.quotes[eng.engine.directory.spy_con_id].mid
                            or 0) - close) < 0.02, 10, message="the engine sees the new spot")
    set_time(sim, eng, datetime(2026, 11, 27, 13, 1, tzinfo=ET))
    key = f"underlying_close:SPY:{lot.expiry}"
    recorded = wait_for_value(lambda: eng.book().get_kv(key).get(timeout=5), bool, 10,
                              "the close recorded")
    assert recorded["price"] == pytest.approx(close, abs=0.02) and not recorded["estimated"]
    # SPY recovers after the close: the close decides, not the price next morning.
    sim.post("/market", {"spot": lot.strike + 10.0})
    eng.ask("repair_exits")
    assert eng.book().lot(lot.id).get(timeout=5).state == "open"  # not before the night
    set_time(sim, eng, datetime(2026, 11, 30, 2, 30, tzinfo=ET))
    got = closed(eng, lot.id, 15)
    assert got.close_reason == "assigned"
    assert got.exit_price == pytest.approx(3.0, abs=0.02)
    assert got.realized_pnl == round((lot.entry_price - got.exit_price) * 100
                                        - SALE_FEE, 2)
    (alert,) = alerts(eng, "assigned")
    assert "100 SPY shares now held" in alert["message"]
    assert alerts(eng, "closed_outside") == []


def _tp_fills_while_down(sim: Any, eng: RunningEngine) -> Lot:
    lot = enter_and_wait(eng, 0)
    eng.engine.stop()
    sim.post("/market", {"spot": 660.0})  # the put collapses below its TP
    wait_until(lambda: not sim.get_state()["positions"], 15, message="the TP filled at ibsim")
    return lot


def test_tp_filled_before_the_daily_reset_is_found_in_executions(
    sim: Any, start_engine: Any
) -> None:
    """The engine back the same evening, before IB's daily reset (00:15 ET, IB's system
    status page): reqExecutions still reports the TP's fill, at its real price."""
    lot = _tp_fills_while_down(sim, start_engine(cfg()))
    (fill,) = [e for e in sim.get_state()["executions"] if e["side"] == "BOT"]
    before_reset = datetime(2026, 11, 24, 23, 50, tzinfo=ET)
    set_time(sim, None, before_reset)
    eng = start_engine(cfg(), now=before_reset)
    got = closed(eng, lot.id, 20)
    assert got.close_reason == "take_profit" and got.exit_price == fill["price"]
    assert got.exit_price <= lot.tp_price  # the TP limit, or better
    assert got.realized_pnl == round((lot.entry_price - fill["price"]) * 100
                                        - SALE_FEE - fill["commission"], 2)
    assert not got.pnl_estimated
    assert alerts(eng, "closed_outside") == [] and alerts(eng, "reconciled_estimated") == []


def test_tp_filled_and_gone_from_completed_orders_is_estimated_and_alerted(
    sim: Any, start_engine: Any
) -> None:
    lot = _tp_fills_while_down(sim, start_engine(cfg()))
    next_day = datetime(2026, 11, 25, 0, 30, tzinfo=ET)  # a new day: completed orders too
    set_time(sim, None, next_day)
    eng = start_engine(cfg(), now=next_day)
    got = closed(eng, lot.id, 20)
    assert got.close_reason == "reconciled_estimated" and got.pnl_estimated
    assert got.exit_price == lot.tp_price  # the put is near 0: the TP is the nearer
    want = round((lot.entry_price - lot.tp_price) * 100 - SALE_FEE, 2)
    assert got.realized_pnl == want
    (alert,) = alerts(eng, "reconciled_estimated")
    assert "confirm" in alert["message"]
    trade = eng.ask("trades")["trades"][0]
    assert trade["pnl_estimated"] and trade["close_reason"] == "reconciled_estimated"
    # The P&L history counts it (closed on the engine's date).
    points = eng.ask("pnl_history")["points"]
    assert any(p["date"] == "2026-11-25" and p["realized"] == want for p in points)
    assert alerts(eng, "closed_outside") == []


def _stock(sim: Any) -> float:
    return sum(p["position"] for p in sim.get_state()["positions"] if p["sec_type"] == "STK")


def test_close_shares_sells_the_assigned_shares_at_the_next_open(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg(stop_loss_ratio=20.0, on_assignment="close_shares"))
    lot = enter_and_wait(eng, 0)
    sim.post("/assign", {"con_id": lot.con_id, "qty": 1})
    assert closed(eng, lot.id, REPAIR).close_reason == "assigned"
    assert _stock(sim) == 100
    (alert,) = alerts(eng, "assigned")
    assert "sold at the open" in alert["message"]
    # Not in the session of the assignment: a few scheduler ticks pass, the shares stay.
    sched = eng.engine.directory.proxy("scheduler")
    ticks = sched.tick_count().get(timeout=5)
    wait_until(lambda: sched.tick_count().get(timeout=5) >= ticks + 3, 15,
               message="three scheduler ticks")
    assert _stock(sim) == 100
    assert not [o for o in sim.get_state()["open_orders"] if o["sec_type"] == "STK"]
    # Wednesday's open: sold with a limit walked like the sale, intent and orderRef first.
    set_time(sim, eng, datetime(2026, 11, 25, 9, 31, tzinfo=ET))
    wait_until(lambda: _stock(sim) == 0, 30, message="the shares sold at the next open")
    # The attempt that filled (on a slow machine the first limit may expire unfilled and
    # the second, walked lower, sell): one execution of 100 shares in all.
    prefix = f"tb:lot{lot.id}:shares:"
    execs = [e for e in sim.get_state()["executions"] if e["order_ref"].startswith(prefix)]
    assert len(execs) == 1 and execs[0]["side"] == "SLD" and execs[0]["qty"] == 100, execs
    ref = execs[0]["order_ref"]
    row = wait_for_value(lambda: eng.book().order_by_ref(ref).get(timeout=5),
                         lambda r: r is not None and r.status == "filled", 10,
                         "the share sale's intent, filled")
    assert row.role == "shares" and row.action == "SELL" and row.qty == 100
    wait_until(lambda: alerts(eng, "shares_sold"), 10, message="a shares_sold alert")
    assert alerts(eng, "closed_outside") == []
