"""Money paths under IB's real behaviour (issue "Money paths hold under IB's real
behaviour"): each test is named after its path and drives it through ibsim over real
sockets with the unmodified ib_insync client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.engine.conftest import RunningEngine
from tests.support.zmq_request import wait_for_value, wait_until
from trading.records import Lot


def live_buys(sim: Any) -> list[dict[str, Any]]:
    return [o for o in sim.get_state()["open_orders"] if o["action"] == "BUY"]


@contextmanager
def watch_live_exits(sim: Any) -> Iterator[dict[str, int]]:
    """Samples the broker every ~20 ms: the most live BUY orders and OCA groups seen."""
    worst = {"orders": 0, "groups": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            buys = live_buys(sim)
            worst["orders"] = max(worst["orders"], len(buys))
            worst["groups"] = max(worst["groups"], len({o["oca_group"] for o in buys}))
            stop.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield worst
    finally:
        stop.set()
        t.join(5)


def protected_lot(eng: RunningEngine, timeout: float = 40.0) -> Lot:
    return wait_for_value(
        lambda: [lot for lot in eng.open_lots() if lot.state == "open"],
        lambda lots: len(lots) == 1, timeout, "one protected lot")[0]


def test_path_2_an_exit_pair_is_not_resent_while_the_first_may_be_live(
    sim: Any, start_engine: Any
) -> None:
    """Exit acks slower than order_ack_timeout: the legs are 'Unknown'. The old code
    sent a second pair at once (4 live BUYs on a one-lot short); now the engine asks
    the broker by orderRef and adopts the first pair when it shows up."""
    eng = start_engine({"strategy": {"order_ack_timeout": 0.5}})
    sim.post("/fault/slow_orders", {"seconds": 2.0, "action": "BUY"})
    with watch_live_exits(sim) as worst:
        assert eng.ask("enter_now")["accepted"]
        lot = protected_lot(eng)
        wait_until(lambda: len(live_buys(sim)) == 2, 10, message="the pair live")
    assert worst["orders"] <= 2 and worst["groups"] <= 1, worst
    refs = {o["order_ref"] for o in live_buys(sim)}
    assert refs == {lot.tp_order_ref, lot.sl_order_ref}


def test_path_1_an_error_while_placing_the_exit_pair_does_not_kill_the_entry(
    sim: Any, start_engine: Any
) -> None:
    """The socket drops while the exit pair waits for its ack, and the Connection is
    restarted: the old code died in place_exits (zip of two legs with no answers) after
    the sale had filled. Now the legs are looked up at the broker once the link is back:
    the pair that reached the gateway is adopted, the entry finishes."""
    eng = start_engine({"strategy": {"order_ack_timeout": 0.5}})
    sim.post("/fault/slow_orders", {"seconds": 3.0, "action": "BUY"})
    with watch_live_exits(sim) as worst:
        assert eng.ask("enter_now")["accepted"]
        wait_until(lambda: sim.get_state()["faults"]["slow_pending"] == 2, 30,
                   message="the exit pair sent, not yet acknowledged")
        sim.post("/fault/drop", {})
        lot = protected_lot(eng, 60)
        wait_until(lambda: len(live_buys(sim)) == 2, 10, message="the pair live")
    assert worst["groups"] <= 1, worst
    refs = {o["order_ref"] for o in live_buys(sim)}
    assert refs == {lot.tp_order_ref, lot.sl_order_ref}
    # The entry finished: its record says done with this lot (not left 'started').
    entries = eng.book().entries().get(timeout=5)
    assert [(e.state, e.lot_id) for e in entries] == [("done", lot.id)], entries


def test_path_3_a_sale_that_fills_late_is_protected_at_once(
    sim: Any, start_engine: Any
) -> None:
    """The sale's ack comes after order_ack_timeout: the entry gives up ('outcome
    unknown'), then the order reaches the market and fills. The old code opened the
    lot unprotected and left it to the repair tick (an hour here); now its exits are
    placed within seconds and `late_fill_protected` is alerted."""
    eng = start_engine({"strategy": {"order_ack_timeout": 0.5}})
    sim.post("/fault/slow_orders", {"seconds": 2.0, "action": "SELL"})
    assert eng.ask("enter_now")["accepted"]
    lot = protected_lot(eng, 30)
    wait_until(lambda: len(live_buys(sim)) == 2, 10, message="the pair live")
    assert {o["order_ref"] for o in live_buys(sim)} == {lot.tp_order_ref,
                                                         lot.sl_order_ref}
    kinds = [a["kind"] for a in eng.ask("alerts")["alerts"]]
    assert kinds.count("late_fill_protected") == 1, kinds


def test_path_8_a_slot_run_again_uses_a_fresh_attempt_serial(
    sim: Any, start_engine: Any
) -> None:
    """Every sale attempt of the slot is rejected: the slot fails. The operator runs it
    again by hand: the old code sent `…:sale:1` again, which the book refuses (UNIQUE
    orderRef), and the entry failed at once. Now the attempts go on at `…:sale:4`."""
    eng = start_engine({"strategy": {"sale_attempts": 3}})
    sim.post("/fault/reject", {"count": 3, "action": "SELL"})
    assert eng.ask("enter_now")["accepted"]
    failed = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                            lambda es: es and es[0].state == "failed", 30, "slot failed")
    assert eng.ask("enter_now")["accepted"]
    lot = protected_lot(eng)
    assert lot.order_ref.endswith(":sale:4"), lot.order_ref
    entries = eng.book().entries().get(timeout=5)
    assert [(e.slot, e.state) for e in entries] == [(failed[0].slot, "done")]


@pytest.mark.slow(seconds=15, reason="waits out a ZeroMQ request deadline and the entry after it")
def test_path_10_an_enter_now_that_timed_out_does_not_run_later(
    sim: Any, start_engine: Any
) -> None:
    """An entry is running (its sale waits 13 s for an ack). A second enter_now (for
    the day's other slot) cannot start within its 10 s deadline: the operator is told
    it timed out, and the old code then ran it anyway once the first entry finished
    (a second sale nobody was waiting for). Now it is refused."""
    from tests.support.zmq_request import zmq_request

    eng = start_engine({
        "schedule": {"entry_times": ["15:00", "15:30"]},
        "strategy": {"order_ack_timeout": 14.0},
    })
    sim.post("/fault/slow_orders", {"seconds": 13.0, "action": "SELL"})
    assert eng.ask("enter_now", {"slot": "15:00"})["accepted"]
    reply = zmq_request(eng.endpoint, "enter_now", {"slot": "15:30"}, timeout=30)
    assert not reply["ok"] or not reply["data"]["accepted"], reply
    protected_lot(eng, 60)
    # The executor has answered the queued command by now: ask it something after it.
    executor = eng.engine.directory.proxy("order_executor")
    executor.today().get(timeout=30)
    entries = eng.book().entries().get(timeout=5)
    assert [(e.slot, e.state) for e in entries] == [("15:00", "done")], entries
    sales = [e for e in sim.get_state()["executions"] if e["side"] in ("SLD", "SELL")]
    assert len(sales) == 1, sales


def test_path_9_open_lots_keep_their_quotes_after_an_engine_restart(
    sim: Any, start_engine: Any
) -> None:
    """The old MarketData watched only contracts added by a new entry: after a restart
    the held put had no quote and the dashboard's P&L stayed blank."""
    eng = start_engine()
    lot = protected_lot(eng) if eng.ask("enter_now")["accepted"] else None
    assert lot is not None
    eng.engine.stop()
    again = start_engine()  # same book, a new engine process's worth of actors
    wait_until(lambda: lot.con_id in again.ask("market_data")["lines"], 20,
               message="the held put streaming again")
    row = wait_for_value(
        lambda: next(p for p in again.ask("positions")["lots"] if p["id"] == lot.id),
        lambda p: p.get("pnl") is not None, 20, "the lot's P&L")
    assert row["mid"] is not None


# ---- path 6: stale quotes -----------------------------------------------------------

def _at(hh: int, mm: int) -> Any:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime(2026, 11, 24, hh, mm, tzinfo=ZoneInfo("America/New_York"))


def _open_lines_near_the_money(eng: RunningEngine) -> int:
    """Lines open on every put the entry could choose (7 days out, 1-5 % below spot),
    as a held lot's line would be: they answer at once with their last values."""
    from datetime import date

    from trading.strikes import choose_expiry_by_rule

    conn = eng.engine.directory.proxy("connection")
    spy = conn.qualify_stock("SPY", "BATS").get(timeout=10)
    spot = conn.quotes([spy], 3.0).get(timeout=10)[0].mid
    expirations, strikes = conn.option_chain("SPY", spy.con_id).get(timeout=10)
    expiry = choose_expiry_by_rule(expirations, date(2026, 11, 24), 7, "nearest_dte")
    near = [k for k in strikes if spot * 0.95 <= k <= spot * 0.99]
    puts = conn.qualify_options("SPY", expiry, near, "P").get(timeout=20)
    conn.subscribe(puts).get(timeout=10)
    wait_until(lambda: all(q.bid for q in conn.quotes(puts, 0.5).get(timeout=10)), 20,
               message="the put lines quoting")
    return spy.con_id


def test_path_6_a_stale_quote_is_not_sold_on(sim: Any, start_engine: Any) -> None:
    """Market data stops (everything else answers) while the lines are open: they keep
    their last values. The old code stamped them with the time they were read and sold
    on them; now a quote older than strategy.max_quote_age makes the slot wait
    ('waiting: ...', asked again every 3 s), and it sells once ticks are fresh again."""
    import time

    eng = start_engine({
        "schedule": {"entry_times": ["09:35"], "tick_seconds": 0.05},
        "strategy": {"strike_selection": "otm_distance", "otm_distance": 0.03},
    }, now=_at(9, 30))
    spy_id = _open_lines_near_the_money(eng)
    sim.post("/fault/mute", {"seconds": 120})  # ended below; long for a loaded machine
    quotes = eng.engine.directory.quotes
    wait_until(lambda: spy_id in quotes and time.time() - quotes[spy_id].time > 2.5, 15,
               message="the SPY line silent for longer than max_quote_age")
    sim.post("/clock", {"now": _at(9, 36).isoformat()})
    eng.clock.set(_at(9, 36))
    rows = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                          lambda r: r and r[0].state != "started", 30, "the slot decided")
    assert sim.get_state()["faults"]["muted"], "the mute ended before the entry ran: too slow"
    # Waiting for a fresh quote (an old one, or none since the line was asked again).
    assert rows[0].state == "interrupted" and rows[0].reason.startswith("waiting"), rows
    assert not [e for e in sim.get_state()["executions"] if e["side"] in ("SLD", "SELL")]
    sim.post("/fault/mute", {"seconds": 0})
    lot = protected_lot(eng, 60)
    entries = eng.book().entries().get(timeout=5)
    assert [(e.state, e.lot_id) for e in entries] == [("done", lot.id)], entries


