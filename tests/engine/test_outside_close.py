"""Issue 25 acceptance: a put closed (or sold) by hand outside the engine, through
ibsim's `POST /order/external` with client 0 (an order typed into TWS or the app)."""

from __future__ import annotations

from typing import Any

from tests.engine.conftest import RunningEngine
from tests.engine.test_lifecycle import enter_and_wait
from tests.support.zmq_request import wait_for_value, wait_until
from trading.records import Lot

REPAIR = 6.0  # the repair interval of these tests (seconds)


def our_buys(sim: Any, con_id: int) -> list[dict[str, Any]]:
    return [
        o for o in sim.get_state()["open_orders"]
        if o["con_id"] == con_id and o["action"] == "BUY" and o["order_ref"].startswith("tb:")
    ]


def hand_order(sim: Any, con_id: int, action: str, qty: int = 1) -> dict[str, Any]:
    """An order entered in TWS: bound to client 0, no orderRef; returns its execution."""
    before = len(sim.get_state()["executions"])
    sim.post("/order/external", {"client_id": 0, "orders": [
        {"order_ref": "", "con_id": con_id, "action": action, "qty": qty}]})
    execs = sim.get_state()["executions"][before:]
    assert len(execs) == 1, execs
    return execs[0]


def alerts(eng: RunningEngine, kind: str) -> list[dict[str, Any]]:
    return [a for a in eng.ask("alerts")["alerts"] if a["kind"] == kind]


def closed_lots(eng: RunningEngine) -> list[Lot]:
    return eng.book().lots(["closed"]).get(timeout=5)


def cfg(**strategy: Any) -> dict[str, dict[str, Any]]:
    return {"schedule": {"entry_times": ["15:00"], "repair_interval": REPAIR},
            "strategy": strategy}


def expected_pnl(entry: float, exit_price: float, qty: int, commissions: float) -> float:
    return round((entry - exit_price) * 100 * qty - commissions, 2)


def test_hand_close_cancels_the_exits_within_one_repair_interval(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg())
    lot = enter_and_wait(eng, 0)
    assert len(our_buys(sim, lot.con_id)) == 2
    ex = hand_order(sim, lot.con_id, "BUY")
    wait_until(lambda: not our_buys(sim, lot.con_id), REPAIR,
               message="no BUY of ours left on the contract")
    closed = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                            lambda x: x.state == "closed", 10, "the lot closed")
    assert closed.close_reason == "closed_outside"
    assert closed.exit_price == ex["price"] and not closed.pnl_estimated
    # P&L from the outside execution: premium kept minus buy-back, both commissions.
    want = expected_pnl(lot.entry_price, ex["price"], 1, 0.65 + ex["commission"])
    wait_until(lambda: eng.book().lot(lot.id).get(timeout=5).realized_pnl == want, 10,
               message=f"realized P&L {want}")
    trade = eng.ask("trades")["trades"][0]
    assert trade["close_reason"] == "closed_outside" and trade["realized_pnl"] == want
    assert eng.ask("positions")["lots"] == []
    # One alert, also after another repair pass; no second "stray exits" alert.
    eng.ask("repair_exits")
    assert len(alerts(eng, "closed_outside")) == 1
    assert alerts(eng, "stray_exits_cancelled") == []
    assert not sim.get_state()["positions"]


def test_hand_close_while_the_engine_is_down_is_seen_at_restart(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg())
    lot = enter_and_wait(eng, 0)
    eng.engine.stop()
    ex = hand_order(sim, lot.con_id, "BUY")
    assert len(our_buys(sim, lot.con_id)) == 2  # nobody cancelled them yet
    eng = start_engine(cfg())
    wait_until(lambda: not our_buys(sim, lot.con_id), 20,
               message="the restarted engine cancelled the exits")
    closed = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                            lambda x: x.state == "closed", 10, "the lot closed")
    assert closed.close_reason == "closed_outside" and closed.exit_price == ex["price"]
    want = expected_pnl(lot.entry_price, ex["price"], 1, 0.65 + ex["commission"])
    assert closed.realized_pnl == want
    eng.ask("repair_exits")
    assert len(alerts(eng, "closed_outside")) == 1
    assert eng.open_lots() == []


