"""Money paths, second pass (issue 32): each test is named after the behaviour and
poses its finding through ibsim over real sockets with the unmodified ib_insync client
(a unit test where no wire scenario can pose it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import ET, SESSION_NOW, RunningEngine, engine_subprocess
from tests.engine.test_crash_recovery import _ask, _kill, _live, _sales, _start_ready
from tests.engine.test_money_paths import live_buys, on_executions, watch_live_exits
from tests.support.zmq_request import wait_for_value, wait_until

# Past IB's daily reset (00:15 ET, IB's system status page): reqExecutions and the
# completed orders no longer report the day before's fills.
AFTER_RESET = datetime(2026, 11, 25, 0, 20, tzinfo=ET)


def restarted_past_the_reset(sim: Any, cfg: Path, endpoint: str, after_reset: datetime,
                             move_clock: bool = True) -> Any:
    """The engine started again past the reset (ibsim's clock moved there first unless
    the scenario did it); returns its process once it holds one protected lot of 1 and
    has called none of it an outside sale or an interrupted entry, with one OCA pair and
    one sale at the broker."""
    if move_clock:
        sim.post("/clock", {"now": after_reset.isoformat()})
    proc = engine_subprocess(
        cfg, {"TRADING_BOT__CLOCK__START": f'"{after_reset.isoformat()}"'})
    try:
        lots = wait_for_value(
            lambda: _ask(endpoint, "positions")["lots"],
            lambda lots: len(lots) == 1 and lots[0]["protected"], 40, "one protected lot")
        assert lots[0]["qty"] == 1
        kinds = [a["kind"] for a in _ask(endpoint, "alerts")["alerts"]]
        assert "outside_position" not in kinds and "entry_interrupted" not in kinds, kinds
        tps, sls = _live(sim, "tp"), _live(sim, "sl")  # one OCA pair, one sale at the broker
        assert len(tps) == 1 and len(sls) == 1, (tps, sls)
        assert tps[0]["oca_group"] == sls[0]["oca_group"]
        assert len(_sales(sim)) == 1
    except BaseException:
        proc.kill()  # the caller never gets it to stop: no engine left running
        proc.wait(10)
        raise
    return proc


def test_a_sale_filled_while_away_across_the_daily_reset_is_our_lot_with_exits(
    tmp_path: Path, sim: Any
) -> None:
    """Item 1: the engine is killed while its sale rests; the sale fills; the clock
    passes IB's daily reset (reqExecutions no longer reports the fill); the engine
    restarts. The old code marked the sale cancelled, alerted 'nothing was sold' and
    called its own short an outside sale with no exits. Now the sale intent of ours and
    the broker's short (past the reset neither executions nor completed orders tell) make
    it our lot, protected by a TP+SL pair."""
    cfg, endpoint, proc = _start_ready(tmp_path, sim)
    try:
        sim.post("/fault/hold_fills", {"seconds": 120})
        assert _ask(endpoint, "enter_now")["accepted"]
        wait_until(lambda: _live(sim, "sale"), 20, message="sale resting at the broker")
        _kill(proc)
        sim.post("/fault/hold_fills", {"seconds": 0})
        wait_until(lambda: _sales(sim), 20, message="the sale filled while the engine was away")
        sale_ref = _sales(sim)[0]["order_ref"]
        proc = restarted_past_the_reset(sim, cfg, endpoint, AFTER_RESET)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
    from book.store import Store

    store = Store(tmp_path / "book.sqlite")
    (lot,) = store.lots()
    assert lot.order_ref == sale_ref
    assert [(e.state, e.lot_id) for e in store.entries()] == [("done", lot.id)]
    assert SESSION_NOW.date().isoformat() == lot.trade_date


def test_the_short_notional_cap_counts_the_sale_being_judged(
    sim: Any, start_engine: Any
) -> None:
    """Item 2: a cap of 50,000 with no lot held and a ~589 put to sell (58,900 for one
    contract). The old code counted only the lots held and sold it; now the cap counts
    the candidate (strike x 100 x quantity) and refuses the first lot: nothing is sent,
    a `risk_limit` alert names the notional."""
    eng = start_engine({"risk": {"max_short_notional": 50_000.0}})
    assert eng.ask("enter_now")["accepted"]
    rows = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                          lambda r: r and r[0].state not in ("started", "interrupted"),
                          30, "the entry decided")
    assert rows[0].state == "failed" and "notional" in rows[0].reason, rows
    alerts = [a for a in eng.ask("alerts")["alerts"] if a["kind"] == "risk_limit"]
    assert len(alerts) == 1 and "notional" in alerts[0]["message"], alerts
    state = sim.get_state()
    assert state["executions"] == [] and state["open_orders"] == []
    assert eng.open_lots() == []


def _sold(sim: Any) -> int:
    return int(sum(e["qty"] for e in sim.get_state()["executions"] if e["side"] == "SLD"))


def _exit_sizes(sim: Any) -> list[int]:
    return sorted(int(o["qty"] - o["filled"]) for o in live_buys(sim))


@contextmanager
def watch_cover(sim: Any) -> Iterator[list[tuple[int, list[int]]]]:
    """Samples the broker every ~20 ms: each moment our live exit legs' remaining
    quantity exceeded the short held (a BUY that would open a long)."""
    over: list[tuple[int, list[int]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            state = sim.get_state()
            short = -int(sum(p["position"] for p in state["positions"]
                             if p["sec_type"] == "OPT"))
            sizes = sorted(int(o["qty"] - o["filled"]) for o in state["open_orders"]
                           if o["action"] == "BUY")
            if sizes and max(sizes) > short:
                over.append((short, sizes))
            stop.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield over
    finally:
        stop.set()
        t.join(5)


def _late_sliced_sale(sim: Any, start_engine: Any) -> RunningEngine:
    """A sale of 3 acknowledged after order_ack_timeout (the entry gives up on it),
    then filled in slices of 1."""
    eng = start_engine({"strategy": {"quantity": 3, "order_ack_timeout": 0.5}})
    # The first reconciliation's repair is queued before the entry (else it takes the
    # given-up sale for a leftover and walks it, a path of its own).
    wait_until(lambda: eng.book().get_kv("last_reconciled_at").get(timeout=5), 20,
               message="the first reconciliation")
    sim.post("/fault/slow_orders", {"seconds": 2.0, "action": "SELL"})
    sim.post("/fault/partial_fills", {"count": 1, "slices": 3})
    return eng


def _selling(sim: Any) -> list[dict[str, Any]]:
    return [o for o in sim.get_state()["open_orders"] if o["action"] == "SELL"]


def test_a_late_sale_slice_is_protected_within_seconds_at_what_is_held(
    sim: Any, start_engine: Any
) -> None:
    """Item 3: the first slice of a sale the entry gave up on opens the lot; the rest
    still works, and IB takes no BUY beside our SELL on the same contract. The old code
    tried exits for the first slice at once (refused: self-cross), left the lot
    unprotected until the repair tick, and the later slices grew it uncovered. Now the
    sale's rest is cancelled first (the entry had given it up), and the lot is protected
    within seconds by one pair covering exactly what is held."""
    eng = _late_sliced_sale(sim, start_engine)

    def hold() -> None:
        sim.post("/fault/hold_fills", {"seconds": 120})

    with watch_live_exits(sim) as worst, watch_cover(sim) as over, \
            on_executions(sim, "SLD", {1: hold}):
        assert eng.ask("enter_now")["accepted"]
        wait_until(lambda: _sold(sim) == 1, 30, message="the first slice sold")
        t0 = time.monotonic()
        wait_until(lambda: _exit_sizes(sim) == [1, 1] and not _selling(sim), 10,
                   message="the rest cancelled, exits for 1")
        took = time.monotonic() - t0
        sim.post("/fault/hold_fills", {"seconds": 0})
        lot = wait_for_value(eng.open_lots, lambda ls: ls and ls[0].state == "open", 10,
                             "the lot protected")[0]
    assert took < 3.0, f"protected {took:.1f}s after the slice"
    assert worst["orders"] <= 2 and worst["groups"] <= 1 and not over, (worst, over)
    assert lot.qty == _sold(sim) == 1
    kinds = [a["kind"] for a in eng.ask("alerts")["alerts"]]
    assert "lot_unprotected" not in kinds and "outside_position" not in kinds, kinds


def test_exits_grow_with_sale_slices_that_race_the_cancel(
    sim: Any, start_engine: Any
) -> None:
    """Item 3: the slices come 0.15 s apart, faster than the cancel of the sale's rest:
    whatever filled, the one pair ends covering exactly the lot (resized in place),
    never more than is held, and no slice is left outside the lot."""
    eng = _late_sliced_sale(sim, start_engine)
    with watch_live_exits(sim) as worst, watch_cover(sim) as over:
        assert eng.ask("enter_now")["accepted"]
        wait_until(lambda: _sold(sim) >= 1, 30, message="the first slice sold")
        wait_until(lambda: not _selling(sim) and _exit_sizes(sim) == [_sold(sim)] * 2, 10,
                   message="exits covering what was sold")
        lot = wait_for_value(eng.open_lots, lambda ls: ls and ls[0].qty == _sold(sim)
                             and ls[0].state == "open", 10, "the lot of what sold")[0]
    assert worst["orders"] <= 2 and worst["groups"] <= 1 and not over, (worst, over)
    kinds = [a["kind"] for a in eng.ask("alerts")["alerts"]]
    assert "outside_position" not in kinds, kinds
    assert lot.tp_order_ref and {o["order_ref"] for o in live_buys(sim)} == {
        lot.tp_order_ref, lot.sl_order_ref}


def test_placing_exits_for_a_lot_with_a_live_pair_adopts_it_not_a_second_pair(
    sim: Any, start_engine: Any
) -> None:
    """Item 7: callers that believe a lot's exits gone when they may be live (a restore
    after a cancel answered Unknown, a resumed sale, a late fill beside a finished
    entry) call place_exits. The old code sent a second pair (4 live BUYs on one lot);
    now the lot's live pair is looked up at the broker first and kept."""
    eng = start_engine({"strategy": {"quantity": 2}})
    assert eng.ask("enter_now")["accepted"]
    lot = wait_for_value(eng.open_lots, lambda ls: ls and ls[0].state == "open", 40,
                         "one protected lot")[0]
    wait_until(lambda: len(live_buys(sim)) == 2, 10, message="the pair live")
    executor = eng.engine.directory.proxy("order_executor")
    with watch_live_exits(sim) as worst:
        assert executor.place_exits(lot).get(timeout=30)
        assert executor.place_exits(lot).get(timeout=30)
    assert worst["orders"] <= 2 and worst["groups"] <= 1, worst
    assert {o["order_ref"] for o in live_buys(sim)} == {lot.tp_order_ref, lot.sl_order_ref}
    assert _exit_sizes(sim) == [2, 2]
    again = eng.book().lot(lot.id).get(timeout=5)
    assert (again.tp_order_ref, again.sl_order_ref, again.state) == (
        lot.tp_order_ref, lot.sl_order_ref, "open")


