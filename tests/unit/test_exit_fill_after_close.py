"""An exit's fill that reaches the book after its lot was closed by another path: the
fills are the truth, and the lot's price, reason and realized P&L follow them.

Found by the chaos soak (seed 14): a lot sold at 0.64 was closed from the completed
orders at its stop, 1.92 (marked estimated: a stop fills at the market); the stop had
filled at 32.78 after a spot jump, and that execution, stored onto the closed lot later,
left it at 1.92: a realized loss of 129.30 where the fills say 3,215.30, and the daily
loss limit reads the former. On real SQLite files, through the book's own fill path."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from actors.position_book.fills import FillsMixin
from actors.position_book.settlement import SettlementMixin
from book.store import Store
from trading.fills import first_contracts_vwap, sale_lot_fields
from trading.model import ContractInfo, FillInfo, OrderInfo
from trading.records import Lot, StoredFill

SALE = "tb:2026-12-01:0935:sale:1"
PUT = ContractInfo(con_id=42, symbol="SPY", sec_type="OPT", expiry="20261204",
                   strike=590.0, right="P", multiplier=100,
                   local_symbol="SPY   261204P00590000")


class _Alerts:
    def __init__(self) -> None:
        self.raised: list[tuple[str, str, dict[str, Any]]] = []

    def raise_alert(self, kind: str, message: str, severity: str = "warning",
                    details: dict[str, Any] | None = None) -> None:
        self.raised.append((kind, message, details or {}))


class _Book(SettlementMixin, FillsMixin):
    """The book's fill and settlement parts on a real store; the rest stubbed."""


def _book(store: Store) -> Any:
    book: Any = _Book()
    book.db = store
    book.cfg = SimpleNamespace(strategy=SimpleNamespace(
        take_profit_ratio=0.5, stop_loss_ratio=3.0, symbol="SPY"))
    book.log = SimpleNamespace(info=lambda *a: None, warning=lambda *a: None)
    book.directory = SimpleNamespace(tell=lambda name, msg: None, ref=lambda name: None)
    book.contract = lambda con_id: PUT
    book._today = lambda: "2026-12-01"
    book.alerts = _Alerts()
    book.loss_checks = 0

    def check() -> None:
        book.loss_checks += 1

    def close_announced(lot_id: int, price: float | None, when: float, reason: str,
                        realized: float | None, kind: str, message: str, severity: str,
                        details: dict[str, Any], estimated: str = "") -> bool:
        # settlement's own path for an alerter without an outbox in this file
        if not store.close_lot(lot_id, price, when, reason, realized, estimated):
            return False
        book.alerts.raise_alert(kind, message, severity, details)
        return True

    book._check_daily_loss = check
    book._close_announced = close_announced
    book._unwatch = lambda con_id: None
    book.clock = SimpleNamespace(now=lambda: __import__("datetime").datetime.now())
    return book


def _fill(exec_id: str, ref: str, side: str, price: float, qty: float = 1,
          commission: float | None = 0.65, at: float | None = None) -> FillInfo:
    return FillInfo(exec_id=exec_id, order_id=7, perm_id=8, order_ref=ref,
                    con_id=PUT.con_id, local_symbol=PUT.local_symbol, side=side, qty=qty,
                    price=price, time=time.time() if at is None else at,
                    commission=commission)


def _protected_lot(store: Store, book: Any, entry: float = 0.64, qty: int = 1,
                   slot: str = "09:35") -> Lot:
    """A sale of ours filled (its execution stored), its TP+SL pair recorded."""
    ref = f"tb:2026-12-01:{slot.replace(':', '')}:sale:1"
    store.start_entry("2026-12-01", slot)
    store.record_intent(ref, "sale", PUT.con_id, "SELL", "LMT", qty, lmt_price=entry,
                        trade_date="2026-12-01")
    lot_entry, fields = sale_lot_fields(ref, "2026-12-01", PUT, qty, entry, time.time(),
                                        0.5, 3.0)
    lot, _ = store.open_sale_lot(entry=lot_entry, **fields)
    book.apply_fill(_fill(f"e-sale-{slot}", ref, "SLD", entry, qty))
    for role, otype in (("tp", "LMT"), ("sl", "STP")):
        store.record_intent(f"tb:lot{lot.id}:{role}:1", role, PUT.con_id, "BUY", otype, qty,
                            lmt_price=lot.tp_price if role == "tp" else None,
                            aux_price=lot.sl_price if role == "sl" else None,
                            oca_group=f"oca{lot.id}", lot_id=lot.id, trade_date="2026-12-01")
    got = store.lot(lot.id)
    assert got is not None
    return got


