"""Money paths, second pass (issue 32): each test is named after the behaviour and
poses its finding through ibsim over real sockets with the unmodified ib_insync client
(a unit test where no wire scenario can pose it)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from tests.engine.conftest import ET, SESSION_NOW, engine_subprocess
from tests.engine.test_crash_recovery import _ask, _kill, _live, _sales, _start_ready
from tests.support.zmq_request import wait_for_value, wait_until


def test_a_sale_filled_while_away_across_the_daily_reset_is_our_lot_with_exits(
    tmp_path: Path, sim: Any
) -> None:
    """Item 1: the engine is killed while its sale rests; the sale fills; the clock
    passes IB's daily reset (reqExecutions no longer reports the fill); the engine
    restarts. The old code marked the sale cancelled, alerted 'nothing was sold' and
    called its own short an outside sale with no exits. Now the completed order (by
    orderRef) and the broker's short make it our lot, protected by a TP+SL pair."""
    cfg, endpoint, proc = _start_ready(tmp_path, sim)
    try:
        sim.post("/fault/hold_fills", {"seconds": 120})
        assert _ask(endpoint, "enter_now")["accepted"]
        wait_until(lambda: _live(sim, "sale"), 20, message="sale resting at the broker")
        _kill(proc)
        sim.post("/fault/hold_fills", {"seconds": 0})
        wait_until(lambda: _sales(sim), 20, message="the sale filled while the engine was away")
        sale_ref = _sales(sim)[0]["order_ref"]
        after_reset = datetime(2026, 11, 24, 23, 50, tzinfo=ET)
        sim.post("/clock", {"now": after_reset.isoformat()})
        proc = engine_subprocess(
            cfg, {"TRADING_BOT__CLOCK__START": f'"{after_reset.isoformat()}"'})
        lots = wait_for_value(
            lambda: _ask(endpoint, "positions")["lots"],
            lambda lots: len(lots) == 1 and lots[0]["protected"], 40, "one protected lot")
        assert lots[0]["qty"] == 1
        tps, sls = _live(sim, "tp"), _live(sim, "sl")
        assert len(tps) == 1 and len(sls) == 1, (tps, sls)
        assert tps[0]["oca_group"] == sls[0]["oca_group"]
        kinds = [a["kind"] for a in _ask(endpoint, "alerts")["alerts"]]
        assert "outside_position" not in kinds and "entry_interrupted" not in kinds, kinds
        assert len(_sales(sim)) == 1
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
