"""Issue 2: orders, matching rules, OCA, persistence on the IB side."""

from __future__ import annotations

import json
import threading
from typing import Any

from ib_insync import IB, LimitOrder, MarketOrder, Option, Order, StopOrder

from ibsim.harness import IbsimProcess, IbsimThread
from tests.ibsim.conftest import EXPIRY, NOW, client, put, wait_ib


def test_sell_limit_at_the_bid_fills_at_once_with_fill_and_commission(
    sim: Any, connect: Any
) -> None:
    ib = connect()
    opt, t = put(ib)
    trade = ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid, orderRef="tb:sale"))
    wait_ib(ib, lambda: trade.isDone(), what="fill")
    assert trade.orderStatus.status == "Filled"
    assert trade.order.orderRef == "tb:sale" and trade.order.permId > 0
    assert len(trade.fills) == 1 and trade.filled() == 1
    wait_ib(ib, lambda: trade.fills[0].commissionReport.commission == 0.65, what="commission")
    assert trade.fills[0].execution.orderRef == "tb:sale"
    wait_ib(ib, lambda: any(p.position == -1 for p in ib.positions()), what="position push")
    assert any(p.contract.conId == opt.conId for p in ib.portfolio())


def test_sell_between_bid_and_ask_waits_for_the_fair_price(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    at_ask = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 0.50, 2)))
    ib.sleep(0.3)
    assert at_ask.orderStatus.status == "Submitted"  # above the ask: never fills
    ib.cancelOrder(at_ask.order)
    wait_ib(ib, lambda: at_ask.orderStatus.status == "Cancelled", what="cancel")
    mid = round((t.bid + t.ask) / 2, 2)
    inside = ib.placeOrder(opt, LimitOrder("SELL", 1, mid))
    wait_ib(ib, lambda: inside.orderStatus.status == "Filled", 10, "fill at the fair price")
    assert inside.orderStatus.avgFillPrice == mid


