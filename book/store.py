"""The SQLite book: lots, order intents, fills, entry attempts, settings, P&L snapshots.

WAL mode with `synchronous=FULL`: every write is one transaction, durable before
the call returns, so a `kill -9` at any point leaves a state reconciliation can
finish. Fills are unique by execution id; an entry slot is claimed atomically.
Other modules keep their own tables in the same file (the alert outbox), so
nothing here drops a table it does not know. Times are epoch seconds (UTC);
trade dates are 'YYYY-MM-DD' in New York time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trading.calendar import ET
from trading.order_refs import sale_prefix

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS lots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trade_date TEXT NOT NULL, slot TEXT NOT NULL DEFAULT '',
    con_id INTEGER NOT NULL, symbol TEXT NOT NULL, expiry TEXT NOT NULL DEFAULT '',
    strike REAL NOT NULL DEFAULT 0, right TEXT NOT NULL DEFAULT 'P',
    local_symbol TEXT NOT NULL DEFAULT '', multiplier INTEGER NOT NULL DEFAULT 100,
    qty INTEGER NOT NULL, entry_price REAL NOT NULL, entry_time REAL NOT NULL,
    order_ref TEXT NOT NULL DEFAULT '',
    tp_price REAL, sl_price REAL, tp_order_id INTEGER, sl_order_id INTEGER,
    tp_order_ref TEXT, sl_order_ref TEXT, oca_group TEXT,
    state TEXT NOT NULL CHECK (state IN ('open', 'unprotected', 'closed')),
    exit_price REAL, exit_time REAL, close_reason TEXT, realized_pnl REAL,
    commissions REAL NOT NULL DEFAULT 0, imported INTEGER NOT NULL DEFAULT 0,
    pnl_estimated INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lots_state ON lots(state);
CREATE INDEX IF NOT EXISTS lots_order_ref ON lots(order_ref);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_ref TEXT NOT NULL UNIQUE, lot_id INTEGER, trade_date TEXT,
    role TEXT NOT NULL CHECK (role IN ('sale', 'tp', 'sl', 'restore', 'shares')),
    con_id INTEGER NOT NULL, action TEXT NOT NULL, order_type TEXT NOT NULL,
    qty REAL NOT NULL, lmt_price REAL, aux_price REAL, oca_group TEXT,
    order_id INTEGER, perm_id INTEGER,
    status TEXT NOT NULL DEFAULT 'intent',
    error TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_status ON orders(status);
CREATE INDEX IF NOT EXISTS orders_lot ON orders(lot_id);
CREATE TABLE IF NOT EXISTS fills (
    exec_id TEXT PRIMARY KEY,
    order_ref TEXT, order_id INTEGER, perm_id INTEGER, con_id INTEGER,
    side TEXT, qty REAL, price REAL, commission REAL, time REAL, lot_id INTEGER
);
CREATE INDEX IF NOT EXISTS fills_lot ON fills(lot_id);
CREATE TABLE IF NOT EXISTS entry_attempts (
    trade_date TEXT NOT NULL, slot TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT, lot_id INTEGER,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (trade_date, slot)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pnl_daily (
    trade_date TEXT PRIMARY KEY, realized REAL, unrealized REAL, open_lots INTEGER,
    created_at REAL NOT NULL
);
"""

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


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode with durable commits (shared by the alert store)."""
    p = Path(path)
    if str(p) != ":memory:":
        p.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(p), timeout=10.0, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


_now = time.time  # add_fill's `time` argument shadows the module

# Committed writes per database file, shared by every Store of this process on that file
# (the book's and the executor's): the dashboard's snapshot is rebuilt when it moves.
_VERSIONS: dict[str, int] = {}
_VERSIONS_LOCK = threading.Lock()


def _bump(path: str) -> None:
    with _VERSIONS_LOCK:
        _VERSIONS[path] = _VERSIONS.get(path, 0) + 1


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._key = str(Path(path).resolve()) if self.path != ":memory:" else f"mem:{id(self)}"
        self._conn = connect(path)
        self._lock = threading.RLock()
        with self._lock:
            # executescript commits on its own, so it runs outside _tx.
            self._conn.executescript(SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
            self._allow_share_sales()
            cols = {r["name"] for r in self._conn.execute("PRAGMA table_info(lots)")}
            if "pnl_estimated" not in cols:  # a book written before closed_outside existed
                self._conn.execute(
                    "ALTER TABLE lots ADD COLUMN pnl_estimated INTEGER NOT NULL DEFAULT 0"
                )

    def _allow_share_sales(self) -> None:
        """A book written before issue 16 refuses the 'shares' role (a CHECK constraint
        cannot be altered in SQLite): rebuild the orders table with the new one."""
        row = self._conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'"
        ).fetchone()
        if row is None or "'shares'" in row[0]:
            return
        new = row[0].replace("'restore')", "'restore', 'shares')").replace(
            "CREATE TABLE orders", "CREATE TABLE orders_v2", 1)
        self._conn.executescript(
            "BEGIN IMMEDIATE;" + new + ";INSERT INTO orders_v2 SELECT * FROM orders;"
            "DROP TABLE orders;ALTER TABLE orders_v2 RENAME TO orders;"
            "CREATE INDEX IF NOT EXISTS orders_status ON orders(status);"
            "CREATE INDEX IF NOT EXISTS orders_lot ON orders(lot_id);COMMIT;"
        )

    # ---- plumbing ----------------------------------------------------------------------

    class _Tx:
        def __init__(self, store: Store) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            self.store._conn.execute("BEGIN IMMEDIATE")
            return self.store._conn

        def __exit__(self, exc_type: Any, *_: Any) -> None:
            try:
                self.store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
                if not exc_type:
                    _bump(self.store._key)
            finally:
                self.store._lock.release()

    def _tx(self) -> Store._Tx:
        return Store._Tx(self)

    @property
    def version(self) -> int:
        """Moves with every committed write to this file from this process."""
        return _VERSIONS.get(self._key, 0)

    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, tuple(args)).fetchall()]

    def _row(self, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def integrity_check(self) -> str:
        row = self._row("PRAGMA integrity_check")
        return str(next(iter(row.values()))) if row else "no answer"

    # ---- order intents -----------------------------------------------------------------

    def record_intents(self, rows: list[dict[str, Any]]) -> None:
        """Several intents (an exit pair) in one durable transaction."""
        now = time.time()
        with self._tx() as c:
            c.executemany(
                "INSERT INTO orders(order_ref, lot_id, trade_date, role, con_id, action,"
                " order_type, qty, lmt_price, aux_price, oca_group, status, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,'intent',?,?)",
                [
                    (r["order_ref"], r.get("lot_id"), r.get("trade_date"), r["role"],
                     r["con_id"], r["action"], r["order_type"], r["qty"], r.get("lmt_price"),
                     r.get("aux_price"), r.get("oca_group"), now, now)
                    for r in rows
                ],
            )

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
        self.record_intents([dict(
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
        sets, args = ["updated_at = ?"], [time.time()]
        if status is not None:
            # A fill is final: a late "submitted" or "cancelled" never undoes it.
            sets.append("status = CASE WHEN status = 'filled' THEN status ELSE ? END")
            args.append(status)
        for col, val in (
            ("order_id", order_id),
            ("perm_id", perm_id),
            ("error", error),
            ("lot_id", lot_id),
            ("lmt_price", lmt_price),
        ):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(val)
        with self._tx() as c:
            c.execute(
                f"UPDATE orders SET {', '.join(sets)} WHERE order_ref = ?", (*args, order_ref)
            )

    def order_by_ref(self, ref: str) -> dict[str, Any] | None:
        return self._row("SELECT * FROM orders WHERE order_ref = ?", (ref,))

    def next_sale_serial(self, trade_date: str, slot: str) -> int:
        """1 + the highest attempt serial of the slot's sale orderRefs so far."""
        prefix = sale_prefix(trade_date, slot)
        rows = self._rows("SELECT order_ref FROM orders WHERE order_ref LIKE ? || '%'",
                          (prefix,))
        serials = [int(r["order_ref"][len(prefix):]) for r in rows
                   if r["order_ref"][len(prefix):].isdigit()]
        return max(serials, default=0) + 1

    def orders_by_refs(self, refs: list[str]) -> list[dict[str, Any]]:
        if not refs:
            return []
        marks = ",".join("?" * len(refs))
        return self._rows(f"SELECT * FROM orders WHERE order_ref IN ({marks})", refs)

    def orders_by_status(self, statuses: list[str]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(statuses))
        return self._rows(f"SELECT * FROM orders WHERE status IN ({marks}) ORDER BY id", statuses)

    # ---- lots --------------------------------------------------------------------------

    def open_lot(self, entry: tuple[str, str] | None = None, **fields: Any) -> int:
        """Create a lot; with `entry` (trade date, slot) the sale's intent row points at
        the lot and the entry is marked done in the same transaction, so a crash can
        never leave a lot whose entry still looks unfinished."""
        unknown = set(fields) - _LOT_FIELDS
        if unknown:
            raise ValueError(f"unknown lot fields: {sorted(unknown)}")
        fields.setdefault("state", "unprotected")
        fields["imported"] = int(bool(fields.get("imported", False)))
        now = time.time()
        cols = [*fields, "created_at", "updated_at"]
        with self._tx() as c:
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

    def set_exits(self, lot_id: int, state: str = "open", **fields: Any) -> None:
        unknown = set(fields) - _EXIT_FIELDS
        if unknown:
            raise ValueError(f"unknown exit fields: {sorted(unknown)}")
        sets = [f"{k} = ?" for k in fields]
        with self._tx() as c:
            c.execute(
                f"UPDATE lots SET {', '.join([*sets, 'state = ?', 'updated_at = ?'])}"
                " WHERE id = ? AND state != 'closed'",
                (*fields.values(), state, time.time(), lot_id),
            )

    def set_lot_state(self, lot_id: int, state: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE lots SET state = ?, updated_at = ? WHERE id = ? AND state != 'closed'",
                (state, time.time(), lot_id),
            )

    def close_lot(
        self,
        lot_id: int,
        exit_price: float | None,
        exit_time: float,
        reason: str,
        realized_pnl: float | None,
    ) -> bool:
        """Close an open lot; a closed one is left as it is (returns False)."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE lots SET state = 'closed', exit_price = ?, exit_time = ?,"
                " close_reason = ?, realized_pnl = ?, updated_at = ? WHERE id = ? AND"
                " state != 'closed'",
                (exit_price, exit_time, reason, realized_pnl, time.time(), lot_id),
            )
            return cur.rowcount == 1

    def mark_pnl_estimated(self, lot_id: int) -> None:
        with self._tx() as c:
            c.execute("UPDATE lots SET pnl_estimated = 1 WHERE id = ?", (lot_id,))

    def split_lot(self, lot_id: int, qty: int) -> int | None:
        """Take `qty` contracts off an open lot into a new open lot (same entry), in one
        transaction; the caller closes the new one. None if the lot cannot give them."""
        now = time.time()
        with self._tx() as c:
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

    def outside_fills(self, con_id: int, since: float) -> list[dict[str, Any]]:
        """Executions on a contract that no order of ours explains, not yet given to a lot."""
        return self._rows(
            "SELECT * FROM fills WHERE con_id = ? AND lot_id IS NULL AND time >= ? AND"
            " COALESCE(order_ref, '') NOT LIKE 'tb:%' ORDER BY time, exec_id",
            (con_id, since),
        )

    def attach_fills(self, exec_ids: list[str], lot_id: int) -> None:
        with self._tx() as c:
            c.executemany(
                "UPDATE fills SET lot_id = ? WHERE exec_id = ?", [(lot_id, e) for e in exec_ids]
            )
            c.execute(
                "UPDATE lots SET commissions = (SELECT COALESCE(SUM(commission), 0) FROM fills"
                " WHERE fills.lot_id = lots.id) WHERE id = ?",
                (lot_id,),
            )

    def lot(self, lot_id: int) -> dict[str, Any] | None:
        return self._row("SELECT * FROM lots WHERE id = ?", (lot_id,))

    def lots(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        if not states:
            return self._rows("SELECT * FROM lots ORDER BY id")
        marks = ",".join("?" * len(states))
        return self._rows(f"SELECT * FROM lots WHERE state IN ({marks}) ORDER BY id", states)

    def open_lots(self) -> list[dict[str, Any]]:
        return self.lots(["open", "unprotected"])

    def lot_by_order_ref(self, ref: str) -> dict[str, Any] | None:
        if not ref:
            return None
        return self._row(
            "SELECT * FROM lots WHERE order_ref = ? OR tp_order_ref = ? OR sl_order_ref = ?"
            " ORDER BY id LIMIT 1",
            (ref, ref, ref),
        )

    # ---- fills -------------------------------------------------------------------------

    def add_fill(
        self,
        exec_id: str,
        order_ref: str,
        order_id: int,
        perm_id: int,
        con_id: int,
        side: str,
        qty: float,
        price: float,
        commission: float | None,
        time: float,
        lot_id: int | None = None,
    ) -> bool:
        """Store a fill once: True the first time its execution id is seen. Its order's
        row turns `filled` in the same transaction (one durable commit per fill)."""
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO fills(exec_id, order_ref, order_id, perm_id, con_id,"
                " side, qty, price, commission, time, lot_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    exec_id,
                    order_ref,
                    order_id,
                    perm_id,
                    con_id,
                    side,
                    qty,
                    price,
                    commission,
                    time,
                    lot_id,
                ),
            )
            if cur.rowcount != 1:
                return False
            c.execute(
                "UPDATE orders SET status = 'filled', order_id = COALESCE(?, order_id),"
                " perm_id = COALESCE(?, perm_id), lot_id = COALESCE(?, lot_id),"
                " updated_at = ? WHERE order_ref = ?",
                (order_id or None, perm_id or None, lot_id, _now(), order_ref),
            )
            return True

    def set_commission(self, exec_id: str, commission: float) -> bool:
        """Store a fill's commission; False (and no write) when it is already stored."""
        row = self._row("SELECT commission FROM fills WHERE exec_id = ?", (exec_id,))
        if row is None or (
            row["commission"] is not None and abs(row["commission"] - commission) < 1e-9
        ):
            return False
        with self._tx() as c:
            c.execute("UPDATE fills SET commission = ? WHERE exec_id = ?", (commission, exec_id))
            c.execute(
                "UPDATE lots SET commissions = (SELECT COALESCE(SUM(commission), 0) FROM fills"
                " WHERE fills.lot_id = lots.id) WHERE id = (SELECT lot_id FROM fills WHERE"
                " exec_id = ?)",
                (exec_id,),
            )
            # A closed lot's realized P&L includes every commission, also a late one.
            c.execute(
                "UPDATE lots SET realized_pnl = ROUND((entry_price - exit_price) * multiplier"
                " * qty - (SELECT COALESCE(SUM(commission), 0) FROM fills WHERE"
                " fills.lot_id = lots.id), 2), updated_at = ? WHERE id = (SELECT lot_id FROM"
                " fills WHERE exec_id = ?) AND state = 'closed' AND exit_price IS NOT NULL",
                (time.time(), exec_id),
            )
        return True

    def fills(self, lot_id: int | None = None) -> list[dict[str, Any]]:
        if lot_id is None:
            return self._rows("SELECT * FROM fills ORDER BY time, exec_id")
        return self._rows("SELECT * FROM fills WHERE lot_id = ? ORDER BY time, exec_id", (lot_id,))

    def fills_of_order(self, order_ref: str) -> list[dict[str, Any]]:
        """The slices of one order (each its own execution)."""
        return self._rows("SELECT * FROM fills WHERE order_ref = ? ORDER BY time, exec_id",
                          (order_ref,))

    def resize_sale_lot(self, lot_id: int, qty: int, entry_price: float, tp_price: float,
                        sl_price: float) -> None:
        """A sale's further slices: the lot's size and volume-weighted price."""
        with self._tx() as c:
            c.execute(
                "UPDATE lots SET qty = ?, entry_price = ?, tp_price = ?, sl_price = ?,"
                " updated_at = ? WHERE id = ? AND state != 'closed'",
                (qty, entry_price, tp_price, sl_price, time.time(), lot_id),
            )

    def fill_count(self) -> int:
        row = self._row("SELECT COUNT(*) AS n FROM fills")
        return int(row["n"]) if row else 0

    # ---- entry attempts ----------------------------------------------------------------

    def start_entry(self, trade_date: str, slot: str) -> bool:
        """Claim the day's slot: True only for the first caller (the guard against
        selling twice, kept across restarts)."""
        now = time.time()
        with self._tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO entry_attempts(trade_date, slot, state, created_at,"
                " updated_at) VALUES (?, ?, 'started', ?, ?)",
                (trade_date, slot, now, now),
            )
            return cur.rowcount == 1

    def interrupt_entry(self, trade_date: str, slot: str, reason: str) -> bool:
        """A 'started' entry whose run died (nothing live, nothing filled): the slot may
        be claimed again. Only from 'started', so a late 'done' is never overwritten."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE entry_attempts SET state = 'interrupted', reason = ?, updated_at = ?"
                " WHERE trade_date = ? AND slot = ? AND state = 'started'",
                (reason, time.time(), trade_date, slot),
            )
            return cur.rowcount == 1

    def reclaim_entry(self, trade_date: str, slot: str) -> bool:
        """Claim an interrupted slot again: True only for the first caller."""
        with self._tx() as c:
            cur = c.execute(
                "UPDATE entry_attempts SET state = 'started', reason = NULL, updated_at = ?"
                " WHERE trade_date = ? AND slot = ? AND state = 'interrupted'",
                (time.time(), trade_date, slot),
            )
            return cur.rowcount == 1

    def entries_in_state(self, state: str) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM entry_attempts WHERE state = ? ORDER BY trade_date, slot", (state,)
        )

    def finish_entry(
        self,
        trade_date: str,
        slot: str,
        state: str,
        reason: str | None = None,
        lot_id: int | None = None,
    ) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE entry_attempts SET state = ?, reason = ?,"
                " lot_id = COALESCE(?, lot_id), updated_at = ? WHERE trade_date = ? AND slot = ?",
                (state, reason, lot_id, time.time(), trade_date, slot),
            )

    def entry(self, trade_date: str, slot: str) -> dict[str, Any] | None:
        return self._row(
            "SELECT * FROM entry_attempts WHERE trade_date = ? AND slot = ?", (trade_date, slot)
        )

    def entries(self, trade_date: str | None = None) -> list[dict[str, Any]]:
        if trade_date is None:
            return self._rows("SELECT * FROM entry_attempts ORDER BY trade_date, slot")
        return self._rows(
            "SELECT * FROM entry_attempts WHERE trade_date = ? ORDER BY slot", (trade_date,)
        )

    def contracts_sold_on(self, trade_date: str) -> int:
        row = self._row(
            "SELECT COALESCE(SUM(qty), 0) AS n FROM lots WHERE trade_date = ? AND imported = 0",
            (trade_date,),
        )
        return int(row["n"]) if row else 0

    # ---- settings ----------------------------------------------------------------------

    def get_kv(self, key: str, default: Any = None) -> Any:
        row = self._row("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(row["value"]) if row else default

    def set_kv(self, key: str, value: Any) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                " SET value = excluded.value",
                (key, json.dumps(value)),
            )

    # ---- P&L ---------------------------------------------------------------------------

    def realized_total(self) -> float:
        row = self._row(
            "SELECT COALESCE(SUM(realized_pnl), 0) AS r FROM lots WHERE state = 'closed'"
        )
        return round(float(row["r"]), 2) if row else 0.0

    def realized_on(self, trade_date_start: float, trade_date_end: float) -> float:
        row = self._row(
            "SELECT COALESCE(SUM(realized_pnl), 0) AS r FROM lots WHERE"
            " state = 'closed' AND exit_time >= ? AND exit_time < ?",
            (trade_date_start, trade_date_end),
        )
        return round(float(row["r"]), 2) if row else 0.0

    def snapshot_pnl(
        self, trade_date: str, realized: float, unrealized: float | None, open_lots: int
    ) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO pnl_daily(trade_date, realized, unrealized, open_lots, created_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(trade_date) DO UPDATE SET"
                " realized = excluded.realized, unrealized = excluded.unrealized,"
                " open_lots = excluded.open_lots, created_at = excluded.created_at",
                (trade_date, realized, unrealized, open_lots, time.time()),
            )

    def pnl_snapshots(self) -> dict[str, dict[str, Any]]:
        """The end-of-day snapshots by trade date (open P&L and lots at the close)."""
        return {r["trade_date"]: r for r in self._rows(
            "SELECT trade_date, realized, unrealized, open_lots FROM pnl_daily")}

    def pnl_history(self) -> list[dict[str, Any]]:
        """Realized P&L per day of closing (New York date), with the running total."""
        from datetime import datetime

        per_day: dict[str, float] = {}
        for row in self._rows(
            "SELECT exit_time, realized_pnl FROM lots WHERE state = 'closed'"
            " AND realized_pnl IS NOT NULL"
        ):
            day = datetime.fromtimestamp(row["exit_time"] or 0, ET).date().isoformat()
            per_day[day] = per_day.get(day, 0.0) + float(row["realized_pnl"])
        for row in self._rows("SELECT trade_date FROM pnl_daily"):
            per_day.setdefault(row["trade_date"], 0.0)
        points, total = [], 0.0
        for day in sorted(per_day):
            total += per_day[day]
            points.append(
                {"date": day, "realized": round(per_day[day], 2), "cumulative": round(total, 2)}
            )
        return points