# ---- path 11: margin ----------------------------------------------------------------

def _sale_rows(eng: RunningEngine) -> list[Any]:
    import sqlite3

    with sqlite3.connect(eng.engine.cfg.storage.path) as db:
        return db.execute("SELECT order_ref, status FROM orders WHERE role = 'sale'").fetchall()


@pytest.mark.parametrize(
    ("sim", "max_margin_use", "why"),
    [
        # ~$10.7k initial margin on ~$15k: ~70 % of net liquidation (IB would take it).
        ({"cash": 15_000.0}, 0.5, "of net liquidation"),
        # ~$10.7k on ~$10k equity: available funds go negative (IB rejects it: 201).
        ({"cash": 10_000.0}, 1.0, "available funds"),
    ],
    indirect=["sim"],
    ids=["margin_use", "available_funds"],
)
def test_path_11_a_sale_past_the_margin_limits_is_refused(
    sim: Any, start_engine: Any, max_margin_use: float, why: str
) -> None:
    """Before each sale a whatIf of it: the old code sold whatever margin it took (or
    sent an order IB rejects). Now the sale is refused before any order is written or
    sent, with a `risk_limit` alert naming the margin."""
    eng = start_engine({"risk": {"max_margin_use": max_margin_use}})
    assert eng.ask("enter_now")["accepted"]
    rows = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                          lambda r: r and r[0].state not in ("started", "interrupted"),
                          30, "the entry decided")
    assert rows[0].state == "failed" and why in rows[0].reason, rows
    alerts = [a for a in eng.ask("alerts")["alerts"] if a["kind"] == "risk_limit"]
    assert len(alerts) == 1 and why in alerts[0]["message"], alerts
    assert _sale_rows(eng) == []
    assert sim.get_state()["executions"] == [] and sim.get_state()["open_orders"] == []