def test_partial_hand_close_of_a_3_lot_reduces_it_and_resizes_its_exits(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg(quantity=3))
    lot = enter_and_wait(eng, 0)
    assert lot.qty == 3
    assert [o["qty"] for o in our_buys(sim, lot.con_id)] == [3, 3]
    ex = hand_order(sim, lot.con_id, "BUY", 1)
    wait_until(
        lambda: sorted(o["qty"] for o in our_buys(sim, lot.con_id)) == [2, 2],
        REPAIR + 5, message="exits resized to 2",
    )
    # The book records the new pair just after the broker acks it: wait for that too.
    left = wait_for_value(
        lambda: eng.book().lot(lot.id).get(timeout=5),
        lambda x: {x.tp_order_ref, x.sl_order_ref} == {
            o["order_ref"] for o in our_buys(sim, lot.con_id)}, 10, "the book's new pair")
    assert left.qty == 2 and left.state == "open"
    (piece,) = closed_lots(eng)
    assert piece.qty == 1 and piece.close_reason == "closed_outside"
    assert piece.entry_price == lot.entry_price and piece.exit_price == ex["price"]
    assert piece.realized_pnl == expected_pnl(
        lot.entry_price, ex["price"], 1, ex["commission"])
    assert [p["position"] for p in sim.get_state()["positions"]] == [-2]
    eng.ask("repair_exits")
    assert len(alerts(eng, "closed_outside")) == 1
    assert alerts(eng, "exits_repaired") == []


def _a_put(sim: Any) -> int:
    spec = {"symbol": "SPY", "sec_type": "OPT", "expiry": "20261201", "strike": 580.0,
            "right": "P"}
    (contract,) = sim.call(lambda gw: gw.broker.resolve(spec))
    return int(contract["con_id"])


def test_hand_sale_with_adoption_off_alerts_and_places_no_order(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg())
    con_id = _a_put(sim)
    hand_order(sim, con_id, "SELL")
    wait_until(lambda: alerts(eng, "outside_position"), REPAIR + 5,
               message="an alert about the hand sale")
    eng.ask("repair_exits")
    eng.ask("repair_exits")
    assert [o for o in sim.get_state()["open_orders"] if o["order_ref"].startswith("tb:")] == []
    assert eng.open_lots() == []
    assert len(alerts(eng, "outside_position")) == 1
    assert "not adopted" in alerts(eng, "outside_position")[0]["message"]


