"""A pass of the Connection's loop tells the book its order updates as one batch (issue 34:
an entry's exit cancels answer by the dozen at once, and a commit each held up the sale's
own writes): stored in one transaction, each judged against the row as the batch's earlier
updates left it, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.position_book.fills import FillsMixin
from book.store import Store
from trading.model import OrderInfo

REFS = [f"tb:2026-11-24:lot{i}:tp:1" for i in range(1, 4)]


def _info(ref: str, order_id: int, status: str, code: int = 0, message: str = "") -> OrderInfo:
    return OrderInfo(order_id, 900 + order_id, ref, 7, "SPY P585", "BUY", "LMT", 1.0, 0.5,
                     None, "", status, error_code=code, error_message=message)


def _book(path: Path) -> Any:
    book: Any = FillsMixin()
    book.store = book.db = Store(path)
    return book


def test_a_batch_is_one_commit_in_order_and_never_undoes_a_fill(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    for ref in REFS:
        store.record_intent(ref, "tp", 7, "BUY", "LMT", 1, lmt_price=0.5)
    book = _book(tmp_path / "b.sqlite")
    marked: list[tuple[str, str | None, str | None]] = []
    write = book.db.mark_orders

    def mark_orders(marks: list[tuple[str, dict[str, Any]]]) -> None:
        marked.extend((ref, f["status"], f["error"]) for ref, f in marks)
        write(marks)

    book.db.mark_orders = mark_orders
    before = store._db.version
    book.apply_orders([
        _info(REFS[0], 11, "Submitted"),
        _info(REFS[0], 11, "Cancelled", 202, "Order Canceled"),
        _info(REFS[1], 12, "Filled"),
        _info(REFS[1], 12, "Cancelled"),  # a late status after the fill
        _info(REFS[2], 13, "Submitted"),
        _info(REFS[2], 13, "Submitted"),  # openOrder repeating orderStatus
        _info("not:ours:1", 14, "Cancelled"),
    ])
    assert store._db.version == before + 1  # one durable commit for the whole pass
    # Each judged against the row as the earlier updates of the batch left it: nothing
    # for the late status after the fill, nor for the repeat.
    assert marked == [(REFS[0], "submitted", None),
                      (REFS[0], "cancelled", "202: Order Canceled"),
                      (REFS[1], "filled", None), (REFS[2], "submitted", None)], marked
    rows = {ref: store.order_by_ref(ref) for ref in REFS}
    assert (rows[REFS[0]].status, rows[REFS[0]].error) == ("cancelled", "202: Order Canceled")
    assert rows[REFS[1]].status == "filled"
    assert (rows[REFS[2]].status, rows[REFS[2]].order_id, rows[REFS[2]].perm_id) == \
        ("submitted", 13, 913)
    before = store._db.version
    book.apply_orders([_info(REFS[2], 13, "Submitted")])  # nothing new: no commit
    assert store._db.version == before
