"""Issue 32, item 6, through ibsim: a login that manages two accounts (ibsim
`--accounts DU111,DU222`), the engine configured for DU111. The other account's trades
on the same put (and on another put) are never ours: they close nothing, grow nothing,
are adopted by nothing and alert nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.engine.test_lifecycle import enter_and_wait
from tests.engine.test_outside_close import REPAIR, alerts, closed_lots, our_buys
from tests.support.zmq_request import wait_for_value

OURS, OTHER = "DU111", "DU222"


def hand_order(sim: Any, con_id: int, action: str, qty: int, account: str) -> None:
    """An order typed into TWS (client 0, no orderRef) in one account of the login."""
    before = len(sim.get_state()["executions"])
    sim.post("/order/external", {"client_id": 0, "orders": [
        {"order_ref": "", "con_id": con_id, "action": action, "qty": qty,
         "account": account}]})
    execs = sim.get_state()["executions"][before:]
    assert [e["account"] for e in execs] == [account], execs


def other_puts(sim: Any, expiry: str, strike: float) -> list[int]:
    """Two puts of the lot's expiry at other strikes (the lot's own is `strike`)."""
    found = []
    for k in (strike - 5.0, strike - 10.0):
        spec = {"symbol": "SPY", "sec_type": "OPT", "expiry": expiry, "strike": k,
                "right": "P"}
        (contract,) = sim.call(lambda gw, spec=spec: gw.broker.resolve(spec))
        found.append(int(contract["con_id"]))
    return found


@pytest.mark.parametrize("sim", [{"accounts": [OURS, OTHER]}], indirect=True)
def test_another_accounts_trades_on_our_put_neither_close_grow_nor_adopt_our_lot(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine({
        "gateway": {"account": OURS},
        "schedule": {"entry_times": ["15:00"], "repair_interval": REPAIR},
        # Adoption on: an unfiltered position of the other account would become a lot.
        "strategy": {"quantity": 2, "adopt_outside_positions": True},
    })
    lot = enter_and_wait(eng, 0)
    assert lot.qty == 2
    exits = sorted((o["order_ref"], o["qty"]) for o in our_buys(sim, lot.con_id))
    assert [q for _r, q in exits] == [2, 2]
    state = sim.get_state()
    assert {(p["account"], p["con_id"], p["position"]) for p in state["positions"]} == {
        (OURS, lot.con_id, -2)}

    mine_elsewhere, theirs_elsewhere = other_puts(sim, lot.expiry, float(lot.strike))

    # DU222 on our put: a buy of 2 (flat there would read as our lot closed), then a
    # sale of 5 (short 3: an extra short to adopt, or a lot to grow).
    hand_order(sim, lot.con_id, "BUY", 2, OTHER)
    hand_order(sim, lot.con_id, "SELL", 5, OTHER)
    # And a put only DU222 holds.
    hand_order(sim, theirs_elsewhere, "SELL", 1, OTHER)
    # Then a hand sale in our own account: its adoption is the sign the engine has read
    # the position updates that came before it.
    hand_order(sim, mine_elsewhere, "SELL", 1, OURS)
    adopted = wait_for_value(
        lambda: [x for x in eng.open_lots() if x.con_id == mine_elsewhere
                 and x.state == "open"],
        lambda lots: len(lots) == 1, REPAIR + 15, "our own account's hand sale adopted")
    assert adopted[0].imported and adopted[0].qty == 1
    # Two full checks against the broker's positions after it, as the repair tick does.
    eng.ask("repair_exits")
    eng.ask("repair_exits")

    held = {x.con_id: x for x in eng.open_lots()}
    assert set(held) == {lot.con_id, mine_elsewhere}, held
    now = held[lot.con_id]
    assert (now.id, now.qty, now.state, now.imported) == (lot.id, 2, "open", False)
    assert sorted((o["order_ref"], o["qty"]) for o in our_buys(sim, lot.con_id)) == exits
    assert our_buys(sim, theirs_elsewhere) == []
    assert closed_lots(eng) == []
    # The one outside position is our own account's hand sale.
    outside = alerts(eng, "outside_position")
    assert [a["details"]["con_id"] for a in outside] == [mine_elsewhere], outside
    assert alerts(eng, "closed_outside") == []
    positions = {(p["account"], p["con_id"], p["position"])
                 for p in sim.get_state()["positions"]}
    assert positions == {(OURS, lot.con_id, -2), (OTHER, lot.con_id, -3),
                         (OTHER, theirs_elsewhere, -1), (OURS, mine_elsewhere, -1)}