def test_a_stop_closed_at_its_price_is_repriced_by_its_fill(tmp_path: Path) -> None:
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book)
    assert lot.sl_price == 1.92
    # The completed orders' close: at the stop, estimated (settlement._apply_completed).
    assert store.close_lot(lot.id, 1.92, time.time(), "stop_loss", -128.65, estimated="exit")

    book.apply_fill(_fill("e-sl", f"tb:lot{lot.id}:sl:1", "BOT", 32.78))

    after = store.lot(lot.id)
    assert after is not None
    assert (after.exit_price, after.close_reason) == (32.78, "stop_loss")
    assert after.realized_pnl == round((0.64 - 32.78) * 100 - 1.30, 2) == -3215.30
    assert not after.pnl_estimated and not after.exit_estimated  # both from executions
    ((kind, message, details),) = [a for a in book.alerts.raised if a[0] != "lot_closed"]
    assert kind == "lot_repriced" and "32.78" in message and "1.92" in message
    assert details["was_realized_pnl"] == -129.30 and details["realized_pnl"] == -3215.30
    assert book.loss_checks == 1  # the daily loss limit judged the true loss

    # The execution reported again (every reconnect asks for them): nothing moves.
    book.apply_fill(_fill("e-sl", f"tb:lot{lot.id}:sl:1", "BOT", 32.78))
    assert store.lot(lot.id) == after
    assert [k for k, _, _ in book.alerts.raised].count("lot_repriced") == 1


def test_an_estimated_close_takes_the_reason_of_the_exit_that_filled(tmp_path: Path) -> None:
    """A position check closed it `reconciled_estimated` at the SL stop (nearer the
    quote); the take-profit's execution arrives afterwards: it was the take-profit."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=2.0)
    assert store.close_lot(lot.id, lot.sl_price, time.time(), "reconciled_estimated", -400.0,
                           estimated="exit")

    book.apply_fill(_fill("e-tp", f"tb:lot{lot.id}:tp:1", "BOT", 1.0))

    after = store.lot(lot.id)
    assert after is not None
    assert (after.exit_price, after.close_reason) == (1.0, "take_profit")
    assert after.realized_pnl == 98.70 and not after.pnl_estimated


def test_a_kill_between_the_store_and_the_repricing_is_finished_on_the_repeat(
        tmp_path: Path) -> None:
    """The execution stored (add_fill committed) and the engine killed before the lot
    was re-priced: the same execution reported again after the restart finishes it."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book)
    assert store.close_lot(lot.id, 1.92, time.time(), "stop_loss", -128.65, estimated="exit")
    fill = _fill("e-sl", f"tb:lot{lot.id}:sl:1", "BOT", 32.78)
    assert store.add_fill(StoredFill.of(fill, lot.id))  # ... and the kill

    book = _book(Store(tmp_path / "book.sqlite"))  # the restarted engine
    book.apply_fill(fill)
    after = book.db.lot(lot.id)
    assert (after.exit_price, after.realized_pnl) == (32.78, -3215.30)
    assert [k for k, _, _ in book.alerts.raised] == ["lot_repriced"]


def test_a_kill_before_the_repricing_is_finished_by_the_reconciliation(
        tmp_path: Path) -> None:
    """... and when the execution is never reported again (the restart came after IB's
    daily reset), the reconciliation's look at every estimated exit finishes it."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book)
    assert store.close_lot(lot.id, 1.92, time.time(), "stop_loss", -128.65, estimated="exit")
    assert store.add_fill(StoredFill.of(
        _fill("e-sl", f"tb:lot{lot.id}:sl:1", "BOT", 32.78), lot.id))

    book = _book(Store(tmp_path / "book.sqlite"))
    book._reprice_estimated_exits()
    book._reprice_estimated_exits()  # once only
    assert book.db.lot(lot.id).exit_price == 32.78
    assert [k for k, _, _ in book.alerts.raised] == ["lot_repriced"]
    assert book.db.closed_lots_with_estimated_exit() == []


def test_an_entry_estimated_from_the_limit_stays_so(tmp_path: Path) -> None:
    """The sale's execution was never known (its lot priced by its limit): the exit is
    re-priced by its fill, the P&L is still marked estimated and the alert says why."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    store.start_entry("2026-12-01", "09:35")
    store.record_intent(SALE, "sale", PUT.con_id, "SELL", "LMT", 1, lmt_price=0.60,
                        trade_date="2026-12-01")
    lot_entry, fields = sale_lot_fields(SALE, "2026-12-01", PUT, 1, 0.60, time.time(),
                                        0.5, 3.0)
    lot, _ = store.open_sale_lot(entry=lot_entry, **fields, pnl_estimated=1,
                                 entry_estimated=1)  # as _open_lot_from_completed does
    store.record_intent(f"tb:lot{lot.id}:sl:1", "sl", PUT.con_id, "BUY", "STP", 1,
                        aux_price=lot.sl_price, lot_id=lot.id, trade_date="2026-12-01")
    assert store.close_lot(lot.id, lot.sl_price, time.time(), "stop_loss", -120.0,
                           estimated="exit")

    book.apply_fill(_fill("e-sl", f"tb:lot{lot.id}:sl:1", "BOT", 2.0))

    after = store.lot(lot.id)
    assert after.exit_price == 2.0 and after.realized_pnl == -140.65
    assert after.pnl_estimated and after.entry_estimated and not after.exit_estimated
    ((_, message, _),) = [a for a in book.alerts.raised if a[0] == "lot_repriced"]
    assert "entry still estimated" in message