def _sale_refs_at_broker(sim: Any) -> set[str]:
    state = sim.get_state()
    return {o["order_ref"] for o in state["open_orders"] if o["action"] == "SELL"} | {
        e["order_ref"] for e in state["executions"] if e["side"] == "SLD"}


def test_a_manual_entry_first_resolves_an_unresolved_sale_of_ours(
    sim: Any, start_engine: Any
) -> None:
    """Item 8: entries by hand only (`entry_times = []`); the first sale's ack comes
    late (the entry gives up: 'outcome unknown') and it then rests unfilled. A retry a
    minute later is a new slot: the old code sold again beside it (two sales working).
    Now the entry first resolves the earlier sale at the broker (cancelled, as it did
    not fill), so one sale at most works at any time."""
    eng = start_engine({"schedule": {"entry_times": []},
                        "strategy": {"order_ack_timeout": 0.5}})
    wait_until(lambda: eng.book().get_kv("last_reconciled_at").get(timeout=5), 20,
               message="the first reconciliation")
    sim.post("/fault/hold_fills", {"seconds": 300})
    sim.post("/fault/slow_orders", {"seconds": 1.5, "action": "SELL"})
    assert eng.ask("enter_now")["accepted"]
    first = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                           lambda r: r and r[0].state == "failed", 30, "the entry gave up")
    wait_until(lambda: _selling(sim), 10, message="the first sale resting at the broker")
    sim.post("/fault/slow_orders", {"seconds": 0})
    later = SESSION_NOW.replace(minute=1)
    sim.post("/clock", {"now": later.isoformat()})
    eng.clock.set(later)
    most = {"selling": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most["selling"] = max(most["selling"], len(_selling(sim)))
            stop.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        assert eng.ask("enter_now")["accepted"]
        wait_until(lambda: len(eng.book().entries().get(timeout=5)) == 2 and all(
            e.state != "started" for e in eng.book().entries().get(timeout=5)), 40,
            message="the second entry finished")
    finally:
        stop.set()
        t.join(5)
    assert most["selling"] <= 1, most
    assert first[0].slot == "10:00"
    refs = _sale_refs_at_broker(sim)
    assert not [r for r in refs if ":1000:" in r and r in {
        o["order_ref"] for o in _selling(sim)}], refs


@pytest.mark.parametrize("on_assignment", ["alert", "close_shares"])
def test_an_assignment_is_recognised_from_shares_that_arrive_late(
    sim: Any, start_engine: Any, on_assignment: str
) -> None:
    """Item 4: IB books the option leg of an early assignment, and the shares come 5 s
    later (past the 2 s the book waits for them). The old code closed the lot
    `closed_outside` and later absorbed the shares silently: no `assigned` alert. Now
    the shares, whenever they arrive (a STK position update too), turn that close into
    `assigned` with its alert."""
    from tests.engine.test_lifecycle import enter_and_wait
    from tests.engine.test_outside_close import alerts, cfg

    eng = start_engine(cfg(stop_loss_ratio=20.0, on_assignment=on_assignment))
    lot = enter_and_wait(eng, 0)
    spot = lot.strike - 2.0
    sim.post("/market", {"spot": spot, "walk_sigma": 0.0})
    wait_until(lambda: abs((eng.engine.directory.quotes[eng.engine.directory.spy_con_id].mid
                            or 0) - spot) < 0.02, 10, message="the engine sees the new spot")
    sim.post("/assign", {"con_id": lot.con_id, "qty": 1, "first": "option", "gap": 5.0})
    first = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                           lambda x: x.state == "closed", 15, "the lot closed")
    assert first.close_reason in ("closed_outside", "assigned")
    wait_until(lambda: any(p["sec_type"] == "STK" for p in sim.get_state()["positions"]),
               15, message="the shares booked")
    got = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                         lambda x: x.close_reason == "assigned", 15, "the lot assigned")
    assert got.exit_price == pytest.approx(2.0, abs=0.05)
    (alert,) = wait_for_value(lambda: alerts(eng, "assigned"), lambda a: len(a) == 1, 10,
                              "the assigned alert")
    assert "100 SPY shares bought at" in alert["message"]
    if on_assignment == "close_shares":
        # The sale the alert promises was queued with the correction (one transaction).
        assert "sold at the open" in alert["message"]
        job = eng.book().get_kv(f"share_sale:{lot.id}").get(timeout=5)
        assert job is not None and job["state"] == "pending" and job["qty"] == 100, job


