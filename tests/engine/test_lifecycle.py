"""Issue 3 acceptance: the trade lifecycle against ibsim over real sockets."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import RunningEngine
from tests.support.zmq_request import wait_for_value, wait_until
from trading.records import Lot


def broker_orders(sim: Any, con_id: int | None = None) -> list[dict[str, Any]]:
    orders = sim.get_state()["open_orders"]
    return [o for o in orders if con_id is None or o["con_id"] == con_id]


def sale_executions(sim: Any) -> list[dict[str, Any]]:
    return [e for e in sim.get_state()["executions"] if e["side"] in ("SLD", "SELL")]


def enter_and_wait(eng: RunningEngine, lots_before: int) -> Lot:
    reply = eng.ask("enter_now")
    assert reply["accepted"], reply
    lots = wait_for_value(
        lambda: [lot for lot in eng.open_lots() if lot.state == "open"],
        lambda lots: len(lots) > lots_before,
        30,
        "a new protected lot",
    )
    return max(lots, key=lambda lot: lot.id)


def assert_protected_at_broker(sim: Any, lot: Lot) -> None:
    orders = [
        o
        for o in broker_orders(sim, lot.con_id)
        if o["order_ref"] in (lot.tp_order_ref, lot.sl_order_ref)
    ]
    assert len(orders) == 2, orders
    tp = next(o for o in orders if o["order_type"] == "LMT")
    sl = next(o for o in orders if o["order_type"] == "STP")
    assert tp["action"] == sl["action"] == "BUY"
    assert tp["oca_group"] == sl["oca_group"] != ""
    assert tp["lmt_price"] == lot.tp_price
    assert sl["aux_price"] == lot.sl_price


def test_sells_one_put_and_protects_it_with_an_oca_pair(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    lot = enter_and_wait(eng, 0)
    assert lot.qty == 1 and lot.right == "P"
    assert lot.tp_price == round(lot.entry_price * 0.4 + 1e-9, 2)
    assert_protected_at_broker(sim, lot)
    assert len(sale_executions(sim)) == 1
    # The book saw the fill once, with its execution id.
    fills = eng.book().fills(lot.id).get(timeout=5)
    assert len(fills) == 1 and fills[0].side == "SLD"
    # The day's entry is recorded; a second manual entry is refused by the risk limit.
    positions = eng.ask("positions")
    assert positions["lots"][0]["tp"]["status"] == "submitted"
    status = eng.ask("status")
    assert status["link"]["state"] == "READY"
    assert status["entry"]["slots"][0]["state"] == "done"


def test_second_sale_on_the_same_strike_cancels_and_restores_exits(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(
        {
            "schedule": {"entry_times": ["15:00", "15:30"]},
            "strategy": {"strike_selection": "otm_distance", "otm_distance": 0.03},
        }
    )
    sim.post("/market", {"spot": 601.0, "walk_sigma": 0.0})
    first = enter_and_wait(eng, 0)
    old_exit_ids = {first.tp_order_id, first.sl_order_id}
    sim.post("/market", {"spot": 600.5})  # same strike (582), a different option price
    second = enter_and_wait(eng, 1)
    assert second.con_id == first.con_id
    first_now = eng.book().lot(first.id).get(timeout=5)
    assert first_now.state == "open"
    assert {first_now.tp_order_id, first_now.sl_order_id}.isdisjoint(old_exit_ids)
    assert_protected_at_broker(sim, first_now)
    assert_protected_at_broker(sim, second)
    view = wait_for_value(
        lambda: eng.ask("positions"),
        lambda v: all(lot["pnl"] is not None for lot in v["lots"]),
        10,
        "P&L for both lots",
    )
    by_id = {row["id"]: row for row in view["lots"]}
    a, b = by_id[first.id], by_id[second.id]
    assert a["entry_price"] != b["entry_price"]
    assert a["mid"] == b["mid"]
    assert a["pnl"] != b["pnl"]
    assert len(sale_executions(sim)) == 2


def test_rejected_sale_restores_exits_and_alerts(sim: Any, start_engine: Any) -> None:
    eng = start_engine(
        {
            "schedule": {"entry_times": ["15:00", "15:30"]},
            "strategy": {"strike_selection": "otm_distance", "otm_distance": 0.03},
        }
    )
    first = enter_and_wait(eng, 0)
    sim.post(
        "/fault/reject",
        {"count": 10, "action": "SELL", "code": 201, "message": "Order rejected - reason: test"},
    )
    assert eng.ask("enter_now")["accepted"]
    wait_until(
        lambda: any(e.state == "failed" for e in eng.book().entries().get(timeout=5)),
        30,
        message="entry failed",
    )
    assert len(eng.open_lots()) == 1
    assert len(sale_executions(sim)) == 1
    lot = eng.book().lot(first.id).get(timeout=5)
    assert lot.state == "open"
    assert_protected_at_broker(sim, lot)
    kinds = [a["kind"] for a in eng.ask("alerts")["alerts"]]
    assert "order_rejected" in kinds


def test_exits_rejected_three_times_leave_the_lot_unprotected(sim: Any, start_engine: Any) -> None:
    eng = start_engine({"schedule": {"entry_times": ["15:00", "15:30"]}})
    first = enter_and_wait(eng, 0)
    sim.post(
        "/fault/reject",
        {
            "count": 3,
            "action": "BUY",
            "order_type": "STP",
            "code": 201,
            "message": "Order rejected - reason: test",
        },
    )
    # Another strike, so the first lot's exits stay; held still, and not so far down that
    # the first put (589) reaches its stop (590 with the walk did, now and then).
    sim.post("/market", {"spot": 594.0, "walk_sigma": 0.0})
    assert eng.ask("enter_now")["accepted"]
    lot = wait_until(
        lambda: next((x for x in eng.open_lots() if x.id != first.id), None),
        30,
        message="second lot",
    )
    # The alert comes after the last attempt; the lot is "unprotected" from its fill on.
    wait_until(
        lambda: "lot_unprotected" in [a["kind"] for a in eng.ask("alerts")["alerts"]],
        30,
        message="lot_unprotected alert",
    )
    lot = eng.book().lot(lot.id).get(timeout=5)
    assert lot.state == "unprotected"
    mine = [
        o
        for o in broker_orders(sim, lot.con_id)
        if o["order_ref"].startswith(f"tb:lot{lot.id}:")
    ]
    assert not mine
    assert_protected_at_broker(sim, eng.book().lot(first.id).get(timeout=5))


def spot_closes_a_lot(sim: Any, eng: RunningEngine, spot: float) -> tuple[Lot, Lot]:
    """A new lot, then SPY moved to `spot`: the lot as entered, and once it is closed."""
    lot = enter_and_wait(eng, 0)
    sim.post("/market", {"spot": spot})
    closed = wait_for_value(
        lambda: eng.book().lot(lot.id).get(timeout=5),
        lambda x: x.state == "closed",
        20,
        "lot closed",
    )
    return lot, closed


def test_take_profit_closes_the_lot_and_cancels_the_sibling(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    lot, closed = spot_closes_a_lot(sim, eng, 660.0)  # the put collapses below its TP
    assert closed.close_reason == "take_profit"
    fills = wait_for_value(
        lambda: eng.book().fills(lot.id).get(timeout=5),
        lambda fs: len(fs) == 2 and all(f.commission for f in fs),
        10,
        "both fills with commissions",
    )
    closed = eng.book().lot(lot.id).get(timeout=5)
    commissions = sum(f.commission or 0 for f in fills)
    expected = round((lot.entry_price - closed.exit_price) * 100 - commissions, 2)
    assert closed.realized_pnl == expected
    wait_until(lambda: not broker_orders(sim, lot.con_id), 10, message="sibling cancelled")


def test_stop_loss_closes_the_lot(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    lot, closed = spot_closes_a_lot(sim, eng, 480.0)  # deep in the money: the put triples
    assert closed.close_reason == "stop_loss"
    assert closed.realized_pnl < 0
    assert len({f.exec_id for f in eng.book().fills(lot.id).get(timeout=5)}) == 2
    wait_until(lambda: not broker_orders(sim, lot.con_id), 10, message="sibling cancelled")


def test_an_entry_leaves_only_the_lines_it_needs(sim: Any, start_engine: Any) -> None:
    """Found by bench.ticks: each quote look opened another market-data line (ib_insync
    finds tickers by Contract identity), so 25 candidate strikes stayed streaming."""
    eng = start_engine()
    lot = enter_and_wait(eng, 0)

    def engine_lines() -> int:
        return int(next(c for c in sim.get_state()["clients"] if c["client_id"] == 1)
                   ["subscriptions"])

    # The lot's line opens just after its exits: wait for it; leaked lines would show
    # as more than 2 for good.
    wait_for_value(engine_lines, lambda n: n == 2, 10, "SPY and the lot's put streaming")
    assert sorted(eng.ask("market_data")["lines"])[-1] in (lot.con_id, 756733)


def test_finished_trades_leave_the_client_but_open_exits_stay_live(
    sim: Any, start_engine: Any, monkeypatch: Any
) -> None:
    """Found by bench.memory: ib_insync kept every Trade of the session (~30 KB a
    trade). Forgetting finished ones must never touch a live exit: the lot still closes
    by its take profit afterwards, with its fill stored once."""
    import actors.connection.actor

    eng = start_engine()
    lot = enter_and_wait(eng, 0)
    conn = eng.engine.directory.proxy("connection")
    monkeypatch.setattr(actors.connection.actor, "KEEP_FINISHED_TRADES", 0)
    assert conn.forget_finished_trades().get(timeout=5) >= 1  # the filled sale
    ib = conn.ib.get(timeout=5)
    refs = {t.order.orderRef for t in ib.trades()}
    assert refs == {lot.tp_order_ref, lot.sl_order_ref}, refs
    sim.post("/market", {"spot": 680.0})  # far out of the money: the take profit fills
    closed = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                            lambda x: x.state == "closed", 30, "lot closed by its TP")
    assert closed.close_reason == "take_profit"
    fills = eng.book().fills(lot.id).get(timeout=5)
    assert sorted(f.order_ref for f in fills) == sorted([lot.order_ref,
                                                            lot.tp_order_ref])


def test_a_take_profit_filled_before_its_stop_is_placed_leaves_no_order(
    sim: Any, start_engine: Any
) -> None:
    """Found by bench.fills: the TP filled on arrival, before the SL reached the broker,
    so the SL joined a filled OCA group and rested alone on a closed lot (a BUY STP that
    would open a long put). Orders are slowed so the spot jump lands after the sale's
    fill and before the exits arrive."""
    eng = start_engine()
    sim.post("/fault/slow_orders", {"seconds": 0.5})
    assert eng.ask("enter_now")["accepted"]
    wait_until(lambda: sale_executions(sim), 30, message="the sale filled")
    assert not broker_orders(sim)  # the exits are still on their way
    sim.post("/market", {"spot": 680.0})  # the put collapses: the TP fills on arrival
    wait_until(lambda: "entry_done" in [a["kind"] for a in eng.ask("alerts")["alerts"]],
               20, message="the entry over (its alert comes after the exits)")
    closed = eng.ask("trades")["trades"]
    assert [t["close_reason"] for t in closed] == ["take_profit"], closed
    # Cancelled by the entry itself, before it ends (not left to a later repair).
    assert broker_orders(sim) == []
    positions = [p for p in sim.get_state()["positions"] if p.get("position")]
    assert positions == [], positions


def test_repair_cancels_exits_left_on_a_closed_lot(sim: Any, start_engine: Any) -> None:
    """A live exit whose lot is closed protects nothing and would open a position if it
    filled: the repair job cancels it and says so. (The lot is closed behind the
    engine's back here, in its SQLite file, as a crash between the two could leave it.)"""
    from book.store import Store

    eng = start_engine()
    lot = enter_and_wait(eng, 0)
    assert len(broker_orders(sim, lot.con_id)) == 2
    store = Store(eng.engine.cfg.storage.path)
    assert store.close_lot(lot.id, 0.5, 1.0, "manual", 100.0)
    store.close()
    eng.ask("repair_exits")
    wait_until(lambda: not broker_orders(sim, lot.con_id), 20, message="both legs cancelled")
    wait_until(lambda: "stray_exits_cancelled" in [a["kind"] for a in eng.ask("alerts")["alerts"]],
               10, message="stray_exits_cancelled alert")


def test_market_data_samples_date_the_counts_it_applied(sim: Any, start_engine: Any) -> None:
    """bench.ticks reads the engine's message-count samples of a step once (no polling
    during it): each is when MarketData applied a batch and the client's count then,
    at most one per 20 ms, only those since the time asked; a bad time changes nothing."""
    import itertools
    import time

    from tests.support.zmq_request import zmq_request

    eng = start_engine()
    since = time.time()
    samples = wait_for_value(
        lambda: eng.ask("market_data", {"samples_since": since})["samples"],
        lambda s: len(s) >= 3, 60, "three count samples")  # a deadline: busy CI is slow
    times = [t for t, _n in samples]
    counts = [n for _t, n in samples]
    assert times[0] >= since and times == sorted(times)
    assert all(b - a >= 0.02 for a, b in itertools.pairwise(times))
    assert counts == sorted(counts) and counts[0] > 0
    later = eng.ask("market_data", {"samples_since": times[-1] + 1e-6})["samples"]
    assert all(t > times[-1] for t, _n in later)
    assert counts[-1] <= eng.ask("market_data")["messages_received"]
    assert "samples" not in eng.ask("market_data")  # not asked: the reply as before
    reply = zmq_request(eng.endpoint, "market_data", {"samples_since": "now"})
    assert not reply["ok"] and reply["error"]["code"] == "bad_args"


def test_a_sale_beside_several_lots_on_its_strike_goes_once_their_exits_are_cancelled(
    sim: Any, start_engine: Any
) -> None:
    """Issue 34: the sale's lookups and quote are asked, the exits' cancels sent, and
    the sale's intent written while the gateway answers them. ibsim refuses a SELL
    while a BUY of ours rests on the contract (201, self-cross), so a sale that overtook
    any of the six cancels would be refused:
    each entry sells at its first attempt, and every earlier lot gets its exits back."""
    eng = start_engine(
        {
            "schedule": {"entry_times": ["15:00", "15:10", "15:20", "15:30"]},
            "strategy": {"strike_selection": "otm_distance", "otm_distance": 0.03},
        }
    )
    sim.post("/market", {"spot": 601.0, "walk_sigma": 0.0})
    lots = [enter_and_wait(eng, 0)]
    for n in range(1, 4):
        lots.append(enter_and_wait(eng, n))
    assert len({lot.con_id for lot in lots}) == 1
    assert [lot.order_ref.rsplit(":", 1)[1] for lot in lots] == ["1"] * 4  # first attempts
    kinds = [a["kind"] for a in eng.ask("alerts")["alerts"]]
    assert "order_rejected" not in kinds, kinds
    for lot in lots:
        now = eng.book().lot(lot.id).get(timeout=5)
        assert now.state == "open"
        assert_protected_at_broker(sim, now)
    assert len(sale_executions(sim)) == 4
