"""Issue 19: the dashboard's read models (book/views.py) over a real SQLite book."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

from book import views
from book.store import Store
from trading.model import Quote

TODAY = date(2026, 11, 24)


def _book(tmp_path: Path) -> tuple[Store, int, int]:
    store = Store(tmp_path / "book.sqlite")
    ids = [
        store.open_lot(trade_date="2026-11-24", con_id=con_id, symbol="SPY", expiry="20261231",
                       strike=540.0, right="P", local_symbol=f"SPY {con_id}", qty=1,
                       entry_price=6.0, entry_time=time.time(), tp_price=2.4, sl_price=18.0,
                       state="open")
        for con_id in (101, 102)
    ]
    return store, ids[0], ids[1]


def test_a_lot_without_quote_leaves_the_total_blank_with_the_reason(tmp_path: Path) -> None:
    store, _, _ = _book(tmp_path)
    cache = views.SnapshotCache(store)
    quote = Quote(101, bid=2.9, ask=3.1, last=None, time=time.time(), delta=-0.2,
                  und_price=600.0)
    # After an engine restart only one lot's quote is back.
    view = views.positions_view(cache.get("2026-11-24"), lambda ids: {101: quote}, 600.0,
                                TODAY, started_at=time.time())
    a, b = view["lots"]
    assert a["pnl"] == 300.0 and a["max_profit_pct"] == 50.0
    assert a["dte"] == 37 and a["delta"] == -0.2
    assert a["otm_dollars"] == 60.0 and a["otm_pct"] == 10.0
    assert a["to_tp"] == 0.6 and a["to_sl"] == 15.0
    assert a["premium_at_risk"] == 300.0 and a["loss_at_sl"] == 1200.0
    assert b["pnl"] is None and b["mid_reason"] == "no quote yet since the engine started"
    assert view["totals"]["pnl"] is None  # not 300.00: a blank is not zero
    assert view["totals"]["pnl_missing"] == 1
    assert "no quote yet" in view["totals"]["pnl_reason"]
    store.close()


def test_the_snapshot_follows_writes_from_any_store_on_the_file(tmp_path: Path) -> None:
    store, _, _ = _book(tmp_path)
    cache = views.SnapshotCache(store)
    snap = cache.get("2026-11-24")
    assert cache.get("2026-11-24") is snap  # no write: the same snapshot, no SQLite read
    other = Store(tmp_path / "book.sqlite")  # the executor's own connection
    other.set_kv("paused", True)
    fresh = cache.get("2026-11-24")
    assert fresh is not snap and fresh.paused is True
    other.close()
    store.close()


def test_equity_points_add_the_snapshots_open_pnl(tmp_path: Path) -> None:
    store, _, _ = _book(tmp_path)
    store.snapshot_pnl("2026-11-20", 0.0, 120.0, 2)
    store.snapshot_pnl("2026-11-23", 0.0, None, 2)
    points = views.pnl_history_view(store)["points"]
    assert [(p["date"], p["equity"]) for p in points] == [("2026-11-20", 120.0),
                                                          ("2026-11-23", None)]
    store.close()
