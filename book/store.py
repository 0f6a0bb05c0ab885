"""The SQLite book: lots, order intents, fills, entry attempts, settings, P&L snapshots.

`Store` is the book's one entry point, composed of one repository per record kind
(book/lots.py, orders.py, fills.py, entries.py, settings.py), which return the typed
records of trading/records.py. They share one connection, lock and transaction helper
(book/db.py): WAL mode with `synchronous=FULL`, every write one transaction, durable
before the call returns, so a `kill -9` at any point leaves a state reconciliation can
finish. Fills are unique by execution id; an entry slot is claimed atomically. The
tables and their migrations are in book/schema.py. Times are epoch seconds (UTC);
trade dates are 'YYYY-MM-DD' in New York time.
"""

from __future__ import annotations

from pathlib import Path

from book.db import Db, Repository
from book.entries import Entries
from book.fills import Fills
from book.lots import Lots
from book.orders import Orders
from book.settings import Pnl, Settings


class Store(Lots, Orders, Fills, Entries, Settings, Pnl):
    def __init__(self, path: str | Path) -> None:
        db = Db(path)
        Repository.__init__(self, db)  # every repository reads and writes through `db`
        self.path = db.path

    @property
    def version(self) -> int:
        """Moves with every committed write to this file from this process."""
        return self._db.version

    def close(self) -> None:
        self._db.close()

    def integrity_check(self) -> str:
        return self._db.integrity_check()