def test_exits_asked_for_while_the_gateway_restarts_go_out_once_it_is_back(
    sim: Any, start_engine: Any
) -> None:
    """Found by the soak at quantity 3: a late sale slice asked for exits during a
    gateway drop. The old code took the refused send for legs of unknown fate and
    looked for them for 2 x exit_unknown_wait (20 s) before the repair placed them;
    now a send refused for want of a connection is known unsent: the lot is protected
    as soon as the link is READY again."""
    eng = start_engine({"strategy": {"exit_attempts": 1}})
    sim.post("/fault/reject", {"count": 2, "action": "BUY"})  # the entry's exits fail
    assert eng.ask("enter_now")["accepted"]
    wait_until(lambda: [a for a in eng.ask("alerts")["alerts"]
                        if a["kind"] == "lot_unprotected"], 40, message="the exits refused")
    lot = wait_for_value(eng.open_lots, lambda ls: ls and ls[0].state == "unprotected", 10,
                         "an unprotected lot")[0]
    assert not live_buys(sim)
    executor = eng.engine.directory.proxy("order_executor")
    sim.post("/restart", {"seconds": 2.0})
    wait_until(lambda: eng.book().link_status().get(timeout=5).state.value != "READY", 10,
               message="the link down")
    t0 = time.monotonic()
    assert executor.place_exits(lot).get(timeout=60)
    took = time.monotonic() - t0
    assert took < 9.0, f"protected {took:.1f}s after the call"
    assert _exit_sizes(sim) == [1, 1]
    assert eng.book().lot(lot.id).get(timeout=5).state == "open"