@pytest.mark.parametrize("sim", [{"cash": 40_000.0}], indirect=True)
def test_path_11_a_sale_within_the_margin_limits_passes(sim: Any, start_engine: Any) -> None:
    """~$10.7k initial margin on ~$40k (~27 %): the whatIf passes and the sale is made."""
    eng = start_engine({"risk": {"max_margin_use": 0.5}})
    assert eng.ask("enter_now")["accepted"]
    protected_lot(eng)
    assert [a for a in eng.ask("alerts")["alerts"] if a["kind"] == "risk_limit"] == []
    assert [status for _, status in _sale_rows(eng)] == ["filled"]


@contextmanager
def on_executions(sim: Any, side: str, actions: dict[int, Any]) -> Iterator[None]:
    """Runs actions[n] as soon as the broker shows the n-th execution on `side` (a slice
    comes 0.15 s after the last: polled every 10 ms)."""
    stop = threading.Event()

    def watch() -> None:
        done: set[int] = set()
        while not stop.is_set() and len(done) < len(actions):
            n = len([e for e in sim.get_state()["executions"] if e["side"] == side])
            for k in sorted(actions):
                if k <= n and k not in done:
                    done.add(k)
                    actions[k]()
            stop.wait(0.01)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(5)


def test_path_5_a_partly_filled_sale_is_a_lot_of_what_filled_at_its_vwap(
    sim: Any, start_engine: Any
) -> None:
    """A sale of 3 fills in slices: 1, then 1 at a dearer price (the market moved), then
    the market stops filling. The old code counted the cancelled attempt as unfilled,
    sold 3 again, and opened a lot of 3 at the first slice's price with exits for 3. Now
    the lot is the 2 that filled at their VWAP, exits for 2, no second sale."""
    eng = start_engine({"strategy": {"quantity": 3, "limit_walk_interval": 1.0}})
    spot = sim.get_state()["spot"]
    sim.post("/fault/partial_fills", {"count": 1, "slices": 3})
    with on_executions(sim, "SLD", {
        1: lambda: sim.post("/market", {"spot": spot - 4.0}),
        2: lambda: sim.post("/fault/hold_fills", {"seconds": 120}),
    }):
        assert eng.ask("enter_now")["accepted"]
        lot = protected_lot(eng, 60)
    sells = [e for e in sim.get_state()["executions"] if e["side"] == "SLD"]
    assert [e["qty"] for e in sells] == [1, 1], sells
    assert len({e["order_ref"] for e in sells}) == 1
    vwap = sum(e["qty"] * e["price"] for e in sells) / 2
    assert lot.qty == 2 and abs(lot.entry_price - vwap) < 1e-6, (lot, sells)
    buys = live_buys(sim)
    assert sorted(o["qty"] - o["filled"] for o in buys) == [2, 2], buys
    assert not [o for o in sim.get_state()["open_orders"] if o["action"] == "SELL"]
    # No second sale was sent for the slot: its only sale intent is the first.
    entries = eng.book().entries().get(timeout=5)
    assert [(e.state, e.lot_id) for e in entries] == [("done", lot.id)], entries
    assert eng.book().order_by_ref(lot.order_ref.replace(":sale:1", ":sale:2")).get(
        timeout=5) is None


