"""Entry attempts: a day's slot claimed once (the guard against selling twice, kept
across restarts) and what became of it (the `entry_attempts` table)."""

from __future__ import annotations

import time

from book.db import Repository
from trading.records import EntryAttempt


class Entries(Repository):
    def start_entry(self, trade_date: str, slot: str) -> bool:
        """Claim the day's slot: True only for the first caller."""
        now = time.time()
        with self._db.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO entry_attempts(trade_date, slot, state, created_at,"
                " updated_at) VALUES (?, ?, 'started', ?, ?)",
                (trade_date, slot, now, now),
            )
            return cur.rowcount == 1

    def interrupt_entry(self, trade_date: str, slot: str, reason: str) -> bool:
        """A 'started' entry whose run died (nothing live, nothing filled): the slot may
        be claimed again. Only from 'started', so a late 'done' is never overwritten."""
        with self._db.tx() as c:
            cur = c.execute(
                "UPDATE entry_attempts SET state = 'interrupted', reason = ?, updated_at = ?"
                " WHERE trade_date = ? AND slot = ? AND state = 'started'",
                (reason, time.time(), trade_date, slot),
            )
            return cur.rowcount == 1

    def reclaim_entry(self, trade_date: str, slot: str) -> bool:
        """Claim an interrupted slot again: True only for the first caller."""
        with self._db.tx() as c:
            cur = c.execute(
                "UPDATE entry_attempts SET state = 'started', reason = NULL, updated_at = ?"
                " WHERE trade_date = ? AND slot = ? AND state = 'interrupted'",
                (time.time(), trade_date, slot),
            )
            return cur.rowcount == 1

    def finish_entry(
        self,
        trade_date: str,
        slot: str,
        state: str,
        reason: str | None = None,
        lot_id: int | None = None,
    ) -> None:
        # A `done` entry (its sale filled: a lot exists) stays done: a late fill may have
        # finished it between the caller's look and this write (issue 32, item 7).
        with self._db.tx() as c:
            c.execute(
                "UPDATE entry_attempts SET state = ?, reason = ?,"
                " lot_id = COALESCE(?, lot_id), updated_at = ? WHERE trade_date = ? AND slot = ?"
                " AND (state != 'done' OR ? = 'done')",
                (state, reason, lot_id, time.time(), trade_date, slot, state),
            )

    def entries_in_state(self, state: str) -> list[EntryAttempt]:
        return self._db.records(
            EntryAttempt.from_row,
            "SELECT * FROM entry_attempts WHERE state = ? ORDER BY trade_date, slot", (state,)
        )

    def entry(self, trade_date: str, slot: str) -> EntryAttempt | None:
        return self._db.record(
            EntryAttempt.from_row,
            "SELECT * FROM entry_attempts WHERE trade_date = ? AND slot = ?", (trade_date, slot)
        )

    def entries(self, trade_date: str | None = None) -> list[EntryAttempt]:
        if trade_date is None:
            return self._db.records(EntryAttempt.from_row,
                                    "SELECT * FROM entry_attempts ORDER BY trade_date, slot")
        return self._db.records(
            EntryAttempt.from_row,
            "SELECT * FROM entry_attempts WHERE trade_date = ? ORDER BY slot", (trade_date,)
        )
