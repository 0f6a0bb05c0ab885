"""An entry a dead run left 'started' is freed (the slot may sell again) only once the
book has settled its sales. A sale still `intent`/`sent`/`unknown` in the book may have
filled while the engine was away, where past IB's daily reset neither the open orders nor
the executions show it: only the full reconciliation (the broker's short) tells. A repair
tick that ran before that reconciliation freed the slot for a second sale. Shown on the
executor's own code with a real SQLite book and a stand-in PositionBook proxy (which of
the reconciliation and a repair tick comes first is not something a wire scenario pins
down; the wire case is tests/engine/test_sale_killed_before_its_ack.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from loguru import logger

from actors.order_executor.repair import RepairMixin
from book.store import Store
from tests.support.answered import Answered
from trading.order_refs import sale_ref


class _Book:
    """The PositionBook's two calls this path makes, on the real store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def started_entries(self) -> Answered:
        return Answered(self.store.entries_in_state("started"))

    def interrupt_entry(self, trade_date: str, slot: str, reason: str) -> Answered:
        return Answered(self.store.interrupt_entry(trade_date, slot, reason))


class _Executor(RepairMixin):
    def __init__(self, store: Store) -> None:
        self.intents = store
        self.book = _Book(store)
        self.alerts = SimpleNamespace(said=[])
        self.alerts.raise_alert = lambda kind, *a, **k: self.alerts.said.append(kind)
        self.log = logger
        self._told_unsettled: set[tuple[str, str]] = set()

    def _t(self, extra: float = 0.0) -> float:
        return 5.0


def _claimed(store: Store, slot: str, sale_status: str | None) -> None:
    store.start_entry("2026-11-24", slot)
    if sale_status is None:
        return
    ref = sale_ref("2026-11-24", slot, 1)
    store.record_intent(order_ref=ref, role="sale", con_id=7, action="SELL",
                        order_type="LMT", qty=1, lmt_price=1.5, trade_date="2026-11-24")
    if sale_status != "intent":
        store.mark_order(ref, status=sale_status)


def test_an_entry_with_an_unsettled_sale_waits_for_the_reconciliation(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "book.sqlite")
    _claimed(store, "09:35", None)         # killed before its sale: freed
    _claimed(store, "10:00", "intent")     # killed between the send and the ack
    _claimed(store, "10:30", "unknown")    # no ack within the timeout
    _claimed(store, "11:00", "cancelled")  # settled by the reconciliation: freed
    _claimed(store, "11:30", "sent")
    _claimed(store, "12:00", "submitted")  # acked, then nothing more known
    ex = _Executor(store)
    ex._release_interrupted_entries([])
    states = {e.slot: e.state for e in store.entries("2026-11-24")}
    assert states == {"09:35": "interrupted", "10:00": "started", "10:30": "started",
                      "11:00": "interrupted", "11:30": "started", "12:00": "started"}
    assert ex.alerts.said == ["entry_interrupted", "entry_interrupted"]
    assert len(ex._told_unsettled) == 4  # each waiting entry said once in the log
    # The reconciliation then marks the never-filled intent cancelled: the slot is freed.
    store.mark_order(sale_ref("2026-11-24", "10:00", 1), status="cancelled",
                     error="not live at the broker")
    ex._release_interrupted_entries([])
    assert store.entry("2026-11-24", "10:00").state == "interrupted"