def test_an_exit_of_a_piece_filled_while_away_belongs_to_the_piece(tmp_path: Path) -> None:
    """A lot of 2 whose stop was sized for 1 (a part resized) filled while the engine was
    away: the completed orders close a piece of 1 at the stop (estimated). The stop's
    execution, reported later, re-prices that piece; the rest, still held, stays open
    (before, the order still named the whole lot: its late execution closed the rest,
    or re-priced it when its own exit had closed it already)."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=0.64, qty=2)
    ref = f"tb:lot{lot.id}:sl:1"
    store.mark_order(ref, status="submitted", order_id=21)
    done = OrderInfo(21, 22, ref, PUT.con_id, PUT.local_symbol, "BUY", "STP", 1.0, None,
                     lot.sl_price, f"oca{lot.id}", "Filled", filled=1.0)
    assert book._apply_completed([done], []) == {ref}
    (piece,) = [x for x in store.lots(["closed"])]
    assert piece.id != lot.id and piece.exit_estimated and piece.qty == 1

    book.apply_fill(_fill("e-sl", ref, "BOT", 32.78))

    rest, repriced = store.lot(lot.id), store.lot(piece.id)
    assert rest.state != "closed" and rest.qty == 1
    assert (repriced.exit_price, repriced.exit_estimated) == (32.78, False)


def test_the_second_leg_of_an_overfilled_pair_leaves_the_lot_as_its_exit_closed_it(
        tmp_path: Path) -> None:
    """Both legs of the OCA pair filled in one instant (the soak, seed 12): the lot
    closed by the first; the second's contract is a long the account now holds, not a
    part of the lot's exit price. Its commission is the lot's (a cost its exits made)."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=0.79)
    at = time.time()  # one second at IB: the other leg's exec id sorts first
    book.apply_fill(_fill("e-tp", f"tb:lot{lot.id}:tp:1", "BOT", 0.02, at=at))
    closed = store.lot(lot.id)
    assert closed is not None
    assert (closed.exit_price, closed.close_reason, closed.realized_pnl) == (
        0.02, "take_profit", 75.70)

    book.apply_fill(_fill("e-a-sl", f"tb:lot{lot.id}:sl:1", "BOT", 0.05, at=at))

    after = store.lot(lot.id)
    assert after is not None
    assert (after.exit_price, after.close_reason) == (0.02, "take_profit")
    assert after.realized_pnl == 75.05  # the second leg's commission only
    assert [k for k, _, _ in book.alerts.raised] == ["lot_closed"]  # and nothing more


def test_a_slice_of_the_exit_leaves_the_estimate_until_the_lot_is_covered(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=1.0, qty=2)
    assert store.close_lot(lot.id, 3.0, time.time(), "stop_loss", -401.3, estimated="exit")
    ref = f"tb:lot{lot.id}:sl:1"
    book.apply_fill(_fill("e-sl1", ref, "BOT", 4.0))
    assert store.lot(lot.id).exit_price == 3.0 and book.alerts.raised == []
    book.apply_fill(_fill("e-sl2", ref, "BOT", 5.0))
    after = store.lot(lot.id)
    assert after.exit_price == 4.5 and after.realized_pnl == round(-700 - 1.95, 2)