def test_a_lot_called_expired_then_assigned_is_announced_as_assigned(
    sim: Any, start_engine: Any
) -> None:
    """Item 5: the lot expires out of the money at the half day's close (closed
    `expired`), but the holder exercises after the close (IB assigns it that night).
    The old code never looked at the broker again: 100 shares arrived unannounced. Now
    the shares turn the expiry into `assigned`, with its alert."""
    from tests.engine.test_outside_close import alerts, cfg
    from tests.engine.test_settlement import closed, enter_and_wait, set_time

    eng = start_engine(cfg(target_dte=3))
    lot = enter_and_wait(eng, 0)
    assert lot.expiry == "20261127"
    sim.post("/market", {"walk_sigma": 0.0})
    set_time(sim, eng, datetime(2026, 11, 27, 13, 5, tzinfo=ET))
    got = closed(eng, lot.id)
    assert got.close_reason == "expired"
    sim.post("/assign", {"con_id": lot.con_id, "qty": 1, "first": "both"})
    again = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                           lambda x: x.close_reason == "assigned", 15, "the lot assigned")
    assert again.pnl_estimated
    (alert,) = wait_for_value(lambda: alerts(eng, "assigned"), lambda a: len(a) == 1, 10,
                              "the assigned alert")
    assert "100 SPY shares bought at" in alert["message"]