def test_path_5_an_exit_slice_reduces_the_lot_and_the_oca_rest_protects_the_rest(
    sim: Any, start_engine: Any
) -> None:
    """A lot of 3; its TP fills 1 of 3, then the market stops filling. The old code
    closed the whole lot at the first slice (and OCA type 1 cancelled the SL: 2 short
    with no stop). Now a piece of 1 closes with its own realized P&L, the lot keeps 2,
    the same pair stays live with the SL shrunk to 2; the rest closes slice by slice."""
    eng = start_engine({"strategy": {"quantity": 3}})
    assert eng.ask("enter_now")["accepted"]
    lot = protected_lot(eng)
    wait_until(lambda: len(live_buys(sim)) == 2, 10, message="the pair live")
    spot = sim.get_state()["spot"]
    sim.post("/fault/partial_fills", {"count": 1, "slices": 3})
    with on_executions(sim, "BOT", {1: lambda: sim.post("/fault/hold_fills", {"seconds": 120})}):
        sim.post("/market", {"spot": spot + 40.0})  # the put falls through its TP
        wait_until(lambda: any(e["side"] == "BOT" for e in sim.get_state()["executions"]),
                   20, message="the first TP slice")

    def lots() -> list[Lot]:
        return eng.book().lots().get(timeout=5)

    state = wait_for_value(lots, lambda ls: any(x.state == "closed" for x in ls), 10,
                           "the slice's piece closed")
    held = next(x for x in state if x.id == lot.id)
    piece = next(x for x in state if x.state == "closed")
    assert (held.qty, held.state) == (2, "open"), held
    assert piece.qty == 1 and piece.close_reason == "take_profit", piece
    assert piece.realized_pnl is not None
    buys = {o["order_ref"]: o for o in live_buys(sim)}
    assert set(buys) == {lot.tp_order_ref, lot.sl_order_ref}, buys
    assert {r: o["qty"] - o["filled"] for r, o in buys.items()} == {
        lot.tp_order_ref: 2, lot.sl_order_ref: 2}
    # The repair job sees the remainder fits the lot: it keeps the pair (no resize).
    report = eng.engine.directory.proxy("order_executor").repair_exits("test").get(timeout=30)
    assert report["resized"] == 0 and report["repaired"] == 0, report
    assert set(o["order_ref"] for o in live_buys(sim)) == set(buys)
    sim.post("/fault/hold_fills", {"seconds": 0})
    final = wait_for_value(lots, lambda ls: all(x.state == "closed" for x in ls), 20,
                           "every contract closed")
    assert sum(x.qty for x in final) == 3 and all(
        x.realized_pnl is not None for x in final), final
    fills = eng.book().fills().get(timeout=5)
    bought = [f for f in fills if f.side == "BOT"]
    assert len(bought) == len({f.exec_id for f in bought}) == 3, bought
    assert not live_buys(sim)



