"""Money paths, second pass (issue 32): the findings no wire scenario can pose in a
deterministic way (a race inside one reconciliation), shown on the book's own code."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from actors.position_book.reconcile import ReconcileMixin
from tests.support.answered import Answered as _Answer


class _Conn:
    """A Connection proxy that records the order in which the broker is asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call() -> _Answer:
            self.asked.append(name)
            return _Answer([])
        return call


def test_the_reconcile_fallback_reads_positions_before_executions() -> None:
    """Item 9: the fallback (a snapshot overtaken three times) read executions, then
    open orders, then positions: an exit filling in between was a position gone with no
    execution, closed `reconciled_estimated` at a guessed price. Positions first (the
    rule the fetch follows): a fill that moved them is then among the executions. It
    asks the completed orders too, as the full reconciliation does."""
    conn = _Conn()
    book: Any = ReconcileMixin()
    book.directory = SimpleNamespace(ref=lambda name: SimpleNamespace(proxy=lambda: conn))
    book.cfg = SimpleNamespace(gateway=SimpleNamespace(request_timeout=1.0))
    book.log = SimpleNamespace(warning=lambda *a: None)
    got: list[Any] = []
    book._apply_snapshot = lambda *args: got.append(args) or {}
    book.reconcile()
    assert conn.asked[0] == "positions", conn.asked
    assert conn.asked.index("positions") < conn.asked.index("executions")
    assert "completed_orders" in conn.asked
    assert len(got) == 1 and len(got[0]) == 4


def test_only_the_verified_accounts_positions_and_executions_are_ours() -> None:
    """Item 6: a login that manages several accounts reports all their positions and
    executions; before, the book matched them all against its lots (another account's
    put on the same contract could close our lot or be adopted). ibsim manages one
    account only (orders for another are refused), so this is shown on the rule the
    Connection filters positions, position updates and executions by."""
    from trading.risk import of_account

    assert of_account("DU111", "DU111")
    assert not of_account("DU111", "DU222")
    assert not of_account("", "DU222")  # nothing verified: nothing is ours


def test_a_lot_close_and_its_alert_commit_together(tmp_path: Any) -> None:
    """Item 10: the book closed a lot in one commit and wrote its alert in another: a
    process dying in between lost the alert (`assigned`, `lot_closed`). Now both are
    one transaction: both are there, or (the alert cannot be written) neither."""
    import pytest

    from alerts.outbox import AlertStore
    from book.alert_rows import AlertRow
    from book.store import Store
    from tests.unit.test_store import _lot

    bare = Store(tmp_path / "bare.sqlite")  # no alert tables: the alert's write fails
    lot_id = _lot(bare)
    row = AlertRow("assigned", "lot 1 assigned", "warning", {"lot_id": lot_id}, ("t",))
    with pytest.raises(Exception, match="alert"):
        bare.close_lot_with_alert(lot_id, 2.0, 1.0, "assigned", 10.0, row)
    assert bare.lot(lot_id).state != "closed"  # rolled back with it

    path = tmp_path / "book.sqlite"
    outbox = AlertStore(path, ["t"])
    store = Store(path)
    lot_id = _lot(store)
    alert_id, folded = store.close_lot_with_alert(lot_id, 2.0, 1.0, "assigned", 10.0, row)
    assert not folded and store.lot(lot_id).close_reason == "assigned"
    (stored,) = outbox.recent(5)
    assert stored["id"] == alert_id and stored["kind"] == "assigned"
    assert outbox.next_pending("t")["id"] == alert_id
    assert store.close_lot_with_alert(lot_id, 2.0, 1.0, "assigned", 10.0, row) is None


def test_a_done_entry_is_never_turned_failed_by_a_late_finish(tmp_path: Any) -> None:
    """Item 7: the entry gave up on its sale and, a moment later, wrote `failed`
    unconditionally: a late fill that had opened the lot (entry `done`, same
    transaction) in between was overwritten, and the slot could run again (a second
    lot, a second exit pair). A done entry stays done."""
    from book.store import Store

    store = Store(tmp_path / "b.sqlite")
    assert store.start_entry("2026-11-24", "09:35")
    lot_id = store.open_lot(
        entry=("2026-11-24", "09:35"), trade_date="2026-11-24", slot="09:35", con_id=42,
        symbol="SPY", expiry="20261201", strike=585.0, right="P", local_symbol="SPY P585",
        multiplier=100, qty=1, entry_price=1.0, entry_time=1.0, order_ref="r",
        tp_price=0.4, sl_price=3.0)
    store.finish_entry("2026-11-24", "09:35", "failed", "sale outcome unknown")
    entry = store.entry("2026-11-24", "09:35")
    assert (entry.state, entry.lot_id) == ("done", lot_id)