def test_expiry_is_not_judged_on_a_stale_spot_quote(sim: Any, start_engine: Any) -> None:
    """Item 5: market data stops before the half day's close (the SPY line keeps its
    last value). The old code judged the expiry on that quote at once; now a spot quote
    older than strategy.max_quote_age decides nothing, and the expiry is judged once
    ticks are fresh again."""
    from tests.engine.test_outside_close import cfg
    from tests.engine.test_settlement import closed, enter_and_wait, set_time

    eng = start_engine(cfg(target_dte=3))
    lot = enter_and_wait(eng, 0)
    sim.post("/market", {"walk_sigma": 0.0})
    quotes = eng.engine.directory.quotes
    spy = eng.engine.directory.spy_con_id
    sim.post("/fault/mute", {"seconds": 120})  # long enough for a loaded machine
    wait_until(lambda: time.time() - quotes[spy].time > 2.5, 15,
               message="the SPY line silent for longer than max_quote_age")
    set_time(sim, eng, datetime(2026, 11, 27, 13, 5, tzinfo=ET))
    eng.ask("repair_exits")
    # The settlement job runs on the scheduler's tick: three ticks pass, the lot stays.
    sched = eng.engine.directory.proxy("scheduler")
    ticks = sched.tick_count().get(timeout=5)
    wait_until(lambda: sched.tick_count().get(timeout=5) >= ticks + 3, 15,
               message="three scheduler ticks")
    assert sim.get_state()["faults"]["muted"], "the mute ended too early: too slow"
    assert eng.book().lot(lot.id).get(timeout=5).state == "open"
    key = f"underlying_close:SPY:{lot.expiry}"
    assert eng.book().get_kv(key).get(timeout=5) is None
    sim.post("/fault/mute", {"seconds": 0})
    got = closed(eng, lot.id, 20)
    assert got.close_reason == "expired"


def test_a_resumed_sale_is_not_re_priced_on_a_stale_quote(
    sim: Any, start_engine: Any
) -> None:
    """Item 11: a sale the entry gave up on (its ack came late) rests unfilled; market
    data then stops and the repair job finds the sale working with no entry running.
    The old code re-priced it at the silent line's old bid (the quote-age rule guarded
    only new sales); now a stale quote re-prices nothing: the leftover sale is
    cancelled, as when it cannot be resumed."""
    eng = start_engine({"strategy": {"order_ack_timeout": 0.5, "sale_attempts": 1,
                                     "limit_walk_interval": 0.5}})
    wait_until(lambda: eng.book().get_kv("last_reconciled_at").get(timeout=5), 20,
               message="the first reconciliation")
    sim.post("/fault/hold_fills", {"seconds": 300})
    sim.post("/fault/slow_orders", {"seconds": 1.5, "action": "SELL"})
    assert eng.ask("enter_now")["accepted"]
    wait_for_value(lambda: eng.book().entries().get(timeout=5),
                   lambda r: r and r[0].state == "failed", 30, "the entry gave up")
    (resting,) = wait_until(lambda: _selling(sim), 10, message="the sale resting")
    sim.post("/fault/slow_orders", {"seconds": 0})
    # The put's line stays open (as a held lot's or a prepared entry's would).
    conn = eng.engine.directory.proxy("connection")
    put = eng.book().contract(resting["con_id"]).get(timeout=5)
    conn.subscribe([put]).get(timeout=10)
    wait_until(lambda: conn.quotes([put], 0.5).get(timeout=10)[0].bid, 20,
               message="the put's line quoting")
    sim.post("/fault/mute", {"seconds": 60})
    wait_until(lambda: time.time() - conn.quotes([put], 0.1).get(timeout=10)[0].time > 2.5,
               15, message="the put's line silent for longer than max_quote_age")
    seen: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            seen.extend(o["lmt_price"] for o in _selling(sim))
            stop.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        eng.ask("repair_exits", timeout=40)
    finally:
        stop.set()
        t.join(5)
    assert sim.get_state()["faults"]["muted"], "the mute ended too early: too slow"
    assert set(seen) <= {resting["lmt_price"]}, (resting["lmt_price"], sorted(set(seen)))
    assert not _selling(sim) and not [
        e for e in sim.get_state()["executions"] if e["side"] == "SLD"]