def test_buy_limit_and_buy_stop(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    stop_price = round(t.ask * 2, 2)
    buy = ib.placeOrder(opt, LimitOrder("BUY", 1, round(t.bid * 0.5, 2)))
    stop = ib.placeOrder(opt, StopOrder("BUY", 1, stop_price))
    ib.sleep(0.2)
    assert buy.orderStatus.status == stop.orderStatus.status == "Submitted"
    sim.post("/market", {"spot": 560.0})  # the put's ask rises through the stop
    wait_ib(ib, lambda: stop.orderStatus.status == "Filled", what="stop triggered")
    assert stop.orderStatus.avgFillPrice >= stop_price
    sim.post("/market", {"spot": 700.0})  # and collapses through the limit
    wait_ib(ib, lambda: buy.orderStatus.status == "Filled", what="limit reached")


def test_oca_fill_cancels_the_sibling(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    ib.placeOrder(opt, MarketOrder("SELL", 1))
    tp = ib.placeOrder(
        opt, LimitOrder("BUY", 1, round(t.bid * 0.4, 2), ocaGroup="g", ocaType=1, orderRef="tp")
    )
    sl = ib.placeOrder(
        opt, StopOrder("BUY", 1, round(t.ask * 3, 2), ocaGroup="g", ocaType=1, orderRef="sl")
    )
    wait_ib(ib, lambda: tp.orderStatus.status == sl.orderStatus.status == "Submitted")
    sim.post("/market", {"spot": 700.0})
    wait_ib(
        ib,
        lambda: tp.orderStatus.status == "Filled" and sl.orderStatus.status == "Cancelled",
        what="OCA",
    )
    assert not [o for o in sim.get_state()["open_orders"] if o["oca_group"] == "g"]


def test_self_cross_is_rejected_with_201(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05))
    errors: list[int] = []
    ib.errorEvent += lambda req, code, msg, c: errors.append(code)
    sell = ib.placeOrder(opt, LimitOrder("SELL", 1, round(t.ask + 1, 2)))
    wait_ib(ib, lambda: sell.orderStatus.status == "Cancelled", what="rejection")
    assert 201 in errors


def test_bracket_children_wait_for_the_parent(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, t = put(ib)
    sim.post("/fault/hold_fills", {"seconds": 30})
    bracket = ib.bracketOrder("SELL", 1, t.bid, round(t.bid * 0.4, 2), round(t.ask * 3, 2))
    trades = [ib.placeOrder(opt, o) for o in bracket]
    wait_ib(ib, lambda: trades[0].orderStatus.status == "Submitted", what="parent live")
    assert [x.orderStatus.status for x in trades[1:]] == ["PreSubmitted", "PreSubmitted"]
    sim.post("/fault/hold_fills", {"seconds": 0})
    wait_ib(
        ib,
        lambda: [x.orderStatus.status for x in trades] == ["Filled", "Submitted", "Submitted"],
        what="release",
    )


def test_modify_by_placing_the_same_id_and_cancel(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, _t = put(ib)
    trade = ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05))
    wait_ib(ib, lambda: trade.orderStatus.status == "Submitted")
    trade.order.lmtPrice = 0.06
    ib.placeOrder(opt, trade.order)
    wait_ib(
        ib,
        lambda: any(o["lmt_price"] == 0.06 for o in sim.get_state()["open_orders"]),
        what="modified price",
    )
    ib.cancelOrder(trade.order)
    wait_ib(ib, lambda: trade.orderStatus.status == "Cancelled", what="cancelled")
    errors: list[int] = []
    ib.errorEvent += lambda req, code, msg, c: errors.append(code)
    ib.cancelOrder(Order(orderId=99999))
    wait_ib(ib, lambda: 10147 in errors, what="10147 for an unknown order")


def test_open_orders_positions_and_executions_are_requested_back(sim: Any, connect: Any) -> None:
    ib = connect(21)
    opt, t = put(ib)
    ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid, orderRef="s"))
    ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05, orderRef="tp"))
    other = connect(22)
    assert [x.order.orderRef for x in other.reqAllOpenOrders()] == ["tp"]
    assert other.reqOpenOrders() == []
    fills = other.reqExecutions()
    assert [f.execution.orderRef for f in fills] == ["s"]
    assert [p.position for p in other.reqPositions()] == [-1.0]


def test_orders_survive_disconnect_and_gateway_restart(sim: Any, connect: Any) -> None:
    ib = connect(31)
    opt, _t = put(ib)
    ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05, orderRef="keep"))
    ib.disconnect()
    sim.post("/restart", {"seconds": 0.3})
    ib2 = IB()
    wait_ib(ib2, lambda: _try_connect(ib2, sim.port, 31), 10, "reconnect after restart")
    assert [t.order.orderRef for t in ib2.reqOpenOrders()] == ["keep"]
    ib2.disconnect()


def _try_connect(ib: IB, port: int, client_id: int) -> bool:
    try:
        ib.connect("127.0.0.1", port, clientId=client_id, timeout=2)
    except (ConnectionRefusedError, TimeoutError, OSError):
        return False
    return True


def test_state_file_survives_a_process_restart(tmp_path: Any) -> None:
    state = str(tmp_path / "state.json")
    with IbsimProcess(seed=3, state_file=state, now=NOW) as sim:
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=1, timeout=5)
        opt, t = put(ib)
        ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid, orderRef="s1"))
        ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05, orderRef="tp1"))
        wait_ib(ib, lambda: len(sim.get_state()["executions"]) == 1)
        first_exec = sim.get_state()["executions"][0]["exec_id"]
        ib.disconnect()
        sim.kill()
    with IbsimProcess(seed=3, state_file=state, now=NOW) as sim:
        st = sim.get_state()
        assert [o["order_ref"] for o in st["open_orders"]] == ["tp1"]
        assert [p["position"] for p in st["positions"]] == [-1.0]
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=1, timeout=5)
        opt, t = put(ib, 580)  # another strike: no self-cross with the resting tp1
        trade = ib.placeOrder(opt, MarketOrder("SELL", 1))
        wait_ib(ib, lambda: trade.isDone() and trade.fills, what="new fill")
        assert trade.fills[0].execution.execId != first_exec  # ids never repeat
        ib.disconnect()


