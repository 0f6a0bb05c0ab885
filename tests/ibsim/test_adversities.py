"""Issue 13: IB's adversities: partial fills, stalls, fills that cross a cancel, errors
with the ids IB uses, early assignment, OCC expiry, margin rejections, daily resets."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from ib_insync import IB, LimitOrder, MarketOrder, Option

from ibsim.harness import ControlError
from tests.ibsim.conftest import EXPIRY, put, wait_ib


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req, code, msg, c: seen.append((req, code, msg))
    return seen


def test_partial_fills_arrive_in_slices_each_with_exec_commission_and_status(
        sim: Any, connect: Any) -> None:
    ib = connect()
    opt, _t = put(ib)
    sim.post("/fault/partial_fills", {"count": 1, "slices": 3})
    statuses: list[tuple[str, float, float]] = []
    sale = ib.placeOrder(opt, MarketOrder("SELL", 3, orderRef="pf:sale"))
    sale.statusEvent += lambda tr: statuses.append(
        (tr.orderStatus.status, tr.orderStatus.filled, tr.orderStatus.remaining))
    wait_ib(ib, lambda: sale.orderStatus.status == "Filled", what="all slices")
    wait_ib(ib, lambda: all(f.commissionReport.commission > 0 for f in sale.fills),
            what="a commission per slice")
    assert [f.execution.shares for f in sale.fills] == [1, 1, 1]
    assert len({f.execution.execId for f in sale.fills}) == 3
    assert [f.execution.cumQty for f in sale.fills] == [1, 2, 3]
    assert [f.commissionReport.commission for f in sale.fills] == [0.65] * 3
    assert ("Submitted", 1.0, 2.0) in statuses and ("Submitted", 2.0, 1.0) in statuses
    # Moments apart: the slices do not share one instant.
    stamps = [e["time"] for e in sim.get_state()["executions"] if e["order_ref"] == "pf:sale"]
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(stamps))
    # Only the next N orders: the second fills whole.
    again = ib.placeOrder(opt, MarketOrder("SELL", 2))
    wait_ib(ib, lambda: again.orderStatus.status == "Filled", what="whole fill")
    assert [f.execution.shares for f in again.fills] == [2]


def test_cancel_after_a_partial_fill_leaves_the_filled_part(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, _t = put(ib)
    sim.post("/fault/partial_fills", {"count": 1, "slices": 4})
    sale = ib.placeOrder(opt, MarketOrder("SELL", 4))
    wait_ib(ib, lambda: sale.orderStatus.filled >= 1, what="first slice")
    ib.cancelOrder(sale.order)
    wait_ib(ib, lambda: sale.orderStatus.status == "Cancelled", what="cancel")
    filled = sale.orderStatus.filled
    assert 1 <= filled < 4
    positions = {p["con_id"]: p["position"] for p in sim.get_state()["positions"]}
    assert positions[opt.conId] == -filled
    ib.sleep(0.4)
    assert {p["con_id"]: p["position"] for p in sim.get_state()["positions"]}[opt.conId] == (
        -filled)  # nothing more fills after the cancel


def test_partial_fill_of_an_oca_leg_cancels_type_1_siblings_reduces_type_2(
        sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    for oca_type in (1, 2):
        sim.post("/fault/partial_fills", {"count": 1, "slices": 2})
        group = f"oca-{oca_type}"
        far = LimitOrder("SELL", 4, round(t.ask + 5, 2), ocaGroup=group, ocaType=oca_type)
        near = MarketOrder("SELL", 4, ocaGroup=group, ocaType=oca_type)
        a = ib.placeOrder(opt, far)
        sizes: list[float] = []
        ib.openOrderEvent += lambda tr, a=a, sizes=sizes: sizes.append(
            tr.order.totalQuantity) if tr is a else None
        b = ib.placeOrder(opt, near)
        wait_ib(ib, lambda b=b: b.orderStatus.status == "Filled", what="sliced OCA leg")
        if oca_type == 1:
            assert a.order.totalQuantity == 4
            wait_ib(ib, lambda a=a: a.orderStatus.status == "Cancelled", what="sibling gone")
        else:
            # Reduced by the first slice, cancelled once nothing is left to protect.
            wait_ib(ib, lambda a=a: a.orderStatus.status == "Cancelled", what="sibling gone")
            assert 2.0 in sizes


def test_stall_takes_requests_sends_nothing_then_delivers_in_order(
        sim: Any, connect: Any) -> None:
    ib = connect()
    opt, _t = put(ib)
    sim.post("/fault/stall", {"seconds": 2.0})
    sale = ib.placeOrder(opt, MarketOrder("SELL", 1, orderRef="stall:sale"))
    seen: list[str] = []
    sale.statusEvent += lambda tr: seen.append(tr.orderStatus.status)
    sale.fillEvent += lambda tr, fill: seen.append("fill")
    # The gateway took it: the order filled at IB while the client hears nothing.
    deadline_state = sim.get_state()
    for _ in range(50):
        if any(e["order_ref"] == "stall:sale" for e in deadline_state["executions"]):
            break
        ib.sleep(0.02)
        deadline_state = sim.get_state()
    assert any(e["order_ref"] == "stall:sale" for e in deadline_state["executions"])
    assert deadline_state["faults"]["stalled"]
    assert sale.orderStatus.status == "PendingSubmit" and not sale.fills
    wait_ib(ib, lambda: sale.orderStatus.status == "Filled", 8, "delivery after the stall")
    assert seen[0] == "Submitted" and seen[-1] == "Filled" and "fill" in seen
    assert not sim.get_state()["faults"]["stalled"]


def test_fill_on_cancel_fills_first_then_10148_and_the_trade_ends_filled_at_ib(
        sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    seen = errors_of(ib)
    limit = round(t.ask + 1.0, 2)  # t is live: its ask may move before the fill
    resting = ib.placeOrder(opt, LimitOrder("SELL", 1, limit, orderRef="foc"))
    wait_ib(ib, lambda: resting.orderStatus.status == "Submitted", what="resting")
    sim.post("/fault/fill_on_cancel", {"count": 1})
    ib.cancelOrder(resting.order)
    wait_ib(ib, lambda: any(c == 10148 for _r, c, _m in seen), what="10148")
    req, _c, msg = next(x for x in seen if x[1] == 10148)
    assert req == resting.order.orderId and "state: Filled" in msg
    wait_ib(ib, lambda: resting.fills, what="the fill")
    assert resting.fills[0].execution.price == limit  # at its limit
    state = sim.get_state()
    assert {p["con_id"]: p["position"] for p in state["positions"]}[opt.conId] == -1
    assert not [o for o in state["open_orders"] if o["order_ref"] == "foc"]
    assert state["faults"]["fill_on_cancel"] == 0


def test_fill_on_cancel_161_and_a_late_modify_gets_104(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    seen = errors_of(ib)
    sim.post("/fault/fill_on_cancel", {"count": 2, "code": 161})
    a = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1.0, 2)))
    b = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 2.0, 2)))
    wait_ib(ib, lambda: b.orderStatus.status == "Submitted", what="resting")
    ib.cancelOrder(a.order)
    b.order.lmtPrice = round(t.ask + 1.5, 2)
    ib.placeOrder(opt, b.order)  # a modify
    wait_ib(ib, lambda: {161, 104} <= {c for _r, c, _m in seen}, what="161 and 104")
    assert (a.order.orderId, 161) in [(r, c) for r, c, _m in seen]
    assert (b.order.orderId, 104) in [(r, c) for r, c, _m in seen]
    positions = {p["con_id"]: p["position"] for p in sim.get_state()["positions"]}
    assert positions[opt.conId] == -2  # both filled at IB


def test_order_error_codes_carry_the_order_id(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    seen = errors_of(ib)
    # 10147: a cancel of an id IB does not know.
    ib.client.cancelOrder(987654)
    wait_ib(ib, lambda: (987654, 10147) in [(r, c) for r, c, _m in seen], what="10147")
    # 202 after a cancel, on the order's id.
    rest = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2)))
    wait_ib(ib, lambda: rest.orderStatus.status == "Submitted")
    ib.cancelOrder(rest.order)
    wait_ib(ib, lambda: (rest.order.orderId, 202) in [(r, c) for r, c, _m in seen], what="202")
    # 103: an id already used, for another contract.
    (other,) = ib.qualifyContracts(Option("SPY", EXPIRY, 580, "P", "SMART"))
    dup = LimitOrder("SELL", 1, 9.99)
    dup.orderId = rest.order.orderId
    ib.client.placeOrder(dup.orderId, other, dup)
    wait_ib(ib, lambda: (rest.order.orderId, 103) in [(r, c) for r, c, _m in seen], what="103")
    # 2109: outsideRth on an option is ignored with a warning; the order keeps working.
    flagged = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 3, 2), outsideRth=True))
    wait_ib(ib, lambda: (flagged.order.orderId, 2109) in [(r, c) for r, c, _m in seen],
            what="2109")
    ib.sleep(0.2)
    assert flagged.isActive() and flagged.orderStatus.status == "Submitted"


def test_early_assignment_moves_shares_in_and_leaves_the_exits_open(
        sim: Any, connect: Any) -> None:
    ib = connect()
    opt, _t = put(ib)
    sale = ib.placeOrder(opt, MarketOrder("SELL", 2))
    wait_ib(ib, lambda: sale.orderStatus.status == "Filled", what="sale")
    tp = ib.placeOrder(opt, LimitOrder("BUY", 2, 0.05, orderRef="tp"))
    wait_ib(ib, lambda: tp.orderStatus.status == "Submitted", what="exit")
    before = sim.get_state()
    with pytest.raises(ControlError):  # more than is short: refused, nothing changes
        sim.post("/assign", {"con_id": opt.conId, "qty": 3})
    with pytest.raises(ControlError):
        sim.post("/assign", {"con_id": 756733, "qty": 1})  # SPY is no short option
    assert sim.get_state()["positions"] == before["positions"]
    executions = len(before["executions"])
    sim.post("/assign", {"con_id": opt.conId, "qty": 1})
    wait_ib(ib, lambda: any(p.contract.secType == "STK" and p.position == 100
                            for p in ib.positions()), what="shares pushed")
    state = sim.get_state()
    held = {p["con_id"]: p for p in state["positions"]}
    assert held[opt.conId]["position"] == -1
    assert held[756733]["position"] == 100 and held[756733]["avg_cost"] == 585.0
    assert [o["order_ref"] for o in state["open_orders"]] == ["tp"]  # IB leaves it
    assert len(state["executions"]) == executions  # no execution: booked by IB, not traded
    assert state["settled"][-1]["outcome"] == "assigned_early"


def test_occ_rule_at_the_close_settled_the_next_morning(sim: Any, connect: Any) -> None:
    ib = connect()
    sim.post("/market", {"spot": 599.99, "walk_sigma": 0.0})
    puts = [ib.qualifyContracts(Option("SPY", "20261124", k, "P", "SMART"))[0]
            for k in (600, 599)]
    for c in puts:
        tr = ib.placeOrder(c, MarketOrder("SELL", 1))
        wait_ib(ib, lambda tr=tr: tr.orderStatus.status == "Filled", what="sale")
    sim.post("/clock", {"now": "2026-11-24T16:00:00-05:00"})  # the close: 599.99 taken
    sim.post("/market", {"spot": 650.0})  # the evening's move does not count
    sim.post("/clock", {"now": "2026-11-24T23:00:00-05:00"})
    held = {p["con_id"]: p["position"] for p in sim.get_state()["positions"]}
    assert held == {puts[0].conId: -1, puts[1].conId: -1}  # nothing at 16:00 or that night
    st = sim.post("/clock", {"now": "2026-11-25T02:01:00-05:00"})
    outcomes = {s["con_id"]: s["outcome"] for s in st["settled"]}
    # 600P: in the money by $0.01 -> assigned; 599P: out by $0.99 -> expired.
    assert outcomes == {puts[0].conId: "assigned", puts[1].conId: "expired"}
    held = {p["con_id"]: p["position"] for p in sim.get_state()["positions"]}
    assert held == {756733: 100.0}


def test_a_sale_past_the_available_funds_is_rejected_with_201(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    seen = errors_of(ib)
    whatif = ib.whatIfOrder(opt, LimitOrder("SELL", 100, t.bid))
    assert float(whatif.initMarginAfter) > float(whatif.equityWithLoanAfter)
    big = ib.placeOrder(opt, LimitOrder("SELL", 100, t.bid, orderRef="too-big"))
    wait_ib(ib, lambda: big.orderStatus.status == "Cancelled", what="rejected")
    req, _code, msg = next(x for x in seen if x[1] == 201)
    assert req == big.order.orderId
    assert "YOUR ORDER IS NOT ACCEPTED" in msg and "MUST EXCEED THE INITIAL MARGIN" in msg
    state = sim.get_state()
    assert not state["positions"] and not state["open_orders"]
    small = ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid))  # within the funds: placed
    wait_ib(ib, lambda: small.orderStatus.status == "Filled", what="a one-lot sale fills")
