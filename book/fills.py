"""Fills: every execution once, by its execution id (the `fills` table); an order's row
turns `filled` and a lot's commissions follow in the same transaction."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import astuple

from book.db import Repository
from trading.records import StoredFill

_now = time.time


class Fills(Repository):
    def add_fill(self, fill: StoredFill) -> bool:
        """Store a fill once: True the first time its execution id is seen. Its order's
        row turns `filled` in the same transaction (one durable commit per fill)."""
        with self._db.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO fills(exec_id, order_ref, order_id, perm_id, con_id,"
                " side, qty, price, commission, time, lot_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                astuple(fill),
            )
            if cur.rowcount != 1:
                return False
            c.execute(
                "UPDATE orders SET status = 'filled', order_id = COALESCE(?, order_id),"
                " perm_id = COALESCE(?, perm_id), lot_id = COALESCE(?, lot_id),"
                " updated_at = ? WHERE order_ref = ?",
                (fill.order_id or None, fill.perm_id or None, fill.lot_id, _now(),
                 fill.order_ref),
            )
            if fill.lot_id is not None:
                _lot_follows_its_fills(c, fill.lot_id)
            return True

    def set_commission(self, exec_id: str, commission: float) -> bool:
        """Store a fill's commission; False (and no write) when it is already stored."""
        row = self._db.row("SELECT commission FROM fills WHERE exec_id = ?", (exec_id,))
        if row is None or (
            row["commission"] is not None and abs(row["commission"] - commission) < 1e-9
        ):
            return False
        with self._db.tx() as c:
            c.execute("UPDATE fills SET commission = ? WHERE exec_id = ?", (commission, exec_id))
            lot = c.execute("SELECT lot_id FROM fills WHERE exec_id = ?", (exec_id,)).fetchone()
            if lot is not None and lot["lot_id"] is not None:
                _lot_follows_its_fills(c, lot["lot_id"])
        return True

    def fills(self, lot_id: int | None = None) -> list[StoredFill]:
        if lot_id is None:
            return self._db.records(StoredFill.from_row,
                                    "SELECT * FROM fills ORDER BY time, exec_id")
        return self._db.records(
            StoredFill.from_row,
            "SELECT * FROM fills WHERE lot_id = ? ORDER BY time, exec_id", (lot_id,))

    def fills_of_order(self, order_ref: str) -> list[StoredFill]:
        """The slices of one order (each its own execution)."""
        return self._db.records(
            StoredFill.from_row,
            "SELECT * FROM fills WHERE order_ref = ? ORDER BY time, exec_id", (order_ref,))

    def fill_count(self) -> int:
        row = self._db.row("SELECT COUNT(*) AS n FROM fills")
        return int(row["n"]) if row else 0

    def outside_fills(self, con_id: int, since: float) -> list[StoredFill]:
        """Executions on a contract that no order of ours explains, not yet given to a lot."""
        return self._db.records(
            StoredFill.from_row,
            "SELECT * FROM fills WHERE con_id = ? AND lot_id IS NULL AND time >= ? AND"
            " COALESCE(order_ref, '') NOT LIKE 'tb:%' ORDER BY time, exec_id",
            (con_id, since),
        )

    def attach_fills(self, exec_ids: list[str], lot_id: int) -> None:
        with self._db.tx() as c:
            c.executemany(
                "UPDATE fills SET lot_id = ? WHERE exec_id = ?", [(lot_id, e) for e in exec_ids]
            )
            _lot_follows_its_fills(c, lot_id)


def _lot_follows_its_fills(c: sqlite3.Connection, lot_id: int) -> None:
    """The lot's commissions summed from its fills and, once it is closed, its realized
    P&L with every one of them: a late commission, or a fill (with its commission)
    stored or attached after the close. Before, only a late commission moved a closed
    lot's P&L, and a fill stored with its commission did not move the lot's
    commissions at all (the module's promise)."""
    c.execute(
        "UPDATE lots SET commissions = (SELECT COALESCE(SUM(commission), 0) FROM fills"
        " WHERE fills.lot_id = lots.id) WHERE id = ?",
        (lot_id,),
    )
    c.execute(
        "UPDATE lots SET realized_pnl = ROUND((entry_price - exit_price) * multiplier * qty"
        " - commissions, 2), updated_at = ? WHERE id = ? AND state = 'closed'"
        " AND exit_price IS NOT NULL",
        (_now(), lot_id),
    )