def test_a_sale_partly_filled_then_cancelled_while_away_is_a_lot_of_what_filled(
    tmp_path: Path, sim: Any
) -> None:
    """Item 1, its partial form: the engine is killed while its sale of 3 rests; one
    slice fills, the rest is cancelled (by hand in TWS here; a DAY order's rest at the
    close alike), and the clock passes the daily reset. The completed order says
    `Cancelled` with 1 filled: that 1 is our lot, with exits for 1."""
    from tests.engine.conftest import write_config
    from tests.engine.test_crash_recovery import _port, _start

    cfg = write_config(tmp_path / "engine.toml", sim,
                       {"strategy": {"limit_walk_interval": 2.0, "quantity": 3}})
    endpoint = f"tcp://127.0.0.1:{_port(cfg)}"
    proc = _start(cfg)
    try:
        wait_until(lambda: _ask(endpoint, "status")["link"]["state"] == "READY", 30,
                   message="READY")
        sim.post("/fault/hold_fills", {"seconds": 120})
        sim.post("/fault/partial_fills", {"count": 1, "slices": 3})
        assert _ask(endpoint, "enter_now")["accepted"]
        (sale,) = wait_until(lambda: _live(sim, "sale"), 20, message="sale resting")
        _kill(proc)

        def hold() -> None:
            sim.post("/fault/hold_fills", {"seconds": 120})

        with on_executions(sim, "SLD", {1: hold}):
            sim.post("/fault/hold_fills", {"seconds": 0})
            wait_until(lambda: _sold(sim) == 1, 20, message="one slice sold while away")
        sim.post("/order/cancel", {"order_ref": sale["order_ref"]})
        wait_until(lambda: not _live(sim, "sale"), 10, message="the rest cancelled")
        proc = restarted_past_the_reset(sim, cfg, endpoint, AFTER_RESET)
        assert _exit_sizes(sim) == [1, 1]
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)


def test_an_entry_preparation_does_not_hold_up_the_executor(
    sim: Any, start_engine: Any
) -> None:
    """Item 11: the preparation a minute before a slot (contract lookups, ~30 lines
    opened) ran on the executor's thread: for its seconds (tens on a slow gateway) a
    late fill's ProtectLot waited behind it. Now it runs off the thread: the executor
    answers at once while the lines open, and the preparation still lands."""
    eng = start_engine()
    executor = eng.engine.directory.proxy("order_executor")

    def lines() -> int:
        return int(next(c for c in sim.get_state()["clients"] if c["client_id"] == 1)
                   ["subscriptions"])

    d = eng.engine.directory
    wait_until(lambda: d.spy_con_id in d.quotes and d.quotes[d.spy_con_id].mid, 20,
               message="the spot known")
    before = lines()
    assert executor.prepare_entry("2026-11-24", "15:00").get(timeout=60)
    executor.today().get(timeout=60)
    # A late fill's protection (ProtectLot, here for a lot it does not find) is taken
    # meanwhile too, not after the preparation.
    assert executor.protect_lot(10**6, "late fill").get(timeout=60) is False
    # Answered before the preparation opened its lines (the old code answered only
    # after all of them: ~30 lines, a second on ibsim).
    opened_by_then = lines()
    wait_until(lambda: lines() > before + 20, 30, message="the candidate lines open")
    assert opened_by_then < before + 20, (before, opened_by_then)
    executor.today().get(timeout=60)  # after the preparation's answer: kept, not released
    assert lines() > before + 20