def test_reject_and_hold_fills_faults(sim: Any, connect: Any) -> None:
    ib = connect()
    opt, _t = put(ib)
    sim.post(
        "/fault/reject",
        {"count": 1, "action": "BUY", "order_type": "STP", "code": 201, "message": "nope"},
    )
    stp = ib.placeOrder(opt, StopOrder("BUY", 1, 50.0))
    wait_ib(ib, lambda: stp.orderStatus.status == "Cancelled", what="rejected stop")
    stp2 = ib.placeOrder(opt, StopOrder("BUY", 1, 50.0))
    wait_ib(ib, lambda: stp2.orderStatus.status == "Submitted", what="next one accepted")
    sim.post("/fault/hold_fills", {"seconds": 30})
    opt2, _t2 = put(ib, 580)
    sale = ib.placeOrder(opt2, MarketOrder("SELL", 1))
    ib.sleep(0.2)
    assert sale.orderStatus.status == "Submitted"
    sim.post("/fault/hold_fills", {"seconds": 0})
    wait_ib(ib, lambda: sale.orderStatus.status == "Filled", what="released fill")


def test_same_seed_same_prices_and_fills() -> None:
    def run() -> tuple[list[float], float]:
        from ibsim.harness import IbsimThread

        with IbsimThread(seed=99, tick_interval=10.0, now=NOW) as s:
            spots = []
            for _ in range(20):
                s.call(lambda g: g.tick())
                spots.append(s.get_state()["spot"])
            ib = IB()
            ib.connect("127.0.0.1", s.port, clientId=1, timeout=5)
            (opt,) = ib.qualifyContracts(Option("SPY", EXPIRY, 585, "P", "SMART"))
            trade = ib.placeOrder(opt, MarketOrder("SELL", 1))
            wait_ib(ib, lambda: trade.isDone())
            ib.disconnect()
            return spots, trade.orderStatus.avgFillPrice

    assert run() == run()


def test_external_orders_reach_their_client_as_its_own_and_bad_ones_change_nothing(
    sim: Any, connect: Any
) -> None:
    """POST /order/external (bench.memory's fill source): market orders bound to a
    client fill at once and arrive with orderRef, fill and commission; a bad batch is
    refused whole."""
    import pytest

    from ibsim.harness import ControlError

    ib = connect(client_id=31)
    opt, _t = put(ib)
    before = len(sim.get_state()["executions"])
    for bad in ({"client_id": 31, "orders": []},
                {"client_id": 31, "orders": [{"order_ref": "x", "con_id": opt.conId,
                                              "action": "HOLD"}]},
                {"client_id": 31, "orders": [{"order_ref": "x", "con_id": 5, "action": "BUY"},
                                             ]}):
        with pytest.raises(ControlError):
            sim.post("/order/external", bad)
    assert len(sim.get_state()["executions"]) == before
    sim.post("/order/external", {"client_id": 31, "orders": [
        {"order_ref": "tb:ext:sale", "con_id": opt.conId, "action": "SELL"},
        {"order_ref": "tb:ext:tp", "con_id": opt.conId, "action": "BUY"}]})
    wait_ib(ib, lambda: len(ib.fills()) == 2, what="both fills at the client")
    assert sorted(f.execution.orderRef for f in ib.fills()) == ["tb:ext:sale", "tb:ext:tp"]
    wait_ib(ib, lambda: all(f.commissionReport.commission > 0 for f in ib.fills()),
            what="commissions")
    assert not any(p.position for p in ib.positions() if p.contract.conId == opt.conId)


