"""Issue 32, item 1, as the chaos soak poses it: after IB's daily reset neither the
executions nor the completed orders report a sale that filled while the engine was
away (ibsim's `/scenario/filled_while_away`); only the broker's short shows it. Found by
the soak (seed 2, day 3): the engine alerted 'nothing was sold' and 'sold outside the
engine: not adopted' about its own sale, and left the short with no exits."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.engine.test_crash_recovery import _ask, _kill, _live, _sales, _start_ready
from tests.engine.test_money_paths_second import restarted_past_the_reset
from tests.support.zmq_request import wait_until


def test_a_sale_the_reset_hides_from_executions_and_completed_orders_is_our_lot(
    tmp_path: Path, sim: Any
) -> None:
    cfg, endpoint, proc = _start_ready(tmp_path, sim)
    try:
        sim.post("/fault/hold_fills", {"seconds": 120})
        assert _ask(endpoint, "enter_now")["accepted"]
        wait_until(lambda: _live(sim, "sale"), 20, message="sale resting at the broker")
        sale_ref = _live(sim, "sale")[0]["order_ref"]
        _kill(proc)
        reply = sim.post("/scenario/filled_while_away", {"order_ref": sale_ref})
        sim.post("/fault/hold_fills", {"seconds": 0})
        assert len(_sales(sim)) == 1
        proc = restarted_past_the_reset(sim, cfg, endpoint,
                                        datetime.fromisoformat(reply["now"]), move_clock=False)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
    from book.store import Store

    store = Store(tmp_path / "book.sqlite")
    (lot,) = store.lots()
    assert lot.order_ref == sale_ref
    # The whole short at the broker's average cost: the entry is known, not the limit.
    assert (lot.entry_estimated, lot.pnl_estimated) == (False, False)
    assert [(e.state, e.lot_id) for e in store.entries()] == [("done", lot.id)]
