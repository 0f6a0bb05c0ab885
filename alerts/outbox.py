"""Alerts and their outbox, in the engine's SQLite file (tables of their own).

An alert is written before anyone is told, and one outbox row per webhook target
says whether that target has it yet; undelivered rows survive a restart and are
retried in order.

Coalescing (flapping): the first alert of a kind goes out at once. A repeat
within `coalesce_window` seconds becomes a new alert held back until the window
has passed, and later repeats fold into that held one (its `count` and
`last_time` grow) as long as it is still held; nothing folds into an alert that
is being sent, so every repeat is counted exactly once. So twenty 1100s in ten
seconds reach a webhook as two alerts: the first at once, then one with a count.
A folded alert takes the highest severity of its repeats; a new critical alert (or a
repeat that made a held one critical) releases the alerts held for coalescing, so it
never waits behind them and the queue stays in order.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from book.alert_rows import AlertRow, add_alert
from book.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL, kind TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    details TEXT, count INTEGER NOT NULL DEFAULT 1, last_time REAL NOT NULL,
    coalesce_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_kind ON alerts(kind, coalesce_key, time);
CREATE TABLE IF NOT EXISTS alert_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts(id),
    target_index INTEGER NOT NULL, target_hash TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
    delivered_at REAL, last_error TEXT, parked_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON alert_outbox(target_hash, delivered_at, id);
"""


class AlertStore:
    def __init__(self, path: str | Path, targets: list[str] | None = None) -> None:
        self._conn = connect(path)
        self._lock = threading.RLock()
        self.targets = targets or []  # target hashes, by index
        # delivery_status is read by every dashboard `status`: cached until a write here
        # (_writes) or by another connection (SQLite's data_version) moves.
        self._writes = 0
        self._status_cache: tuple[tuple[int, int], list[dict[str, Any]]] | None = None
        with self._lock:
            self._conn.executescript(SCHEMA)
            columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(alert_outbox)")}
            if "parked_at" not in columns:  # a book written before parking existed
                self._conn.execute("ALTER TABLE alert_outbox ADD COLUMN parked_at REAL")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, kind: str, message: str, severity: str = "warning",
            details: dict[str, Any] | None = None, coalesce_window: float = 60.0,
            coalesce_key: str | None = None) -> tuple[int, bool]:
        """Store an alert; returns (alert id, True if folded into an earlier one)."""
        row = AlertRow(kind, message, severity, dict(details or {}), tuple(self.targets),
                       coalesce_window, coalesce_key or "")
        with self._lock:
            self._writes += 1
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                out = add_alert(self._conn, row, time.time())
                self._conn.execute("COMMIT")
                return out
            except Exception:
                self._conn.execute("ROLLBACK")
                raise

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT a.*, (SELECT COUNT(*) FROM alert_outbox o WHERE o.alert_id = a.id AND"
                " o.delivered_at IS NULL) AS undelivered FROM alerts a ORDER BY a.id DESC"
                " LIMIT ?", (limit,)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["details"] = json.loads(d["details"] or "{}")
            d["delivered"] = d.pop("undelivered") == 0
            out.append(d)
        return out

    def next_pending(self, target_hash: str) -> dict[str, Any] | None:
        """The oldest undelivered alert of one target (its queue is strictly in order)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT o.id AS outbox_id, o.attempts, o.next_attempt_at, a.* FROM alert_outbox o"
                " JOIN alerts a ON a.id = o.alert_id WHERE o.target_hash = ? AND"
                " o.delivered_at IS NULL AND o.parked_at IS NULL ORDER BY o.id LIMIT 1",
                (target_hash,)).fetchone()
        if row is None:
            return None
        d = dict(row)
        d["details"] = json.loads(d["details"] or "{}")
        return d

    def mark_delivered(self, outbox_id: int) -> None:
        with self._lock:
            self._writes += 1
            self._conn.execute("UPDATE alert_outbox SET delivered_at = ?, attempts = attempts + 1"
                               " WHERE id = ?", (time.time(), outbox_id))

    def mark_failed(self, outbox_id: int, next_attempt_at: float, error: str) -> None:
        with self._lock:
            self._writes += 1
            self._conn.execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = ?,"
                " last_error = ? WHERE id = ?", (next_attempt_at, error[:500], outbox_id))

    def mark_parked(self, outbox_id: int, error: str) -> None:
        """A target refused this alert for good (a 4xx): kept, no longer retried, and no
        longer holding back the alerts behind it."""
        with self._lock:
            self._writes += 1
            self._conn.execute(
                "UPDATE alert_outbox SET attempts = attempts + 1, parked_at = ?, last_error = ?"
                " WHERE id = ?", (time.time(), error[:500], outbox_id))

    def delivery_status(self) -> list[dict[str, Any]]:
        """Per target (by index): alerts pending, alerts parked, the last error."""
        with self._lock:
            key = (self._writes, self._conn.execute("PRAGMA data_version").fetchone()[0])
            if self._status_cache is not None and self._status_cache[0] == key:
                return [dict(r) for r in self._status_cache[1]]
            rows = self._conn.execute(
                "SELECT target_index, SUM(delivered_at IS NULL AND parked_at IS NULL) AS pending,"
                " SUM(parked_at IS NOT NULL) AS parked, (SELECT last_error FROM alert_outbox i"
                " WHERE i.target_index = o.target_index AND i.last_error IS NOT NULL"
                " ORDER BY i.id DESC LIMIT 1) AS last_error FROM alert_outbox o"
                " GROUP BY target_index ORDER BY target_index").fetchall()
            out = [{"target": int(r["target_index"]), "pending": int(r["pending"] or 0),
                    "parked": int(r["parked"] or 0), "last_error": r["last_error"]} for r in rows]
            self._status_cache = (key, out)
        return [dict(r) for r in out]

