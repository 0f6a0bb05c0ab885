"""An alert's rows (alerts, alert_outbox: the tables alerts/outbox.py creates) written
on a connection inside the caller's transaction, so that a state change of the book
and the alert that announces it commit together (issue 32, item 10): a crash between
them can no longer lose the alert. Coalescing as alerts/outbox.py describes it."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

# Severity order: a folded alert takes the highest of its repeats.
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


@dataclass(frozen=True)
class AlertRow:
    """An alert ready to be written (its message already redacted), with the webhook
    targets and the coalescing of the dispatcher that prepared it."""

    kind: str
    message: str
    severity: str = "warning"
    details: dict[str, Any] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    coalesce_window: float = 60.0
    coalesce_key: str = ""


def add_alert(c: sqlite3.Connection, a: AlertRow, now: float) -> tuple[int, bool]:
    """Write `a` inside the caller's open transaction; (alert id, folded)."""
    critical = a.severity == "critical"
    row = c.execute(
        "SELECT a.id, a.time, a.severity, (SELECT MAX(o.next_attempt_at) FROM"
        " alert_outbox o WHERE o.alert_id = a.id) AS hold, EXISTS (SELECT 1 FROM"
        " alert_outbox o WHERE o.alert_id = a.id AND o.delivered_at IS NULL AND"
        " o.next_attempt_at > ?) AS held FROM alerts a"
        " WHERE a.kind = ? AND a.coalesce_key = ? AND a.time >= ?"
        " ORDER BY a.id DESC LIMIT 1",
        (now, a.kind, a.coalesce_key, now - a.coalesce_window),
    ).fetchone() if a.coalesce_window > 0 and a.targets else None
    hold_until = 0.0
    if row is not None and not row["held"]:
        # Sent (or being sent): the repeat waits for the window to pass.
        hold_until = max(row["time"], row["hold"] or 0.0) + a.coalesce_window
        row = None
    if row is not None:
        worst = max((row["severity"], a.severity), key=lambda x: SEVERITY_RANK.get(x, 1))
        c.execute("UPDATE alerts SET count = count + 1, last_time = ?, message = ?,"
                  " severity = ? WHERE id = ?", (now, a.message, worst, row["id"]))
        if critical and row["severity"] != "critical":
            _release_held(c, now)  # news: worse than what was held
        return int(row["id"]), True
    cur = c.execute(
        "INSERT INTO alerts(time, kind, severity, message, details, last_time,"
        " coalesce_key) VALUES (?,?,?,?,?,?,?)",
        (now, a.kind, a.severity, a.message, json.dumps(a.details or {}, default=str), now,
         a.coalesce_key))
    alert_id = int(cur.lastrowid or 0)
    for i, target in enumerate(a.targets):
        c.execute("INSERT INTO alert_outbox(alert_id, target_index, target_hash,"
                  " next_attempt_at) VALUES (?,?,?,?)", (alert_id, i, target, hold_until))
    if critical and not hold_until:
        _release_held(c, now)  # a new critical (not a repeat) waits for none
    return alert_id, False


def _release_held(c: sqlite3.Connection, now: float) -> None:
    """A new critical alert never waits behind one held for coalescing (a queue is in
    order): the held ones go now, with their count so far, and it right after. A
    critical repeat of a critical already sent is still held (flapping)."""
    c.execute("UPDATE alert_outbox SET next_attempt_at = ? WHERE delivered_at IS NULL AND"
              " parked_at IS NULL AND attempts = 0 AND next_attempt_at > ?", (now, now))