def test_first_contracts_vwap() -> None:
    f = SimpleNamespace
    assert first_contracts_vwap([f(qty=1, price=1.0), f(qty=2, price=2.0)], 2) == 1.5
    assert first_contracts_vwap([f(qty=1, price=1.0), f(qty=2, price=2.0)], 3) == round(5 / 3, 6)
    assert first_contracts_vwap([f(qty=1, price=1.0)], 2) is None
    assert first_contracts_vwap([], 0) is None


def test_a_book_written_before_the_split_estimate_is_read_from_what_it_holds(
        tmp_path: Path) -> None:
    """An older book has only pnl_estimated: a closed lot's exit is taken for the
    estimate (unless its own buy gave its price), and its entry too when no execution
    of its sale is stored (not a split-off piece's, which has no sale of its own)."""
    import sqlite3

    path = tmp_path / "book.sqlite"
    store = Store(path)
    book = _book(store)
    sold = _protected_lot(store, book)  # its sale's execution stored
    assert store.close_lot(sold.id, 1.92, time.time(), "stop_loss", -129.30, estimated="exit")
    lot_entry, fields = sale_lot_fields("tb:2026-12-02:0935:sale:1", "2026-12-02", PUT, 1,
                                        0.5, time.time(), 0.5, 3.0)
    store.start_entry("2026-12-02", "09:35")
    store.record_intent("tb:2026-12-02:0935:sale:1", "sale", PUT.con_id, "SELL", "LMT", 1,
                        lmt_price=0.5, trade_date="2026-12-02")
    unsold, _ = store.open_sale_lot(entry=lot_entry, **fields, pnl_estimated=1,
                                    entry_estimated=1)  # no execution stored
    # ... and closed by its own stop's execution: its exit is no guess.
    store.record_intent(f"tb:lot{unsold.id}:sl:1", "sl", PUT.con_id, "BUY", "STP", 1,
                        aux_price=1.5, lot_id=unsold.id, trade_date="2026-12-02")
    assert store.add_fill(StoredFill("e-unsold-sl", f"tb:lot{unsold.id}:sl:1", 9, 9,
                                     PUT.con_id, "BOT", 1, 1.5, 0.65, time.time(),
                                     unsold.id))
    assert store.close_lot(unsold.id, 1.5, time.time(), "stop_loss", -100.65)
    whole = _protected_lot(store, book, entry=1.0, qty=2, slot="10:05")  # sale stored
    piece_id = store.split_lot(whole.id, 1)
    assert piece_id is not None
    assert store.close_lot(piece_id, 3.0, time.time(), "stop_loss", -200.65, estimated="exit")
    store.close()
    old = sqlite3.connect(path)
    for col in ("entry_estimated", "exit_estimated"):
        old.execute(f"ALTER TABLE lots DROP COLUMN {col}")
    old.commit()
    old.close()

    again = Store(path)
    a, b = again.lot(sold.id), again.lot(unsold.id)
    assert (a.entry_estimated, a.exit_estimated, a.pnl_estimated) == (False, True, True)
    assert (b.entry_estimated, b.exit_estimated, b.pnl_estimated) == (True, False, True)
    piece = again.lot(piece_id)  # no sale of its own: its entry is its lot's, not a guess
    assert (piece.entry_estimated, piece.exit_estimated) == (False, True)
    assert Store(path).lot(sold.id) == a  # opened again: nothing migrated twice


def test_a_take_profit_closed_at_its_limit_takes_its_executions_price(
        tmp_path: Path) -> None:
    """The completed orders close a lot by its take-profit at the order's limit (not
    flagged estimated: a limit fills at it or better); its execution, reported later,
    says what it filled at: a better price re-prices the lot, the limit itself only
    confirms it (no alert)."""
    for filled_at, alerts in ((0.30, ["lot_repriced"]), (0.32, [])):
        store = Store(tmp_path / f"book-{filled_at}.sqlite")
        book = _book(store)
        lot = _protected_lot(store, book, entry=0.64)
        ref = f"tb:lot{lot.id}:tp:1"
        store.mark_order(ref, status="submitted", order_id=31)
        done = OrderInfo(31, 32, ref, PUT.con_id, PUT.local_symbol, "BUY", "LMT", 1.0,
                         lot.tp_price, None, f"oca{lot.id}", "Filled", filled=1.0)
        book._apply_completed([done], [])
        closed = store.lot(lot.id)
        assert (closed.exit_price, closed.pnl_estimated, closed.exit_estimated) == (
            0.32, False, True)

        book.apply_fill(_fill("e-tp", ref, "BOT", filled_at))

        after = store.lot(lot.id)
        assert (after.exit_price, after.exit_estimated, after.pnl_estimated) == (
            filled_at, False, False)
        assert after.realized_pnl == round((0.64 - filled_at) * 100 - 1.30, 2)
        assert [k for k, _, _ in book.alerts.raised if k != "lot_closed"] == alerts


