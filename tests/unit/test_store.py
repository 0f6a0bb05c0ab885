"""The SQLite book on real files: once-only fills, atomic slot claims, durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from book.store import Store
from trading.records import StoredFill

ROOT = Path(__file__).resolve().parents[2]


def _lot(store: Store, **over: object) -> int:
    fields = dict(
        trade_date="2026-11-24",
        slot="09:35",
        con_id=42,
        symbol="SPY",
        expiry="20261201",
        strike=585.0,
        right="P",
        local_symbol="SPY P585",
        multiplier=100,
        qty=1,
        entry_price=6.08,
        entry_time=1.0,
        order_ref="tb:s",
        tp_price=2.43,
        sl_price=18.24,
        state="unprotected",
    )
    fields.update(over)
    return store.open_lot(**fields)


def test_wal_mode_and_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    assert store._db.row("PRAGMA journal_mode")["journal_mode"] == "wal"
    assert store.integrity_check() == "ok"


def test_fill_is_stored_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    fill = StoredFill("e1", "r", order_id=1, perm_id=2, con_id=42, side="SLD", qty=1,
                      price=6.08, commission=None, time=1.0, lot_id=None)
    assert store.add_fill(fill) is True
    assert store.add_fill(fill) is False
    assert store.fill_count() == 1
    assert store.set_commission("e1", 0.65) is True
    assert store.fills()[0].commission == 0.65
    assert store.set_commission("e1", 0.65) is False  # a repeat writes nothing
    assert store.set_commission("nope", 0.65) is False


def test_slot_claim_is_atomic_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    stores = [Store(path) for _ in range(8)]
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(s: Store) -> None:
        barrier.wait()
        results.append(s.start_entry("2026-11-24", "09:35"))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_close_lot_is_idempotent_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    store = Store(path)
    lot_id = _lot(store)
    store.set_exits(
        lot_id,
        tp_order_id=5,
        sl_order_id=6,
        tp_order_ref="tp",
        sl_order_ref="sl",
        oca_group="g",
        state="open",
    )
    assert store.lot_by_order_ref("sl").id == lot_id
    assert store.close_lot(lot_id, 2.43, 2.0, "take_profit", 365.0) is True
    assert store.close_lot(lot_id, 18.24, 3.0, "stop_loss", -1216.0) is False
    store.close()
    again = Store(path)
    lot = again.lot(lot_id)
    assert (lot.state, lot.close_reason, lot.realized_pnl) == (
        "closed",
        "take_profit",
        365.0,
    )
    assert again.realized_total() == 365.0
    assert again.pnl_history()[-1].cumulative == 365.0


def test_intents_and_entries(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    store.record_intent("tb:1", "sale", 42, "SELL", "LMT", 1, lmt_price=6.1, trade_date="d")
    store.mark_order("tb:1", status="submitted", order_id=7)
    assert store.order_by_ref("tb:1").order_id == 7
    assert [o.order_ref for o in store.orders_by_status(["submitted"])] == ["tb:1"]
    assert store.start_entry("d", "09:35")
    store.finish_entry("d", "09:35", "done", "ok", lot_id=3)
    assert store.entry("d", "09:35").state == "done"
    store.set_kv("paused", True)
    assert store.get_kv("paused") is True
    assert store.get_kv("missing", 5) == 5


WRITER = """
import sys
from book.store import Store
from trading.records import StoredFill
s = Store(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    i += 1
    s.add_fill(StoredFill(f"e{i}", "r", i, i, 1, "SLD", 1, 1.0, None, float(i), None))
    s.set_kv("n", i)
"""


def test_kill_9_mid_write_leaves_a_sound_database(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    # Opened before the writer starts: from here on this side only reads, so a writer
    # in a tight loop cannot starve it of the write lock (SQLite's busy wait polls).
    store = Store(path)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"
    deadline_rows = 0
    while deadline_rows < 50:  # let it write a while, then kill it mid-flight
        deadline_rows = store.fill_count()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store.close()
    after = Store(path)
    assert after.integrity_check() == "ok"
    n = after.fill_count()
    assert n >= 50
    assert after.get_kv("n") in (n, n - 1)  # each write is its own durable transaction


def test_a_fill_is_final_for_the_intent_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "b.sqlite")
    store.record_intent("tb:s", "sale", 42, "SELL", "LMT", 1, lmt_price=1.0)
    store.mark_order("tb:s", status="filled")
    store.mark_order("tb:s", status="submitted", order_id=9)
    row = store.order_by_ref("tb:s")
    assert (row.status, row.order_id) == ("filled", 9)


def test_a_fill_marks_its_order_filled_and_keeps_what_it_does_not_know(tmp_path: Path) -> None:
    """One transaction stores the fill and turns its order `filled`; a fill without an
    order id (as a reconcile may see one) does not erase the one the order has."""
    store = Store(tmp_path / "b.sqlite")
    store.record_intent("tb:x", "tp", 42, "BUY", "LMT", 1, lmt_price=1.0, lot_id=3)
    store.mark_order("tb:x", status="submitted", order_id=9, perm_id=77)
    assert store.add_fill(StoredFill("e9", "tb:x", 0, 0, 42, "BOT", 1, 1.0, None, 1.0, None))
    row = store.order_by_ref("tb:x")
    assert (row.status, row.order_id, row.perm_id, row.lot_id) == (
        "filled", 9, 77, 3)


def test_rows_come_back_as_typed_records(tmp_path: Path) -> None:
    from trading.records import EntryAttempt, Lot, OrderRecord, StoredFill

    store = Store(tmp_path / "b.sqlite")
    lot_id = _lot(store, imported=True, multiplier=0)
    store.set_exits(lot_id, tp_order_id=5, sl_order_id=6, tp_order_ref="tp",
                    sl_order_ref="sl", oca_group="g")
    lot = store.lot(lot_id)
    assert isinstance(lot, Lot)
    assert (lot.imported, lot.pnl_estimated, lot.mult, lot.put_call) == (True, False, 100, "P")
    assert (lot.exit_order_ref("tp"), lot.exit_order_ref("sl")) == ("tp", "sl")
    assert (lot.exit_order_id("tp"), lot.exit_order_id("sl")) == (5, 6)
    assert (lot.exit_level("tp"), lot.exit_level("sl")) == (2.43, 18.24)
    store.record_intent("tb:t", "tp", 42, "BUY", "LMT", 1, lmt_price=2.43, lot_id=lot_id)
    assert isinstance(store.order_by_ref("tb:t"), OrderRecord)
    store.add_fill(StoredFill("e1", "tb:t", 5, 7, 42, "BOT", 1, 2.43, 0.65, 2.0, lot_id))
    assert store.fills(lot_id) == [StoredFill("e1", "tb:t", 5, 7, 42, "BOT", 1.0, 2.43, 0.65,
                                              2.0, lot_id)]
    store.start_entry("d", "09:35")
    assert isinstance(store.entry("d", "09:35"), EntryAttempt)
    store.close()


def test_lots_on_a_contract_are_marked_unprotected_in_one_commit(tmp_path: Path) -> None:
    """An entry about to sell a contract marks every open lot on it unprotected before
    their exits are cancelled: one transaction (one durable commit, not one per lot),
    closed lots and other contracts left as they are."""
    store = Store(tmp_path / "b.sqlite")
    opened = _lot(store, state="open", order_ref="tb:a")
    already = _lot(store, state="unprotected", order_ref="tb:b")
    closed = _lot(store, state="open", order_ref="tb:c")
    assert store.close_lot(closed, 1.0, 2.0, "tp", 5.0)
    other = _lot(store, state="open", con_id=43, order_ref="tb:d")
    commits = store._db.version
    marked = store.unprotect_lots_on(42)
    assert store._db.version == commits + 1
    assert [lot.id for lot in marked] == [opened, already]
    assert {lot.state for lot in marked} == {"unprotected"}
    again = Store(tmp_path / "b.sqlite")  # durable: another connection reads it
    assert {lot.id: lot.state for lot in again.lots()} == {
        opened: "unprotected", already: "unprotected", closed: "closed", other: "open"}
    assert store.unprotect_lots_on(44) == []


def test_several_orders_are_marked_in_one_commit(tmp_path: Path) -> None:
    """The answers to an entry's exit cancels go to the book as one transaction; a fill
    stays final, unknown fields are refused and change nothing."""
    import pytest

    store = Store(tmp_path / "b.sqlite")
    for ref in ("tb:a", "tb:b", "tb:c"):
        store.record_intent(order_ref=ref, role="tp", con_id=42, action="BUY",
                            order_type="LMT", qty=1, lmt_price=1.0)
    store.mark_order("tb:c", status="filled")
    commits = store._db.version
    store.mark_orders([("tb:a", {"status": "cancelled", "order_id": 7}),
                       ("tb:b", {"status": "cancelled", "error": "202: Order Canceled"}),
                       ("tb:c", {"status": "cancelled"})])
    assert store._db.version == commits + 1
    rows = {o.order_ref: o for o in store.orders_by_refs(["tb:a", "tb:b", "tb:c"])}
    assert (rows["tb:a"].status, rows["tb:a"].order_id) == ("cancelled", 7)
    assert (rows["tb:b"].status, rows["tb:b"].error) == ("cancelled", "202: Order Canceled")
    assert rows["tb:c"].status == "filled"
    with pytest.raises(ValueError, match="unknown order fields"):
        store.mark_orders([("tb:a", {"status": "submitted", "bogus": 1})])
    assert Store(tmp_path / "b.sqlite").order_by_ref("tb:a").status == "cancelled"
