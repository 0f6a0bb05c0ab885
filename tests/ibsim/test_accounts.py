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
