"""The book's tables and their migrations (the schema version is kept in `meta`).

Other modules keep their own tables in the same file (the alert outbox), so nothing
here drops a table it does not know.
"""

from __future__ import annotations

import sqlite3

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
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    entry_estimated INTEGER NOT NULL DEFAULT 0, exit_estimated INTEGER NOT NULL DEFAULT 0
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


def create_or_migrate(conn: sqlite3.Connection) -> None:
    """Create what is missing and bring a book written by an older version up to date."""
    # executescript commits on its own, so it runs outside a transaction of ours.
    conn.executescript(SCHEMA)
    conn.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )
    _allow_share_sales(conn)
    cols = {r["name"] for r in conn.execute("PRAGMA table_info(lots)")}
    if "pnl_estimated" not in cols:  # a book written before closed_outside existed
        conn.execute("ALTER TABLE lots ADD COLUMN pnl_estimated INTEGER NOT NULL DEFAULT 0")
    if "exit_estimated" not in cols:
        _split_the_estimate(conn)


def _split_the_estimate(conn: sqlite3.Connection) -> None:
    """A book written before a lot said which of its prices is an estimate (its entry
    from a sale's limit, its exit from a stop, a quote or a position check): read from
    what it holds. The entry was estimated if no execution of its sale is stored (a
    split-off piece, with no sale of its own, is not marked); the exit, if the lot is
    closed and its price is not that of a buy of its own stored (an estimated entry's
    lot closed by its exit's fill). One transaction, the columns looked at again inside
    it: another process opening the file at the same moment migrates it only once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "exit_estimated" not in {r[1] for r in conn.execute("PRAGMA table_info(lots)")}:
            for col in ("entry_estimated", "exit_estimated"):
                conn.execute(f"ALTER TABLE lots ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0")
            conn.execute(
                "UPDATE lots SET entry_estimated = 1 WHERE pnl_estimated = 1"
                " AND order_ref != '' AND NOT EXISTS (SELECT 1 FROM fills WHERE"
                " fills.order_ref = lots.order_ref AND fills.side = 'SLD')")
            conn.execute(
                "UPDATE lots SET exit_estimated = 1 WHERE pnl_estimated = 1"
                " AND state = 'closed' AND close_reason != 'assigned' AND NOT"
                " (entry_estimated = 1 AND EXISTS (SELECT 1 FROM fills WHERE"
                " fills.lot_id = lots.id AND fills.side = 'BOT'"
                " AND ABS(fills.price - lots.exit_price) < 1e-9))")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _allow_share_sales(conn: sqlite3.Connection) -> None:
    """A book written before issue 16 refuses the 'shares' role (a CHECK constraint
    cannot be altered in SQLite): rebuild the orders table with the new one."""
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'orders'"
    ).fetchone()
    if row is None or "'shares'" in row[0]:
        return
    new = row[0].replace("'restore')", "'restore', 'shares')").replace(
        "CREATE TABLE orders", "CREATE TABLE orders_v2", 1)
    conn.executescript(
        "BEGIN IMMEDIATE;" + new + ";INSERT INTO orders_v2 SELECT * FROM orders;"
        "DROP TABLE orders;ALTER TABLE orders_v2 RENAME TO orders;"
        "CREATE INDEX IF NOT EXISTS orders_status ON orders(status);"
        "CREATE INDEX IF NOT EXISTS orders_lot ON orders(lot_id);COMMIT;"
    )