def test_hand_sale_with_adoption_on_imports_a_lot_and_places_its_exits(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine(cfg(adopt_outside_positions=True))
    con_id = _a_put(sim)
    ex = hand_order(sim, con_id, "SELL", 2)
    lot = wait_for_value(
        lambda: [x for x in eng.open_lots() if x.con_id == con_id and x.state == "open"],
        lambda lots: len(lots) == 1, REPAIR + 10, "the imported lot, protected")[0]
    assert lot.imported and lot.qty == 2
    assert abs(lot.entry_price - ex["price"]) < 0.01
    orders = our_buys(sim, con_id)
    assert sorted(o["order_type"] for o in orders) == ["LMT", "STP"]
    assert all(o["qty"] == 2 for o in orders)
    assert len(alerts(eng, "outside_position")) == 1


def test_two_hand_closes_in_a_row_are_both_seen_without_the_repair_tick(
    sim: Any, start_engine: Any
) -> None:
    """A position update that comes while the check of the one before is in flight is
    checked after it, not left to the repair tick (here ten minutes away)."""
    eng = start_engine({"schedule": {"entry_times": ["15:00"], "repair_interval": 600.0},
                        "strategy": {"quantity": 3}})
    lot = enter_and_wait(eng, 0)
    hand_order(sim, lot.con_id, "BUY", 1)
    hand_order(sim, lot.con_id, "BUY", 1)
    left = wait_for_value(lambda: eng.open_lots(),
                          lambda lots: sum(x.qty for x in lots) == 1, 15,
                          "the book down to the one contract the broker holds")
    assert [x.id for x in left] == [lot.id]
    assert sum(x.qty for x in closed_lots(eng)) == 2  # one piece or two, as seen


def test_a_long_put_no_lot_explains_is_alerted_and_never_traded(
    sim: Any, start_engine: Any
) -> None:
    """An exit that fills after its position is gone (an assignment the engine had not
    seen yet, a hand close) leaves a LONG put. Found by the chaos soak (seed 2): the
    engine said nothing. Now one critical alert per change, and no order."""
    eng = start_engine(cfg())
    con_id = _a_put(sim)
    hand_order(sim, con_id, "BUY")
    found = wait_for_value(lambda: [a for a in alerts(eng, "outside_position")
                                    if "LONG" in a["message"]], lambda a: a, REPAIR + 5,
                           "an alert about the long put")
    assert found[0]["severity"] == "critical"
    eng.ask("repair_exits")
    eng.ask("repair_exits")
    assert len([a for a in alerts(eng, "outside_position") if "LONG" in a["message"]]) == 1
    assert [o for o in sim.get_state()["open_orders"] if o["order_ref"].startswith("tb:")] == []
    assert eng.open_lots() == []
    # Sold by hand (flat), then held long again: a new change, so a new alert (folded
    # alerts count their repeats).
    hand_order(sim, con_id, "SELL")
    wait_until(lambda: eng.book().get_kv(f"long_position:{con_id}").get(timeout=5) is None,
               REPAIR + 5, message="the flat long forgotten")
    hand_order(sim, con_id, "BUY")
    wait_until(lambda: sum(int(a.get("count") or 1) for a in alerts(eng, "outside_position")
                           if "LONG" in a["message"]) == 2, REPAIR + 5,
               message="the long held again is reported again")
    assert eng.open_lots() == []


def test_no_sale_on_a_put_the_account_holds_long(sim: Any, start_engine: Any) -> None:
    """Found by the chaos soak (seed 5106, quantity 3): a sale on a put held long (an exit
    that filled past its lot) netted against it, and the new lot's exits covered more than
    the short. The entry now refuses that put, with a risk_limit alert."""
    sim.post("/market", {"walk_sigma": 0.0})  # spot stays: the second entry picks the same put
    conf = cfg()
    conf["schedule"]["entry_times"] = ["15:00", "15:30"]
    eng = start_engine(conf)
    lot = enter_and_wait(eng, 0)
    hand_order(sim, lot.con_id, "BUY", qty=2)  # closes the lot by hand, and one more: long
    wait_for_value(lambda: [a for a in alerts(eng, "outside_position") if "LONG" in a["message"]],
                   lambda a: a, REPAIR + 5, "an alert about the long put")
    wait_until(lambda: lot.con_id in (eng.book().get_kv("long_positions").get(timeout=5) or []),
               10, message="the book knows the long")
    sells = len([e for e in sim.get_state()["executions"] if e["side"] == "SLD"])
    reply = eng.ask("enter_now", {"slot": "15:30"})
    assert reply["accepted"], reply
    entry = wait_for_value(
        lambda: [e for e in eng.book().entries().get(timeout=5) if e.slot == "15:30"],
        lambda rows: rows and rows[0].state not in ("started",), 30, "the second entry")[0]
    assert "long" in (entry.reason or ""), entry
    assert len([e for e in sim.get_state()["executions"] if e["side"] == "SLD"]) == sells
    assert any("long" in a["message"] for a in alerts(eng, "risk_limit"))
