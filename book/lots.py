"""Lots: the short positions the bot holds, from the sale's fill to their close (the
`lots` table)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from book.alert_rows import AlertRow, add_alert
from book.db import Repository
from book.orders import insert_intents
from trading.records import Lot, OrderIntent

_LOT_FIELDS = {
    "trade_date",
    "slot",
    "con_id",
    "symbol",
    "expiry",
    "strike",
    "right",
    "local_symbol",
    "multiplier",
    "qty",
    "entry_price",
    "entry_time",
    "order_ref",
    "tp_price",
    "sl_price",
    "state",
    "imported",
    # A split-off piece keeps its entry's estimate (an open lot's only one).
    "pnl_estimated",
    "entry_estimated",
}
_EXIT_FIELDS = {
    "tp_order_id",
    "sl_order_id",
    "tp_order_ref",
    "sl_order_ref",
    "oca_group",
    "tp_price",
    "sl_price",
}


class Lots(Repository):
    def open_lot(self, entry: tuple[str, str] | None = None, **fields: Any) -> int:
        """Create a lot; with `entry` (trade date, slot) the sale's intent row points at
        the lot and the entry is marked done in the same transaction, so a crash can
        never leave a lot whose entry still looks unfinished."""
        with self._db.tx() as c:
            return _insert_lot(c, entry, fields)

    def open_sale_lot(self, entry: tuple[str, str] | None = None,
                      exits: Callable[[Lot], list[OrderIntent]] | None = None,
                      **fields: Any) -> tuple[Lot, bool]:
        """The lot of one sale (`order_ref`, whose intent row must exist, of the same
        contract), opened at most once: in one transaction, the lot that sale already
        opened (False), or a new one as open_lot makes it (True). The book (on the fill
        event) and the executor (on the order's status, on its own connection) may ask
        at the same moment: the write lock orders them and the second finds the
        first's lot. A new lot's `exits` (its first exit pair's intents, built from the
        lot) are written in the same transaction: one durable commit between a fill and
        its protection, not two (bench.exits)."""
        ref = fields.get("order_ref")
        if not ref:
            raise ValueError("a sale's lot needs the sale's order_ref")
        with self._db.tx() as c:
            sale = c.execute("SELECT con_id FROM orders WHERE order_ref = ?", (ref,)).fetchone()
            if sale is None:
                raise KeyError(f"no intent row for {ref}")
            if "con_id" in fields and int(sale["con_id"]) != int(fields["con_id"]):
                raise ValueError(f"{ref} sold contract {sale['con_id']}, not "
                                 f"{fields['con_id']}: no lot opened")
            row = c.execute("SELECT * FROM lots WHERE order_ref = ? ORDER BY id LIMIT 1",
                            (ref,)).fetchone()
            created = row is None
            if created:
                lot_id = _insert_lot(c, entry, fields)
                row = c.execute("SELECT * FROM lots WHERE id = ?", (lot_id,)).fetchone()
                if exits is not None:
                    insert_intents(c, exits(Lot.from_row(row)))
            return Lot.from_row(row), created

    def set_exits(self, lot_id: int, state: str = "open", **fields: Any) -> None:
        unknown = set(fields) - _EXIT_FIELDS
        if unknown:
            raise ValueError(f"unknown exit fields: {sorted(unknown)}")
        sets = [f"{k} = ?" for k in fields]
        with self._db.tx() as c:
            c.execute(
                f"UPDATE lots SET {', '.join([*sets, 'state = ?', 'updated_at = ?'])}"
                " WHERE id = ? AND state != 'closed'",
                (*fields.values(), state, time.time(), lot_id),
            )

    def set_lot_state(self, lot_id: int, state: str) -> None:
        with self._db.tx() as c:
            c.execute(
                "UPDATE lots SET state = ?, updated_at = ? WHERE id = ? AND state != 'closed'",
                (state, time.time(), lot_id),
            )

    def unprotect_lots_on(self, con_id: int) -> list[Lot]:
        """Every open lot on the contract marked `unprotected`, in one transaction (one
        commit, not one per lot), and returned as marked: an entry about to sell the
        contract cancels their exits next, and a lot is never unmarked while they go."""
        now = time.time()
        with self._db.tx() as c:
            c.execute(
                "UPDATE lots SET state = 'unprotected', updated_at = ?"
                " WHERE con_id = ? AND state IN ('open', 'unprotected')",
                (now, con_id),
            )
            rows = c.execute(
                "SELECT * FROM lots WHERE con_id = ? AND state = 'unprotected' ORDER BY id",
                (con_id,),
            ).fetchall()
        return [Lot.from_row(r) for r in rows]

    def close_lot(
        self,
        lot_id: int,
        exit_price: float | None,
        exit_time: float,
        reason: str,
        realized_pnl: float | None,
        estimated: str = "",
    ) -> bool:
        """Close an open lot; a closed one is left as it is (returns False). `estimated`
        says how far its exit price is a guess, in the same UPDATE (a kill between the
        close and a second write left a guess that its execution could never correct):
        "exit" (a stop, a quote, a position check: the P&L is flagged an estimate) or
        "unconfirmed" (an order's limit, or expired worthless: not flagged, but its
        execution, if one comes, re-prices it); "" when a fill priced it."""
        with self._db.tx() as c:
            return _close_open_lot(c, lot_id, exit_price, exit_time, reason, realized_pnl,
                                   estimated)

    def close_lot_with_alert(
        self, lot_id: int, exit_price: float | None, exit_time: float, reason: str,
        realized_pnl: float | None, alert: AlertRow, estimated: str = "",
    ) -> tuple[int, bool] | None:
        """close_lot and the alert announcing it in one transaction (a crash between
        them can no longer lose the alert); (alert id, folded), None if the lot was
        closed already (nothing written)."""
        with self._db.tx() as c:
            if not _close_open_lot(c, lot_id, exit_price, exit_time, reason, realized_pnl,
                                   estimated):
                return None
            return add_alert(c, alert, time.time())

    def reclose_lot(self, lot_id: int, exit_price: float | None, reason: str,
                    realized_pnl: float | None, estimated: bool, was: str,
                    alert: AlertRow | None = None, kv: dict[str, Any] | None = None,
                    ) -> tuple[int, bool] | bool:
        """A closed lot whose cause came to light later (an assignment's shares after
        the lot was taken for a hand close): its reason and P&L replaced, in one
        transaction, only if it is still closed as `was`. With `alert`, the alert that
        announces the correction is written in the same transaction ((alert id, folded)
        then; False when nothing was written), and so are the settings rows in `kv` (a
        share sale the alert promises)."""
        with self._db.tx() as c:
            cur = c.execute(
                "UPDATE lots SET exit_price = ?, close_reason = ?, realized_pnl = ?,"
                " pnl_estimated = MAX(entry_estimated, ?), updated_at = ? WHERE id = ?"
                " AND state = 'closed'"
                " AND close_reason = ?",
                (exit_price, reason, realized_pnl, int(estimated), time.time(), lot_id, was),
            )
            if cur.rowcount != 1:
                return False
            for key, value in (kv or {}).items():
                c.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                          " SET value = excluded.value", (key, json.dumps(value)))
            return add_alert(c, alert, time.time()) if alert is not None else True

    def closed_lots_with_estimated_exit(self) -> list[Lot]:
        return self._db.records(
            Lot.from_row,
            # Not an assigned one (the shares' accounting), nor one with no buy stored
            # (a stop whose execution never came: the list would only grow).
            "SELECT * FROM lots WHERE state = 'closed' AND exit_estimated = 1"
            " AND close_reason != 'assigned' AND EXISTS (SELECT 1 FROM fills WHERE"
            " fills.lot_id = lots.id AND fills.side = 'BOT') ORDER BY id")

    def reprice_estimated_exit(
        self, lot_id: int, exit_price: float, reason: str, realized_pnl: float,
        alert: AlertRow | None = None,
    ) -> tuple[int, bool] | bool:
        """A closed lot's estimated exit replaced by what its fills say (price, reason,
        realized P&L), with the alert that says so in the same transaction ((alert id,
        folded) then); False, and nothing written, if its exit is no longer an estimate
        (re-priced already). The P&L stays an estimate while the entry is one."""
        with self._db.tx() as c:
            cur = c.execute(
                "UPDATE lots SET exit_price = ?, close_reason = ?, realized_pnl = ?,"
                " exit_estimated = 0, pnl_estimated = entry_estimated, updated_at = ?"
                " WHERE id = ? AND state = 'closed' AND exit_estimated = 1"
                " AND close_reason != 'assigned'",
                (exit_price, reason, realized_pnl, time.time(), lot_id),
            )
            if cur.rowcount != 1:
                return False
            return add_alert(c, alert, time.time()) if alert is not None else True

    def split_lot(self, lot_id: int, qty: int) -> int | None:
        """Take `qty` contracts off an open lot into a new open lot (same entry), in one
        transaction; the caller closes the new one. None if the lot cannot give them."""
        now = time.time()
        with self._db.tx() as c:
            cur = c.execute(
                "UPDATE lots SET qty = qty - ?, updated_at = ? WHERE id = ? AND qty > ?"
                " AND state != 'closed'",
                (qty, now, lot_id, qty),
            )
            if cur.rowcount != 1:
                return None
            cols = sorted(_LOT_FIELDS - {"qty", "state", "order_ref"})
            cur = c.execute(
                f"INSERT INTO lots({', '.join(cols)}, qty, state, order_ref, created_at,"
                f" updated_at) SELECT {', '.join(cols)}, ?, 'open', '', ?, ? FROM lots"
                " WHERE id = ?",
                (qty, now, now, lot_id),
            )
            return int(cur.lastrowid or 0) or None

    def resize_sale_lot(self, lot_id: int, qty: int, entry_price: float, tp_price: float,
                        sl_price: float) -> None:
        """A sale's further slices: the lot's size and volume-weighted price."""
        with self._db.tx() as c:
            c.execute(
                "UPDATE lots SET qty = ?, entry_price = ?, tp_price = ?, sl_price = ?,"
                " updated_at = ? WHERE id = ? AND state != 'closed'",
                (qty, entry_price, tp_price, sl_price, time.time(), lot_id),
            )

    def lot(self, lot_id: int) -> Lot | None:
        return self._db.record(Lot.from_row, "SELECT * FROM lots WHERE id = ?", (lot_id,))

    def lots(self, states: list[str] | None = None) -> list[Lot]:
        if not states:
            return self._db.records(Lot.from_row, "SELECT * FROM lots ORDER BY id")
        marks = ",".join("?" * len(states))
        return self._db.records(
            Lot.from_row, f"SELECT * FROM lots WHERE state IN ({marks}) ORDER BY id", states)

    def open_lots(self) -> list[Lot]:
        return self.lots(["open", "unprotected"])

    def lot_by_order_ref(self, ref: str) -> Lot | None:
        if not ref:
            return None
        return self._db.record(
            Lot.from_row,
            "SELECT * FROM lots WHERE order_ref = ? OR tp_order_ref = ? OR sl_order_ref = ?"
            " ORDER BY id LIMIT 1",
            (ref, ref, ref),
        )

    def contracts_sold_on(self, trade_date: str) -> int:
        row = self._db.row(
            "SELECT COALESCE(SUM(qty), 0) AS n FROM lots WHERE trade_date = ? AND imported = 0",
            (trade_date,),
        )
        return int(row["n"]) if row else 0


def _insert_lot(c: sqlite3.Connection, entry: tuple[str, str] | None,
                fields: dict[str, Any]) -> int:
    """open_lot's writes, inside the caller's transaction."""
    unknown = set(fields) - _LOT_FIELDS
    if unknown:
        raise ValueError(f"unknown lot fields: {sorted(unknown)}")
    fields = dict(fields)
    fields.setdefault("state", "unprotected")
    fields["imported"] = int(bool(fields.get("imported", False)))
    now = time.time()
    cols = [*fields, "created_at", "updated_at"]
    cur = c.execute(
        f"INSERT INTO lots({', '.join(cols)}) VALUES ({','.join('?' * len(cols))})",
        (*fields.values(), now, now),
    )
    lot_id = int(cur.lastrowid or 0)
    if fields.get("order_ref"):
        c.execute(
            "UPDATE orders SET lot_id = ?, updated_at = ? WHERE order_ref = ?",
            (lot_id, now, fields["order_ref"]),
        )
    if entry is not None:
        c.execute(
            "UPDATE entry_attempts SET state = 'done', reason = 'sale filled',"
            " lot_id = ?, updated_at = ? WHERE trade_date = ? AND slot = ?",
            (lot_id, now, entry[0], entry[1]),
        )
    return lot_id


def _close_open_lot(c: sqlite3.Connection, lot_id: int, exit_price: float | None,
                    exit_time: float, reason: str, realized_pnl: float | None,
                    estimated: str = "") -> bool:
    """The one UPDATE that closes a lot, inside the caller's transaction; False when the
    lot was closed already. `estimated`: see Lots.close_lot."""
    if estimated not in ("", "exit", "unconfirmed"):
        raise ValueError(f"estimated must be '', 'exit' or 'unconfirmed', not {estimated!r}")
    cur = c.execute(
        "UPDATE lots SET state = 'closed', exit_price = ?, exit_time = ?,"
        " close_reason = ?, realized_pnl = ?, exit_estimated = ?,"
        " pnl_estimated = MAX(pnl_estimated, ?), updated_at = ? WHERE id = ? AND"
        " state != 'closed'",
        (exit_price, exit_time, reason, realized_pnl, int(bool(estimated)),
         int(estimated == "exit"), time.time(), lot_id),
    )
    return cur.rowcount == 1