def test_a_lot_called_expired_is_repriced_by_its_stops_execution(tmp_path: Path) -> None:
    """The expiry rule closed a lot `expired` (worthless at the close) before the stop's
    execution, filled earlier that day, was applied: the fills say it was stopped out."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=0.64)
    assert book._close_expired(lot, 601.0)
    closed = store.lot(lot.id)
    assert (closed.close_reason, closed.exit_estimated, closed.pnl_estimated) == (
        "expired", True, False)

    book.apply_fill(_fill("e-sl", f"tb:lot{lot.id}:sl:1", "BOT", 1.95))

    after = store.lot(lot.id)
    assert (after.close_reason, after.exit_price, after.exit_estimated) == (
        "stop_loss", 1.95, False)
    assert after.realized_pnl == round((0.64 - 1.95) * 100 - 1.30, 2)
    ((_, message, _),) = [a for a in book.alerts.raised if a[0] == "lot_repriced"]
    assert "expired worthless" in message


def test_an_exit_fill_stored_by_a_killed_engine_closes_its_lot_when_reported_again(
        tmp_path: Path) -> None:
    """Killed after the execution was stored (its order marked filled) and before the lot
    was closed: the completed orders skip a filled order, so the execution reported again
    closes the lot, by its own price (before, the lot stayed open until a position check
    closed it at an estimate)."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=0.64)
    fill = _fill("e-tp", f"tb:lot{lot.id}:tp:1", "BOT", 0.31)
    assert store.add_fill(StoredFill.of(fill, lot.id))  # ... and the kill

    book = _book(Store(tmp_path / "book.sqlite"))
    book.apply_fill(fill)
    after = book.db.lot(lot.id)
    assert (after.state, after.close_reason, after.exit_price) == ("closed", "take_profit",
                                                                   0.31)
    assert not after.exit_estimated and after.realized_pnl == round(33 - 1.30, 2)
    book.apply_fill(fill)  # and once more: nothing moves
    assert book.db.lot(lot.id) == after


def test_an_unconfirmed_take_profit_keeps_its_leg_when_both_legs_filled_in_one_second(
        tmp_path: Path) -> None:
    """Closed at the take-profit's limit from the completed orders; both legs' executions
    come in one second, the stop's reported first and its exec id sorting first: the
    lot is priced by its take-profit, as the completed orders said (the stop's contract
    is a long held)."""
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    lot = _protected_lot(store, book, entry=0.64)
    assert store.close_lot(lot.id, lot.tp_price, time.time(), "take_profit", 30.7,
                           estimated="unconfirmed")
    at = time.time()
    book.apply_fill(_fill("e-a-sl", f"tb:lot{lot.id}:sl:1", "BOT", 2.50, at=at))
    assert store.lot(lot.id).exit_price == lot.tp_price  # not the stop's
    book.apply_fill(_fill("e-b-tp", f"tb:lot{lot.id}:tp:1", "BOT", 0.30, at=at))
    after = store.lot(lot.id)
    assert (after.close_reason, after.exit_price) == ("take_profit", 0.30)


def test_the_close_and_its_estimate_are_one_write_through_the_alert_outbox(
        tmp_path: Path) -> None:
    """The production path (an alerter with an outbox: prepare, then announced): the
    close, its alert and its estimate flag go in one transaction."""
    from alerts.outbox import AlertStore
    from book.alert_rows import AlertRow

    outbox = AlertStore(tmp_path / "book.sqlite", ["t"])
    store = Store(tmp_path / "book.sqlite")
    book = _book(store)
    del book._close_announced  # settlement's own
    announced: list[int] = []
    book.alerts = SimpleNamespace(
        prepare=lambda kind, message, severity, details: AlertRow(
            kind, message, severity, details, ("t",)),
        announced=lambda alert_id, folded, row: announced.append(alert_id))
    lot = _protected_lot(store, book, entry=0.64)
    assert book._close_expired(lot, 601.0)
    closed = store.lot(lot.id)
    assert (closed.close_reason, closed.exit_estimated) == ("expired", True)
    (row,) = [a for a in outbox.recent(10) if a["kind"] == "lot_closed"]
    assert announced == [row["id"]]
