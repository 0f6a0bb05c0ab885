"""Issue 34, fill -> both exits: the executor hears of its sale's fill from the fill's
own event on the Connection's loop (Connection.watch_order, not a wait held on the
Connection's thread), and opens the lot itself, so that one sale is one lot with one OCA
pair. The real engine against ibsim over TCP, with the unmodified ib_insync client."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

import pytest

from actors.connection.loop import BrokerCallError
from tests.support.zmq_request import hold_for, wait_until
from trading.model import OrderInfo, OrderRequest


def _resting_buy(conn: Any, ref: str) -> OrderInfo:
    """A BUY far below the market: it rests, nothing fills it."""
    put = conn.qualify_options("SPY", "20261127", [590.0], "P").get(timeout=10)[0]
    info = conn.place_order(OrderRequest(ref, put, "BUY", "LMT", 1, lmt_price=0.01,
                                         tif="GTC")).get(timeout=10)
    assert info.is_live, info
    return info


def test_watch_order_answers_in_the_event_that_ends_the_order(
        sim: Any, start_engine: Any) -> None:
    """A watch of 30 s on a resting order is answered as soon as the order ends (here
    its cancel), with the ended order; not at its timeout."""
    eng = start_engine()
    conn = eng.engine.directory.proxy("connection")
    info = _resting_buy(conn, "tb:lot900:tp:1")
    answer = conn.watch_order(info.order_id, 30.0).get(timeout=10)
    assert isinstance(answer, Future)
    # A live order: no answer all along (not a wait for a result).
    hold_for(0.3, lambda: not answer.done() or pytest.fail("answered a live order"))
    t = time.monotonic()
    conn.cancel_order(info.order_id).get(timeout=10)
    done = answer.result(timeout=10)
    assert time.monotonic() - t < 5.0
    assert done.order_id == info.order_id and done.is_dead, done


def test_watch_order_at_its_timeout_says_what_is_known(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    conn = eng.engine.directory.proxy("connection")
    info = _resting_buy(conn, "tb:lot901:tp:1")
    t = time.monotonic()
    still = conn.watch_order(info.order_id, 0.2).get(timeout=10).result(timeout=10)
    assert 0.15 <= time.monotonic() - t < 5.0
    assert still.is_live and still.order_id == info.order_id
    ended = conn.cancel_order(info.order_id).get(timeout=10)
    # An order already done is answered at once.
    again = conn.watch_order(info.order_id, 30.0).get(timeout=10).result(timeout=5)
    assert again.status == ended.status
    with pytest.raises(BrokerCallError, match="not known to this session"):
        conn.watch_order(987654, 1.0).get(timeout=10).result(timeout=5)


def _entry_state(eng: Any, slot: str) -> str:
    return str(next(s["state"] for s in eng.ask("status")["entry"]["slots"]
                    if s["slot"] == slot))


def test_a_sale_filled_is_one_lot_with_one_pair_and_the_fill_stored_once(
        sim: Any, start_engine: Any) -> None:
    """The executor opens the lot on its own connection while the book stores the fill
    on its own: entries in a row, each one lot, its pair at the broker, one fill."""
    slots = ["11:01", "11:02", "11:03"]  # the clock reads 10:00: only by hand
    eng = start_engine({"schedule": {"entry_times": slots},
                        "risk": {"max_contracts_per_day": 10, "max_open_lots": 10}})
    for n, slot in enumerate(slots, 1):
        # Refused ("busy") while the last entry still restores the exits it cancelled.
        wait_until(lambda slot=slot: eng.ask("enter_now", {"slot": slot})["accepted"], 20,
                   message=f"entry {slot} started")
        # The entry is done with its lot (one transaction), then the lot protected.
        wait_until(lambda slot=slot, n=n: _entry_state(eng, slot) == "done" and len(
            [lot for lot in eng.open_lots() if lot.state == "open"]) == n, 40,
            message=f"entry {slot} over, {n} lots protected")
    lots = eng.open_lots()
    assert len(lots) == 3 and len({lot.order_ref for lot in lots}) == 3
    live = [o for o in sim.get_state()["open_orders"] if o["action"] == "BUY"]
    for lot in lots:
        legs = [o for o in live if o["order_ref"] in (lot.tp_order_ref, lot.sl_order_ref)]
        assert len(legs) == 2 and legs[0]["oca_group"] == legs[1]["oca_group"] == lot.oca_group
        fills = eng.book().fills(lot.id).get(timeout=5)
        assert [f.side for f in fills] == ["SLD"], fills
    entries = {e.slot: e for e in eng.book().entries().get(timeout=5)}
    assert sorted((e.state, e.lot_id) for e in entries.values()) == sorted(
        ("done", lot.id) for lot in lots)
