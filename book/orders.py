"""Order intents: written (durably) before the broker hears of an order, then marked
with what the broker said (the `orders` table)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from book.db import Repository
from trading.order_refs import sale_prefix
from trading.records import OrderIntent, OrderRecord

_MARK_FIELDS = {"status", "order_id", "perm_id", "error", "lot_id", "lmt_price"}


class Orders(Repository):
    def record_intents(self, intents: list[OrderIntent]) -> None:
        """Several intents (an exit pair) in one durable transaction."""
        with self._db.tx() as c:
            insert_intents(c, intents)

    def record_intent(
        self,
        order_ref: str,
        role: str,
        con_id: int,
        action: str,
        order_type: str,
        qty: float,
        lmt_price: float | None = None,
        aux_price: float | None = None,
        oca_group: str | None = None,
        lot_id: int | None = None,
        trade_date: str | None = None,
    ) -> None:
        self.record_intents([OrderIntent(
            order_ref=order_ref, role=role, con_id=con_id, action=action,
            order_type=order_type, qty=qty, lmt_price=lmt_price, aux_price=aux_price,
            oca_group=oca_group, lot_id=lot_id, trade_date=trade_date,
        )])

    def mark_order(
        self,
        order_ref: str,
        *,
        status: str | None = None,
        order_id: int | None = None,
        perm_id: int | None = None,
        error: str | None = None,
        lot_id: int | None = None,
        lmt_price: float | None = None,
    ) -> None:
        self.mark_orders([(order_ref, {"status": status, "order_id": order_id,
                                       "perm_id": perm_id, "error": error, "lot_id": lot_id,
                                       "lmt_price": lmt_price})])

    def mark_orders(self, marks: list[tuple[str, dict[str, Any]]]) -> None:
        """mark_order for several orders (ref, fields) in one transaction: one durable
        commit for a batch of broker answers (an entry's exit cancels), not one each."""
        unknown = {k for _, fields in marks for k in fields} - _MARK_FIELDS
        if unknown:
            raise ValueError(f"unknown order fields: {sorted(unknown)}")
        now = time.time()
        with self._db.tx() as c:
            for order_ref, fields in marks:
                sets, args = ["updated_at = ?"], [now]
                if fields.get("status") is not None:
                    # A fill is final: a late "submitted" or "cancelled" never undoes it.
                    sets.append("status = CASE WHEN status = 'filled' THEN status ELSE ? END")
                    args.append(fields["status"])
                for col in ("order_id", "perm_id", "error", "lot_id", "lmt_price"):
                    if fields.get(col) is not None:
                        sets.append(f"{col} = ?")
                        args.append(fields[col])
                c.execute(f"UPDATE orders SET {', '.join(sets)} WHERE order_ref = ?",
                          (*args, order_ref))

    def order_by_ref(self, ref: str) -> OrderRecord | None:
        return self._db.record(OrderRecord.from_row,
                               "SELECT * FROM orders WHERE order_ref = ?", (ref,))

    def next_sale_serial(self, trade_date: str, slot: str) -> int:
        """1 + the highest attempt serial of the slot's sale orderRefs so far."""
        prefix = sale_prefix(trade_date, slot)
        # A range on the UNIQUE index, not LIKE (which scans every order ever stored:
        # a book of years answered the entry's first step in a table scan).
        rows = self._db.rows("SELECT order_ref FROM orders WHERE order_ref >= ? AND"
                             " order_ref < ?", (prefix, prefix + "\U0010ffff"))
        serials = [int(r["order_ref"][len(prefix):]) for r in rows
                   if r["order_ref"][len(prefix):].isdigit()]
        return max(serials, default=0) + 1

    def orders_by_refs(self, refs: list[str]) -> list[OrderRecord]:
        if not refs:
            return []
        marks = ",".join("?" * len(refs))
        return self._db.records(OrderRecord.from_row,
                                f"SELECT * FROM orders WHERE order_ref IN ({marks})", refs)

    def exit_orders_of(self, lot_id: int) -> list[OrderRecord]:
        """Every exit leg ever recorded for the lot (intent rows are written before
        the order is sent: none here means none can be live at the broker)."""
        return self._db.records(
            OrderRecord.from_row,
            "SELECT * FROM orders WHERE lot_id = ? AND role IN ('tp', 'sl') ORDER BY id",
            (lot_id,))

    def orders_by_status(self, statuses: Sequence[str]) -> list[OrderRecord]:
        marks = ",".join("?" * len(statuses))
        return self._db.records(
            OrderRecord.from_row,
            f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY id", statuses)


def insert_intents(c: sqlite3.Connection, intents: list[OrderIntent]) -> None:
    """record_intents' writes, inside the caller's transaction."""
    now = time.time()
    c.executemany(
        "INSERT INTO orders(order_ref, lot_id, trade_date, role, con_id, action,"
        " order_type, qty, lmt_price, aux_price, oca_group, status, created_at,"
        " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'intent',?,?)",
        [
            (i.order_ref, i.lot_id, i.trade_date, i.role, i.con_id, i.action,
             i.order_type, i.qty, i.lmt_price, i.aux_price, i.oca_group, now, now)
            for i in intents
        ],
    )