def test_path_4_a_sale_of_a_crossed_modify_is_one_sale(
    sim: Any, start_engine: Any
) -> None:
    """The walk's re-price loses the race with a fill (fill, then 104; ib_insync marks
    the trade Cancelled on the error): the fill counts, no second sale."""
    eng = start_engine({"strategy": {"quantity": 2, "limit_walk_interval": 0.3}})
    sim.post("/fault/hold_fills", {"seconds": 120})
    sim.post("/fault/fill_on_cancel", {"count": 1, "code": 10148})
    with watch_live_exits(sim) as worst:
        assert eng.ask("enter_now")["accepted"]
        lot = protected_lot(eng, 60)
        entries = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                                 lambda es: es and es[0].state != "started", 30,
                                 "the entry finished")
    sells = [e for e in sim.get_state()["executions"] if e["side"] == "SLD"]
    assert sum(e["qty"] for e in sells) == 2 and lot.qty == 2, (sells, lot)
    assert {e["order_ref"] for e in sells} == {lot.order_ref}
    assert not [o for o in sim.get_state()["open_orders"] if o["action"] == "SELL"]
    assert [(e.state, e.lot_id) for e in entries] == [("done", lot.id)], entries
    assert worst["orders"] <= 2 and worst["groups"] <= 1, worst


def live_sells(sim: Any) -> list[dict[str, Any]]:
    return [o for o in sim.get_state()["open_orders"] if o["action"] == "SELL"]


@pytest.mark.slow(seconds=27, reason="two entries walk their limits attempt by attempt on the "
                  "wall clock")
def test_path_4_a_fill_between_sale_attempts_is_looked_for_at_the_broker(
    sim: Any, start_engine: Any
) -> None:
    """The sale's ack is late: the entry gives up ("outcome unknown") and fails, while
    `…:sale:1` is on its way to the market. The operator runs the slot again at once:
    the old code sent `…:sale:2` and the first came alive beside it (two sales for one
    slot). Now the broker is asked by orderRef first (executions, open orders): the
    earlier attempt is waited for and walked itself; only once it is known dead does
    a new attempt go out."""
    eng = start_engine({"strategy": {"order_ack_timeout": 0.5, "limit_walk_interval": 1.0}})
    sim.post("/fault/hold_fills", {"seconds": 300})  # nothing fills: attempts only
    sim.post("/fault/slow_orders", {"seconds": 4.0, "action": "SELL"})
    worst = {"sells": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            worst["sells"] = max(worst["sells"], len(live_sells(sim)))
            stop.wait(0.02)

    t = threading.Thread(target=sample, daemon=True)
    t.start()

    def entry_state() -> str:
        entries = eng.book().entries().get(timeout=5)
        return entries[0].state if entries else ""
    try:
        assert eng.ask("enter_now")["accepted"]
        wait_until(lambda: entry_state() == "failed", 30, message="the entry gave up")
        sim.post("/fault/slow_orders", {"seconds": 0})
        reply = eng.ask("enter_now", {"slot": "15:00"})
        assert reply["accepted"], reply
        wait_until(lambda: entry_state() == "started", 10, message="the re-run started")
        wait_until(lambda: entry_state() == "failed", 90, message="the re-run ended")
    finally:
        stop.set()
        t.join(5)
    assert worst["sells"] <= 1, worst
    assert not live_sells(sim)
    assert not sim.get_state()["executions"]
