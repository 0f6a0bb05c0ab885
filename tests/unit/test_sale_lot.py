"""A filled sale's lot, opened at once by whoever sees the fill first (issue 34: the
executor opens it on its own connection, the book on the fill event): at most one lot per
sale, on real SQLite files, and the broker's figures for the order are not undone by the
first of its slices stored after them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actors.position_book.fills import FillsMixin
from book.store import Store
from trading.fills import sale_lot_fields
from trading.model import ContractInfo, FillInfo

REF = "tb:2026-11-24:0935:sale:1"
PUT = ContractInfo(con_id=42, symbol="SPY", sec_type="OPT", expiry="20261127",
                   strike=590.0, right="P", multiplier=100,
                   local_symbol="SPY   261127P00590000")


def _sold(store: Store, qty: int = 1) -> None:
    store.start_entry("2026-11-24", "09:35")
    store.record_intent(REF, "sale", PUT.con_id, "SELL", "LMT", qty, lmt_price=6.1,
                        trade_date="2026-11-24")


def _fields(qty: int = 1, price: float = 6.08) -> tuple[Any, dict[str, Any]]:
    return sale_lot_fields(REF, "2026-11-24", PUT, qty, price, time.time(), 0.4, 3.0)


def test_the_lot_row_a_sale_opens() -> None:
    entry, fields = _fields(2, 6.08)
    assert entry == ("2026-11-24", "09:35")
    assert (fields["tp_price"], fields["sl_price"]) == (2.43, 18.24)  # DESIGN's figures
    assert (fields["qty"], fields["order_ref"], fields["state"]) == (2, REF, "unprotected")
    assert fields["local_symbol"] == PUT.local_symbol and fields["slot"] == "09:35"


def test_two_connections_opening_one_sales_lot_at_once_make_one_lot(tmp_path: Path) -> None:
    """The book (fill event) and the executor (order status) on their own connections,
    at the same instant: one lot, both told its id, the entry done with it."""
    path = tmp_path / "b.sqlite"
    _sold(Store(path))
    stores = [Store(path) for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    got: list[tuple[int, bool]] = []

    def open_it(s: Store) -> None:
        entry, fields = _fields()
        barrier.wait()
        lot, opened = s.open_sale_lot(entry=entry, **fields)
        got.append((lot.id, opened))

    threads = [threading.Thread(target=open_it, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(opened for _, opened in got) == [False] * 5 + [True]
    assert len({lot_id for lot_id, _ in got}) == 1
    check = Store(path)
    assert len(check.open_lots()) == 1
    lot_id = got[0][0]
    assert check.entry("2026-11-24", "09:35").lot_id == lot_id
    assert check.entry("2026-11-24", "09:35").state == "done"
    assert check.order_by_ref(REF).lot_id == lot_id


def test_a_sale_lot_without_its_intent_or_of_another_contract_is_refused(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    entry, fields = _fields()
    with pytest.raises(KeyError, match="no intent row"):
        store.open_sale_lot(entry=entry, **fields)
    _sold(store)
    with pytest.raises(ValueError, match="sold contract 42, not 43"):
        store.open_sale_lot(entry=entry, **{**fields, "con_id": 43})
    with pytest.raises(ValueError, match="order_ref"):
        store.open_sale_lot(entry=entry, **{**fields, "order_ref": ""})
    assert store.open_lots() == []  # nothing written by a refusal
    assert store.entry("2026-11-24", "09:35").state != "done"


def _book(store: Store) -> Any:
    book: Any = FillsMixin()
    book.db = store
    book.cfg = SimpleNamespace(strategy=SimpleNamespace(
        take_profit_ratio=0.4, stop_loss_ratio=3.0, symbol="SPY"))
    book.log = SimpleNamespace(info=lambda *a: None, warning=lambda *a: None)
    told: list[Any] = []
    book.directory = SimpleNamespace(tell=lambda name, msg: told.append(msg))
    book.contract = lambda con_id: PUT
    book._today = lambda: "2026-11-24"
    book.told = told
    return book


def test_the_first_slice_stored_after_the_order_filled_keeps_the_brokers_figures(
        tmp_path: Path) -> None:
    """The executor opened the lot at the order's figures (2 at 6.10, the broker's
    average); the book then stores the first slice (1 at 6.00): the lot stays 2 at
    6.10 (before, it was re-priced to the slice's 6.00 until the second arrived), and
    the second slice leaves it at their VWAP, the same 6.10."""
    store = Store(tmp_path / "b.sqlite")
    _sold(store, qty=2)
    entry, fields = _fields(2, 6.10)
    lot, opened = store.open_sale_lot(entry=entry, **fields)
    assert opened
    book = _book(store)

    def apply(exec_id: str, price: float) -> None:
        book.apply_fill(FillInfo(exec_id=exec_id, order_id=7, perm_id=8, order_ref=REF,
                                 con_id=PUT.con_id, local_symbol=PUT.local_symbol,
                                 side="SLD", qty=1, price=price, time=1.0))

    apply("e1", 6.00)
    after_one = store.lot(lot.id)
    assert (after_one.qty, after_one.entry_price) == (2, 6.10)
    assert (after_one.tp_price, after_one.sl_price) == (lot.tp_price, lot.sl_price)
    apply("e2", 6.20)
    after_two = store.lot(lot.id)
    assert (after_two.qty, round(after_two.entry_price, 6)) == (2, 6.10)
    assert len(store.open_lots()) == 1 and book.told == []  # no second lot, no ProtectLot


def test_a_fill_event_first_opens_the_lot_and_asks_for_its_protection(
        tmp_path: Path) -> None:
    """The other order: the book sees the fill before anyone opened the lot."""
    store = Store(tmp_path / "b.sqlite")
    _sold(store)
    book = _book(store)
    lot_id = book.apply_fill(FillInfo(exec_id="e1", order_id=7, perm_id=8, order_ref=REF,
                                      con_id=PUT.con_id, local_symbol=PUT.local_symbol,
                                      side="SLD", qty=1, price=6.08, time=1.0))
    entry, fields = _fields()
    lot, opened = store.open_sale_lot(entry=entry, **fields)  # the executor, after it
    assert not opened and lot.id == lot_id and len(book.told) == 1


def test_a_new_lots_first_exit_pair_is_written_with_it_and_only_then(tmp_path: Path) -> None:
    """The executor's first exit pair goes into the lot's own transaction (one durable
    commit between a fill and its protection, not two); a sale whose lot exists already
    builds nothing, so no second pair is ever written for it here."""
    from trading.records import OrderIntent

    store = Store(tmp_path / "b.sqlite")
    _sold(store)
    built: list[int] = []

    def pair(lot: Any) -> list[OrderIntent]:
        built.append(lot.id)
        return [OrderIntent(f"tb:lot{lot.id}:{role}:1", lot.id, lot.trade_date, role,
                            lot.con_id, "BUY", otype, lot.qty, lmt, aux, f"oca{lot.id}")
                for role, otype, lmt, aux in (("tp", "LMT", lot.tp_price, None),
                                              ("sl", "STP", None, lot.sl_price))]

    entry, fields = _fields()
    lot, opened = store.open_sale_lot(entry=entry, exits=pair, **fields)
    assert opened and built == [lot.id]
    legs = store.exit_orders_of(lot.id)
    assert [(o.role, o.status, o.lmt_price, o.aux_price) for o in legs] == [
        ("tp", "intent", lot.tp_price, None), ("sl", "intent", None, lot.sl_price)]
    again, opened_again = store.open_sale_lot(entry=entry, exits=pair, **fields)
    assert (again.id, opened_again) == (lot.id, False)
    assert built == [lot.id] and len(store.exit_orders_of(lot.id)) == 2

    # A pair that cannot be written takes the lot with it: never a lot whose first
    # pair the executor believes durable and is not.
    store2 = Store(tmp_path / "c.sqlite")
    _sold(store2)

    def broken(lot: Any) -> list[OrderIntent]:
        raise ValueError("no pair")

    with pytest.raises(ValueError):
        store2.open_sale_lot(entry=entry, exits=broken, **fields)
    assert store2.lots() == [] and store2.entry("2026-11-24", "09:35").state == "started"


def test_a_fill_stored_onto_a_closed_lot_moves_its_realized_pnl(tmp_path: Path) -> None:
    """A closed lot's realized P&L carries every commission of its fills, also of a fill
    stored (or attached) after the close with its commission already known: before, only
    a late commission report moved it."""
    from trading.records import StoredFill

    store = Store(tmp_path / "b.sqlite")
    _sold(store)
    entry, fields = _fields(1, 2.0)
    lot, _ = store.open_sale_lot(entry=entry, **fields)
    assert store.close_lot(lot.id, 1.2, time.time(), "take_profit", 80.0)
    store.add_fill(StoredFill("e-sale", REF, 1, 11, PUT.con_id, "SLD", 1, 2.0, 1.0,
                              time.time(), lot.id))
    store.add_fill(StoredFill("e-tp", "tb:x:tp:1", 2, 12, PUT.con_id, "BOT", 1, 1.2, None,
                              time.time(), lot.id))
    assert store.lot(lot.id).realized_pnl == 79.0
    store.set_commission("e-tp", 1.0)  # a late report, as before
    closed = store.lot(lot.id)
    assert closed.realized_pnl == 78.0 and closed.commissions == 2.0
