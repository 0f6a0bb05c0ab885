"""Issue 21: ibsim refuses an order for an account its login does not manage, as IB does
(error 321 on the order id, the order never exists)."""

from __future__ import annotations

from typing import Any

from ib_insync import LimitOrder, Option

from tests.ibsim.conftest import wait_ib

EXPIRY = "20261201"


def test_order_for_an_unmanaged_account_gets_321_on_its_order_id(
    sim: Any, connect: Any
) -> None:
    ib = connect()
    assert ib.managedAccounts() == ["DU1234567"]
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, msg, _contract: errors.append((req_id, code, msg))
    (opt,) = ib.qualifyContracts(Option("SPY", EXPIRY, 585, "P", "SMART"))
    t = ib.reqMktData(opt)
    wait_ib(ib, lambda: t.bid > 0, what="option quote")

    # At the bid: an order the gateway took would fill at once.
    foreign = ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid, orderRef="tb:x", account="U7654321"))
    wait_ib(ib, lambda: foreign.isDone(), what="refusal")
    oid = foreign.order.orderId
    assert (oid, 321) in [(r, c) for r, c, _ in errors], errors
    assert "Invalid account code" in next(m for r, c, m in errors if c == 321)
    assert foreign.orderStatus.status == "Cancelled" and not foreign.fills
    state = sim.get_state()
    assert state["open_orders"] == [] and state["executions"] == []

    # The managed account, named or left empty, is taken as before.
    for account in ("DU1234567", ""):
        own = ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid, orderRef="tb:y", account=account))
        wait_ib(ib, lambda own=own: own.orderStatus.status == "Filled", what="fill")
        assert own.fills[0].execution.acctNumber == "DU1234567"
    assert len(sim.get_state()["executions"]) == 2


def test_two_accounts_hold_the_same_contract_apart() -> None:
    """Issue 31: --accounts DU111,DU222: managedAccounts lists both; positions and
    executions are each account's, a cross-side check looks at the order's account."""
    from ibsim.harness import IbsimThread
    from tests.ibsim.conftest import NOW, client, put

    with IbsimThread(seed=5, tick_interval=0.02, now=NOW, accounts=["DU111", "DU222"]) as sim:
        assert sim.get_state()["accounts"] == ["DU111", "DU222"]
        ib = client(sim, 1)
        try:
            assert ib.managedAccounts() == ["DU111", "DU222"]
            errors: list[tuple[int, int]] = []
            ib.errorEvent += lambda req_id, code, _m, _c: errors.append((req_id, code))
            opt, t = put(ib)
            one = ib.placeOrder(opt, LimitOrder("SELL", 1, t.bid, account="DU111"))
            two = ib.placeOrder(opt, LimitOrder("SELL", 2, t.bid, account="DU222"))
            wait_ib(ib, lambda: one.orderStatus.status == two.orderStatus.status == "Filled",
                    what="both sales")
            assert one.fills[0].execution.acctNumber == "DU111"
            assert two.fills[0].execution.acctNumber == "DU222"
            want = {("DU111", opt.conId, -1.0), ("DU222", opt.conId, -2.0)}
            wait_ib(ib, lambda: {(p.account, p.contract.conId, p.position)
                                 for p in ib.positions()} == want, what="both positions")
            state = sim.get_state()
            assert {(p["account"], p["position"]) for p in state["positions"]} == {
                ("DU111", -1.0), ("DU222", -2.0)}
            assert [e["account"] for e in state["executions"]] == ["DU111", "DU222"]
            # A BUY of 2 is more than DU111's short of 1 (2137), not DU222's short of 2.
            b1 = ib.placeOrder(opt, LimitOrder("BUY", 2, 0.05, account="DU111"))
            b2 = ib.placeOrder(opt, LimitOrder("BUY", 2, 0.05, account="DU222"))
            wait_ib(ib, lambda: b2.orderStatus.status == "Submitted"
                    and (b1.order.orderId, 2137) in errors, what="2137 for DU111 only")
            assert (b2.order.orderId, 2137) not in errors
            bad = ib.placeOrder(opt, LimitOrder("SELL", 1, t.ask + 1, account="DU333"))
            wait_ib(ib, lambda: (bad.order.orderId, 321) in errors, what="321 for DU333")
        finally:
            ib.disconnect()
        other = client(sim, 2)  # a fresh client hears every account's positions
        try:
            assert {(p.account, p.position) for p in other.positions()} == {
                ("DU111", -1.0), ("DU222", -2.0)}
        finally:
            other.disconnect()
