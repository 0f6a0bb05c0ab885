"""A sale whose intent was written and whose order was sent, with the engine killed
before the gateway's acknowledgement reached the book (the row still says `intent`, no
order id). The order lives on at IB: an API client's orders outlive its connection.

Found under load (CI, `test_sale_filled_past_reset`, `test_crash_recovery[sale_sent]`):
the kill landed before the ack was recorded, and the restarted engine read the intent as
never sent. Past IB's daily reset (neither executions nor completed orders report the
fill) it marked the sale cancelled, alerted 'interrupted: nothing was sold', called its
own short an outside sale, and left it with no exits. Here the kill lands there every
time: ibsim's /fault/slow_orders holds the SELL's acknowledgement while the engine waits,
and releases it only after the kill.

The harsher reading of IB is the one modelled: an intent is *maybe sent* (the process can
die at any instruction between the write and the socket's send, and IB never says "no
such order" for a ref it did not get). A short on exactly that contract that no lot of
the book explains is that sale's fill, so it is our lot and gets its exits; an intent
with no such short and no live order was never taken, and is cancelled as before."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from book.store import Store
from tests.engine.test_crash_recovery import _ask, _kill, _live, _sales, _start, _start_ready
from tests.engine.test_money_paths_second import restarted_past_the_reset
from tests.support.zmq_request import wait_for_value, wait_until


def _sale_intents(db: Path) -> list[Any]:
    if not db.exists():
        return []
    store = Store(db)
    try:
        return [o for o in store.orders_by_status(["intent"]) if o.role == "sale"]
    finally:
        store.close()


def _killed_before_the_ack(tmp_path: Path, sim: Any) -> tuple[Path, str, str]:
    """The engine killed while its SELL is on its way (row `intent`); returns the
    config, the engine's endpoint and the sale's ref, once the order rests at ibsim."""
    cfg, endpoint, proc = _start_ready(tmp_path, sim)
    try:
        sim.post("/fault/hold_fills", {"seconds": 300})
        # Held until released below (after the kill), however slow the machine is.
        sim.post("/fault/slow_orders", {"seconds": 300.0, "action": "SELL"})
        assert _ask(endpoint, "enter_now")["accepted"]
        (intent,) = wait_until(lambda: _sale_intents(tmp_path / "book.sqlite"), 20,
                               message="the sale's intent written")
        # The intent is written just before the send: on a busy machine the kill could
        # land in between, and then nothing went out (another case: a never-sent intent,
        # cancelled at the restart). Killed only once ibsim holds the SELL.
        wait_until(lambda: sim.get_state()["faults"]["slow_pending"] == 1, 20,
                   message="the SELL received and held by ibsim")
        assert not _live(sim, "sale")  # not taken yet: the ack cannot have been seen
    finally:
        _kill(proc)
    assert [o.status for o in _sale_intents(tmp_path / "book.sqlite")] == ["intent"]
    sim.post("/fault/slow_orders", {"seconds": 0, "release": True})
    wait_until(lambda: _live(sim, "sale"), 20, message="the sale resting at ibsim")
    assert _live(sim, "sale")[0]["order_ref"] == intent.order_ref
    return cfg, endpoint, intent.order_ref


def _book_agrees(db: Path, sale_ref: str) -> None:
    store = Store(db)
    (lot,) = store.lots()
    assert lot.order_ref == sale_ref
    assert [(e.state, e.lot_id) for e in store.entries()] == [("done", lot.id)]
    assert store.order_by_ref(sale_ref).status == "filled"


@pytest.mark.parametrize("when", ["past_the_reset", "same_day"])
def test_a_sale_killed_before_its_ack_is_our_lot_when_it_fills(
    tmp_path: Path, sim: Any, when: str
) -> None:
    cfg, endpoint, sale_ref = _killed_before_the_ack(tmp_path, sim)
    proc = None
    try:
        if when == "past_the_reset":
            reply = sim.post("/scenario/filled_while_away", {"order_ref": sale_ref})
            sim.post("/fault/hold_fills", {"seconds": 0})
            proc = restarted_past_the_reset(
                sim, cfg, endpoint, datetime.fromisoformat(reply["now"]), move_clock=False)
        else:
            sim.post("/fault/hold_fills", {"seconds": 0})
            wait_until(lambda: _sales(sim), 20, message="the sale filled while away")
            proc = _start(cfg)
            lots = wait_for_value(
                lambda: _ask(endpoint, "positions")["lots"],
                lambda lots: len(lots) == 1 and lots[0]["protected"], 40,
                "one protected lot")
            assert lots[0]["qty"] == 1
            kinds = [a["kind"] for a in _ask(endpoint, "alerts")["alerts"]]
            assert "outside_position" not in kinds and "entry_interrupted" not in kinds, kinds
            assert len(_live(sim, "tp")) == 1 and len(_live(sim, "sl")) == 1
            assert len(_sales(sim)) == 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(20)
    _book_agrees(tmp_path / "book.sqlite", sale_ref)
