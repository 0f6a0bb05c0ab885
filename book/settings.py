"""Settings (JSON values by key, the `kv` table) and P&L: realized totals from the
closed lots and the end-of-day snapshots (the `pnl_daily` table)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from book.db import Repository
from trading.calendar import ET
from trading.records import PnlDay, PnlSnapshot


class Settings(Repository):
    def get_kv(self, key: str, default: Any = None) -> Any:
        row = self._db.row("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(row["value"]) if row else default

    def set_kv(self, key: str, value: Any) -> None:
        with self._db.tx() as c:
            c.execute(
                "INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                " SET value = excluded.value",
                (key, json.dumps(value)),
            )


class Pnl(Repository):
    def realized_total(self) -> float:
        row = self._db.row(
            "SELECT COALESCE(SUM(realized_pnl), 0) AS r FROM lots WHERE state = 'closed'"
        )
        return round(float(row["r"]), 2) if row else 0.0

    def realized_on(self, trade_date_start: float, trade_date_end: float) -> float:
        row = self._db.row(
            "SELECT COALESCE(SUM(realized_pnl), 0) AS r FROM lots WHERE"
            " state = 'closed' AND exit_time >= ? AND exit_time < ?",
            (trade_date_start, trade_date_end),
        )
        return round(float(row["r"]), 2) if row else 0.0

    def snapshot_pnl(
        self, trade_date: str, realized: float, unrealized: float | None, open_lots: int
    ) -> None:
        with self._db.tx() as c:
            c.execute(
                "INSERT INTO pnl_daily(trade_date, realized, unrealized, open_lots, created_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(trade_date) DO UPDATE SET"
                " realized = excluded.realized, unrealized = excluded.unrealized,"
                " open_lots = excluded.open_lots, created_at = excluded.created_at",
                (trade_date, realized, unrealized, open_lots, time.time()),
            )

    def pnl_snapshots(self) -> dict[str, PnlSnapshot]:
        """The end-of-day snapshots by trade date (open P&L and lots at the close)."""
        return {s.trade_date: s for s in self._db.records(
            PnlSnapshot.from_row,
            "SELECT trade_date, realized, unrealized, open_lots FROM pnl_daily")}

    def pnl_history(self) -> list[PnlDay]:
        """Realized P&L per day of closing (New York date), with the running total."""
        per_day: dict[str, float] = {}
        for row in self._db.rows(
            "SELECT exit_time, realized_pnl FROM lots WHERE state = 'closed'"
            " AND realized_pnl IS NOT NULL"
        ):
            day = datetime.fromtimestamp(row["exit_time"] or 0, ET).date().isoformat()
            per_day[day] = per_day.get(day, 0.0) + float(row["realized_pnl"])
        for row in self._db.rows("SELECT trade_date FROM pnl_daily"):
            per_day.setdefault(row["trade_date"], 0.0)
        points, total = [], 0.0
        for day in sorted(per_day):
            total += per_day[day]
            points.append(PnlDay(day, round(per_day[day], 2), round(total, 2)))
        return points
