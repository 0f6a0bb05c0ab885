"""A fresh lot's first exit pair is written in the lot's own transaction (issue 34:
one durable commit between a fill and its protection). Those intents are then either
sent, or marked as never sent: never left as 'intent' rows for a restart to guess
about. On the executor's own code and a real SQLite book; the wire case (the pair sent
and acked on ibsim) is tests/engine/test_exits_speed.py and test_lifecycle.py."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from loguru import logger

from actors.order_executor.exits import ExitsMixin
from book.store import Store
from config.loader import load_config
from tests.support.answered import Answered
from trading.model import ContractInfo, LinkState, OrderInfo

REF = "tb:2026-11-24:0935:sale:1"
PUT = ContractInfo(con_id=42, symbol="SPY", sec_type="OPT", expiry="20261127",
                   strike=590.0, right="P", multiplier=100,
                   local_symbol="SPY   261127P00590000")


class _Executor(ExitsMixin):
    def __init__(self, store: Store, ready: bool) -> None:
        self.cfg = load_config(None, environ={})
        self.intents = store
        self.log = logger
        self.said: list[str] = []
        self.alerts = SimpleNamespace(
            raise_alert=lambda kind, *a, **k: self.said.append(kind))
        self.book = SimpleNamespace(
            set_lot_state=lambda lot_id, state: Answered(store.set_lot_state(lot_id, state)))
        self.ready = ready
        self._written_exits = {}
        self.directory = SimpleNamespace(link=SimpleNamespace(
            state=LinkState.READY if ready else LinkState.CONNECTED))
        self.sent: list[list[str]] = []
        self.conn = SimpleNamespace(place_orders=self._place_orders)
        self.book.set_exits = lambda lot_id, **f: Answered(
            store.set_exits(lot_id, **{k: v for k, v in f.items() if k != "state"}))

    def _place_orders(self, reqs: list[Any]) -> Answered:
        """The gateway acks both legs (a TP rests Submitted, a stop PreSubmitted)."""
        self.sent.append([r.order_ref for r in reqs])
        return Answered([
            OrderInfo(100 + i, 200 + i, r.order_ref, r.contract.con_id, "", "BUY",
                      r.order_type, r.qty, r.lmt_price, r.aux_price, r.oca_group,
                      "Submitted" if r.order_type == "LMT" else "PreSubmitted")
            for i, r in enumerate(reqs)])

    def _record(self, info: OrderInfo) -> None:
        self.intents.mark_order(info.order_ref, status="submitted", order_id=info.order_id)

    def _lot_closed(self, lot_id: int) -> bool:
        return False

    def _wait_ready(self, seconds: float) -> bool:
        return self.ready

    def _t(self, extra: float = 0.0) -> float:
        return 5.0 + extra


def _sold_and_filled(store: Store) -> OrderInfo:
    store.start_entry("2026-11-24", "09:35")
    store.record_intent(REF, "sale", PUT.con_id, "SELL", "LMT", 1, lmt_price=6.1,
                        trade_date="2026-11-24")
    return OrderInfo(7, 8, REF, PUT.con_id, PUT.local_symbol, "SELL", "LMT", 1.0, 6.1,
                     None, "", "Filled", filled=1.0, avg_fill_price=6.08)


def test_the_first_pair_is_durable_with_the_lot(tmp_path: Path) -> None:
    store = Store(tmp_path / "book.sqlite")
    ex = _Executor(store, ready=True)
    lot, opened = ex.lot_of_sale(_sold_and_filled(store), PUT, "2026-11-24")
    assert opened
    legs = store.exit_orders_of(lot.id)
    assert [(o.role, o.order_type, o.status) for o in legs] == [
        ("tp", "LMT", "intent"), ("sl", "STP", "intent")]
    assert legs[0].oca_group == legs[1].oca_group
    assert (legs[0].lmt_price, legs[1].aux_price) == (lot.tp_price, lot.sl_price)
    rows, durable = ex._written_exits[lot.id]
    assert [r.order_ref for r in rows] == [o.order_ref for o in legs]
    assert durable <= time.monotonic()


def test_a_first_pair_that_cannot_be_sent_is_marked_never_sent(tmp_path: Path) -> None:
    """The link is down when the pair would go: its intents say 'cancelled, not sent'
    (the repair job places a new pair once READY), the lot is unprotected, alerted."""
    store = Store(tmp_path / "book.sqlite")
    ex = _Executor(store, ready=False)
    lot, _ = ex.lot_of_sale(_sold_and_filled(store), PUT, "2026-11-24")
    assert ex.place_exits(lot, PUT) is False
    legs = store.exit_orders_of(lot.id)
    assert [o.status for o in legs] == ["cancelled"] * 2
    assert all(o.error.startswith("not sent: the link was down") for o in legs)
    assert ex.sent == []
    assert ex._written_exits == {}
    assert store.lot(lot.id).state == "unprotected"
    assert ex.said == ["lot_unprotected"]


def test_a_lot_the_book_opened_first_writes_no_pair_with_it(tmp_path: Path) -> None:
    """The fill event's lot came first: the executor finds it (not opened here) and
    writes nothing with it; place_exits then asks the broker before any pair."""
    store = Store(tmp_path / "book.sqlite")
    info = _sold_and_filled(store)
    ex = _Executor(store, ready=True)
    first, opened = ex.lot_of_sale(info, PUT, "2026-11-24")
    ex2: Any = _Executor(store, ready=True)
    again, opened_again = ex2.lot_of_sale(info, PUT, "2026-11-24")
    assert (again.id, opened, opened_again) == (first.id, True, False)
    assert ex2._written_exits == {} and len(store.exit_orders_of(first.id)) == 2


def test_the_pair_written_with_the_lot_is_the_pair_sent(tmp_path: Path) -> None:
    """The normal path: the two intents written with the lot are the orders sent, with
    no second pair written (nothing left as an `intent` for a restart to guess at)."""
    store = Store(tmp_path / "book.sqlite")
    ex = _Executor(store, ready=True)
    lot, _ = ex.lot_of_sale(_sold_and_filled(store), PUT, "2026-11-24")
    (written, _durable) = ex._written_exits[lot.id]
    assert ex.place_exits(lot, PUT) is True
    assert ex.sent == [[r.order_ref for r in written]]
    legs = store.exit_orders_of(lot.id)
    assert [o.order_ref for o in legs] == [r.order_ref for r in written]
    assert [o.status for o in legs] == ["submitted", "submitted"]
    assert store.lot(lot.id).tp_order_ref == written[0].order_ref


def test_two_pairs_built_within_one_millisecond_never_share_a_ref(tmp_path: Path) -> None:
    """A first pair dropped unsent and the fresh one after it can be built in the same
    millisecond: their orderRefs (UNIQUE in the book) still differ."""
    store = Store(tmp_path / "book.sqlite")
    ex = _Executor(store, ready=True)
    lot, _ = ex.lot_of_sale(_sold_and_filled(store), PUT, "2026-11-24")
    refs = {r.order_ref for _ in range(50) for r in ex._exit_intents(lot, PUT)}
    assert len(refs) == 100