def test_a_pending_login_survives_a_gateway_restart(tmp_path: Any) -> None:
    """A gateway restarted while its login waits for 2FA asks for it again: with
    `survive_restart` the logout outlives the process (a restart alone never logs in);
    `/fault/login` ends it."""
    state = str(tmp_path / "state.json")
    with IbsimProcess(seed=3, state_file=state, now=NOW) as sim:
        sim.post("/fault/logout", {"seconds": 600, "survive_restart": True})
        assert sim.get_state()["faults"]["logged_out"]
        sim.kill()
    with IbsimProcess(seed=3, state_file=state, now=NOW) as sim:
        assert sim.get_state()["faults"]["logged_out"]
        sim.post("/fault/login", {})
        assert not sim.get_state()["faults"]["logged_out"]
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=1, timeout=5)
        assert ib.isConnected()
        ib.disconnect()
        sim.kill()
    with IbsimProcess(seed=3, state_file=state, now=NOW) as sim:
        assert not sim.get_state()["faults"]["logged_out"]


def test_a_burst_of_cancels_is_saved_once_and_before_any_is_answered(tmp_path: Any) -> None:
    """Issue 34 (bench.entry): ibsim wrote its whole state file once per cancel (~3 ms
    with a few hundred orders kept), so an entry cancelling the exits of many lots
    waited tens of ms on the simulator. Requests read in one go are saved once; no
    answer leaves before that save (a gateway killed at once loses nothing it answered)."""
    state = tmp_path / "state.json"
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=NOW,
                     state_file=str(state)) as sim:
        ib = client(sim, 1)
        try:
            opt, _t = put(ib)
            trades = [ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05)) for _ in range(10)]
            wait_ib(ib, lambda: all(t.orderStatus.status == "Submitted" for t in trades),
                    what="ten resting orders")
            saves: list[int] = []  # orders cancelled at each save

            def count_saves(gw: Any) -> None:
                real = gw.broker.save

                def save() -> None:
                    if not gw.broker.defer_saves:
                        saves.append(sum(o["status"] == "Cancelled"
                                         for o in gw.broker.orders.values()))
                    real()
                gw.broker.save = save

            sim.call(count_saves)
            # The simulator's loop is held while the client sends: the ten cancels wait in
            # its socket and are read at once, as a busy gateway reads a burst.
            entered, release = threading.Event(), threading.Event()

            def hold(gw: Any) -> None:
                entered.set()
                release.wait(10)

            holder = threading.Thread(target=sim.call, args=(hold,), daemon=True)
            holder.start()
            assert entered.wait(10)
            for t in trades:
                ib.cancelOrder(t.order)
            release.set()
            seen_on_disk: list[int] = []

            def all_cancelled() -> bool:
                if not all(t.orderStatus.status == "Cancelled" for t in trades):
                    return False
                orders = json.loads(state.read_text())["orders"].values()
                seen_on_disk.append(sum(o["status"] == "Cancelled" for o in orders))
                return True

            wait_ib(ib, all_cancelled, what="ten cancels answered")
            assert seen_on_disk == [10]  # saved by the time the answers arrived
            assert saves == [10], saves  # one write for the burst, not one per cancel
        finally:
            ib.disconnect()


def test_an_order_priced_nan_is_refused_and_nothing_is_kept(sim: Any, connect: Any) -> None:
    """A price of "nan" or "inf" is no price: the order is refused with an error, nothing
    is stored (the state file, JSON, has no NaN), and the session goes on."""
    ib = connect()
    opt, _t = put(ib)
    errors: list[int] = []
    ib.errorEvent += lambda _req, code, *_a: errors.append(code)
    bad = ib.placeOrder(opt, LimitOrder("BUY", 1, float("nan"), orderRef="bad:nan"))
    worse = ib.placeOrder(opt, StopOrder("BUY", 1, float("inf"), orderRef="bad:inf"))
    wait_ib(ib, lambda: len(errors) >= 2, what="both refused")
    assert bad.orderStatus.status != "Submitted" and worse.orderStatus.status != "Submitted"
    refs = [o["order_ref"] for o in sim.get_state()["open_orders"]]
    assert "bad:nan" not in refs and "bad:inf" not in refs
    good = ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05, orderRef="good"))
    wait_ib(ib, lambda: good.orderStatus.status == "Submitted", what="the next order")
