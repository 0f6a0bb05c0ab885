"""Issue 4 acceptance: the schedule on a fake clock against ibsim."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.engine.conftest import RunningEngine
from tests.support.zmq_request import wait_for_value, wait_until
from trading.records import EntryAttempt

ET = ZoneInfo("America/New_York")
FAST = {"schedule": {"entry_times": ["09:35"], "tick_seconds": 0.05, "repair_interval": 3600.0}}


def at(day: int, hh: int, mm: int) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=ET)


def settle(eng: RunningEngine, ticks: int = 3) -> None:
    """Let the scheduler run a few ticks at the current clock."""
    sched = eng.engine.directory.proxy("scheduler")
    start = sched.tick_count().get(timeout=5)
    wait_until(
        lambda: sched.tick_count().get(timeout=5) >= start + ticks, 10, message="scheduler ticks"
    )


def entries(eng: RunningEngine) -> list[EntryAttempt]:
    return eng.book().entries().get(timeout=5)


def sales(sim: Any) -> int:
    return sum(1 for e in sim.get_state()["executions"] if e["side"] in ("SLD", "SELL"))


def move(eng: RunningEngine, sim: Any, when: datetime) -> None:
    sim.post("/clock", {"now": when.isoformat()})
    eng.clock.set(when)


def outage_then_move(eng: RunningEngine, sim: Any, when: datetime) -> None:
    """An outage (120 s, ending in 1102) the engine has seen, then the clock moved to
    `when` and a few scheduler ticks there."""
    sim.post("/fault/outage", {"seconds": 120, "restore_code": 1102})
    wait_until(
        lambda: eng.book().link_status().get(timeout=5).state != "READY", 10, message="link down"
    )
    move(eng, sim, when)
    settle(eng)


def test_thanksgiving_week_entries_on_sessions_only(sim: Any, start_engine: Any) -> None:
    eng = start_engine(FAST, now=at(23, 9, 0))
    done_days = []
    for day in range(23, 30):
        move(eng, sim, at(day, 9, 30))
        settle(eng)
        assert not [e for e in entries(eng) if e.trade_date == f"2026-11-{day}"]
        move(eng, sim, at(day, 9, 36))
        if day in (23, 24, 25, 27):
            wait_for_value(
                lambda d=day: [e for e in entries(eng) if e.trade_date == f"2026-11-{d}"],
                lambda rows: rows and rows[0].state == "done",
                30,
                f"entry on {day}",
            )
            done_days.append(day)
        settle(eng)
        move(eng, sim, at(day, 15, 0))
        settle(eng)
    assert done_days == [23, 24, 25, 27]
    assert [e.trade_date[-2:] for e in entries(eng)] == ["23", "24", "25", "27"]
    assert sales(sim) == 4


def test_outage_over_the_slot_then_entry_right_after_ready(sim: Any, start_engine: Any) -> None:
    eng = start_engine(FAST, now=at(24, 9, 30))
    outage_then_move(eng, sim, at(24, 9, 50))
    assert entries(eng) == []
    sim.post("/fault/outage_end", {})
    # Right after 1102 the quote may take a while on a busy machine: the entry waits for
    # it (the slot stays open until catch_up_until), it never gives the day up.
    rows = wait_for_value(
        lambda: entries(eng), lambda rows: rows and rows[0].state in ("done", "failed",
                                                                         "missed"),
        60, "catch-up entry"
    )
    assert rows[0].state == "done", rows
    settle(eng)
    assert len(entries(eng)) == 1 and sales(sim) == 1


def test_broken_market_farm_no_entry_then_farm_ok_entry_before_the_deadline(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(FAST, now=at(24, 9, 30))
    sim.post("/fault/farm", {"farm": "market", "broken": True})
    wait_until(lambda: "market" in eng.engine.directory.farms_broken, 10, message="2103 seen")
    move(eng, sim, at(24, 9, 36))
    rows = wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "interrupted",
                          20, "entry waiting for a quote")
    assert "farm" in rows[0].reason
    settle(eng, 10)
    assert entries(eng)[0].state in ("interrupted", "started") and sales(sim) == 0
    assert not [a for a in eng.ask("alerts")["alerts"]
                if a["kind"] in ("order_rejected", "entry_missed")]
    sim.post("/fault/farm", {"farm": "market", "broken": False})
    wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "done", 60,
                   "entry once the farm is OK")
    assert sales(sim) == 1


def test_no_quote_until_the_deadline_makes_the_slot_missed(sim: Any, start_engine: Any) -> None:
    eng = start_engine(FAST, now=at(24, 9, 30))
    sim.post("/fault/farm", {"farm": "market", "broken": True})
    wait_until(lambda: "market" in eng.engine.directory.farms_broken, 10, message="2103 seen")
    move(eng, sim, at(24, 9, 36))
    wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "interrupted",
                   20, "entry waiting for a quote")
    move(eng, sim, at(24, 10, 45))
    rows = wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "missed", 20,
                          "missed at the deadline")
    assert "farm" in rows[0].reason and "10:30" in rows[0].reason
    missed = [a for a in eng.ask("alerts")["alerts"] if a["kind"] == "entry_missed"]
    assert len(missed) == 1 and sales(sim) == 0


def test_outage_past_the_deadline_records_a_miss_and_one_alert(sim: Any, start_engine: Any) -> None:
    eng = start_engine(FAST, now=at(24, 9, 30))
    outage_then_move(eng, sim, at(24, 9, 36))
    move(eng, sim, at(24, 10, 45))
    rows = wait_for_value(
        lambda: entries(eng), lambda r: r and r[0].state == "missed", 10, "missed entry"
    )
    assert "10:30" in rows[0].reason
    sim.post("/fault/outage_end", {})
    wait_until(
        lambda: eng.book().link_status().get(timeout=5).state == "READY", 20, message="READY again"
    )
    settle(eng, 5)
    assert sales(sim) == 0
    missed = [a for a in eng.ask("alerts")["alerts"] if a["kind"] == "entry_missed"]
    assert len(missed) == 1


def test_restart_after_the_entry_does_not_sell_again(sim: Any, start_engine: Any) -> None:
    eng = start_engine(FAST, now=at(24, 9, 35))
    wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "done", 30, "entry")
    eng.engine.stop()
    again = start_engine(FAST, now=at(24, 9, 36))
    settle(again, 5)
    assert len(entries(again)) == 1 and sales(sim) == 1


def test_max_open_lots_and_pause_block_the_entry_with_an_alert(sim: Any, start_engine: Any) -> None:
    eng = start_engine({**FAST, "risk": {"max_open_lots": 1}}, now=at(23, 9, 35))
    wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "done", 30, "entry")
    move(eng, sim, at(24, 9, 36))
    rows = wait_for_value(lambda: entries(eng),
                          lambda r: len(r) == 2 and r[1].state != "started", 10, "second day")
    assert rows[1].state == "skipped" and "max open lots" in rows[1].reason
    assert any(a["kind"] == "risk_limit" for a in eng.ask("alerts")["alerts"])
    eng.ask("pause")
    move(eng, sim, at(25, 9, 36))
    rows = wait_for_value(lambda: entries(eng),
                          lambda r: len(r) == 3 and r[2].state != "started", 10, "third day")
    assert rows[2].state == "skipped" and "paused" in rows[2].reason
    assert sales(sim) == 1


def test_expired_out_of_the_money_lot_keeps_the_premium(sim: Any, start_engine: Any) -> None:
    eng = start_engine(FAST, now=at(24, 9, 35))
    lot = wait_for_value(lambda: eng.open_lots(), lambda lots: lots, 30, "lot")[0]
    expiry = datetime.strptime(lot.expiry, "%Y%m%d").replace(hour=16, minute=30, tzinfo=ET)
    # Hold fills so that time decay does not hit the TP before the expiry settles.
    sim.post("/fault/hold_fills", {"seconds": 120})
    move(eng, sim, expiry)  # ibsim takes the close price here
    # IB settles expiries overnight (ibsim: 02:00 ET on the next session's date).
    from ibsim.calendar import next_session

    move(eng, sim, datetime.combine(next_session(expiry.date()), datetime.min.time(), ET)
         .replace(hour=8))
    closed = wait_for_value(
        lambda: eng.book().lot(lot.id).get(timeout=5),
        lambda x: x.state == "closed",
        30,
        "expired",
    )
    fills = eng.book().fills(lot.id).get(timeout=5)
    commissions = sum(f.commission or 0 for f in fills)
    assert closed.close_reason == "expired"
    assert closed.realized_pnl == round(lot.entry_price * 100 - commissions, 2)


def test_exits_cancelled_by_hand_come_back_within_one_repair_interval(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine({"schedule": {"entry_times": ["15:00"], "tick_seconds": 0.05,
                                     "repair_interval": 1.0}})
    assert eng.ask("enter_now")["accepted"]
    lot = wait_for_value(lambda: eng.open_lots(), lambda lots: lots and lots[0].state ==
                         "open", 30, "protected lot")[0]
    # Both legs at once, as the repair job may act between two separate cancels.
    gone = sim.post("/order/cancel", {"order_ref_prefix": f"tb:lot{lot.id}:"})
    assert len(gone["cancelled"]) == 2
    fixed = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                           lambda x: x.tp_order_ref != lot.tp_order_ref, 5,
                           "exits re-placed by the repair job")
    live = {o["order_ref"] for o in sim.get_state()["open_orders"]}
    assert {fixed.tp_order_ref, fixed.sl_order_ref} <= live
    assert any(a["kind"] == "exits_repaired" for a in eng.ask("alerts")["alerts"])


def test_exits_that_failed_at_entry_are_placed_once_the_fault_clears(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine({"schedule": {"entry_times": ["15:00"], "tick_seconds": 0.05,
                                     "repair_interval": 1.0}})
    sim.post("/fault/reject", {"count": 3, "action": "BUY", "order_type": "STP"})
    assert eng.ask("enter_now")["accepted"]
    lot = wait_for_value(lambda: eng.open_lots(), lambda lots: lots, 30, "lot")[0]
    healed = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                            lambda x: x.state == "open", 15, "protected after the fault")
    live = {o["order_ref"] for o in sim.get_state()["open_orders"]}
    assert {healed.tp_order_ref, healed.sl_order_ref} <= live


def test_the_entry_is_prepared_before_its_slot_and_its_lines_released_after(
    sim: Any, start_engine: Any
) -> None:
    """Entry latency (issue 19): within `prepare_lead` of the slot the executor looks the
    contracts up and opens the candidate puts' lines; at the slot it decides on quotes
    already streaming; afterwards only the lines held lots need stay open."""
    eng = start_engine({**FAST, "schedule": {**FAST["schedule"], "prepare_lead": 60.0}},
                       now=at(24, 9, 33))

    def lines() -> int:
        return int(next(c for c in sim.get_state()["clients"] if c["client_id"] == 1)
                   ["subscriptions"])

    settle(eng)
    assert lines() <= 1 and entries(eng) == []  # SPY only: nothing prepared 2 min ahead
    move(eng, sim, at(24, 9, 34))
    # The weekly delta profile of these tests: 25 candidate puts and a few for a move.
    wait_until(lambda: lines() > 20, 20, message="candidate lines open before the slot")
    assert entries(eng) == [] and sales(sim) == 0
    move(eng, sim, at(24, 9, 35))
    rows = wait_for_value(lambda: entries(eng), lambda r: r and r[0].state == "done", 30,
                          "the entry at its slot")
    assert rows[0].lot_id is not None
    wait_until(lambda: lines() == 2, 20, message="only SPY and the held put streaming")
