"""The book's SQLite file: the connection factory and the one transaction helper every
repository of the book shares.

WAL mode with `synchronous=FULL`: every write is one transaction, durable before the
call returns, so a `kill -9` at any point leaves a state reconciliation can finish.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from book.schema import create_or_migrate
from trading.records import Columns

R = TypeVar("R")


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


# Committed writes per database file, shared by every Store of this process on that file
# (the book's and the executor's): the dashboard's snapshot is rebuilt when it moves.
_VERSIONS: dict[str, int] = {}
_VERSIONS_LOCK = threading.Lock()


# One write lock per database file, shared by every connection of this process on it
# (the book's and the executor's): a writer waits for the other's commit on this lock
# and goes on the moment it is released, not in SQLite's busy handler, which sleeps
# 1, 2, 5 ... ms between tries (an exit pair's intents behind a fill's writes).
_WRITERS: dict[str, threading.RLock] = {}


def _writer(key: str) -> threading.RLock:
    with _VERSIONS_LOCK:
        return _WRITERS.setdefault(key, threading.RLock())


def _bump(path: str) -> None:
    with _VERSIONS_LOCK:
        _VERSIONS[path] = _VERSIONS.get(path, 0) + 1


class Tx:
    """One write transaction (BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an error)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.lock.acquire()
        self.db.writer.acquire()
        try:
            self.db.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.db.writer.release()
            self.db.lock.release()
            raise
        return self.db.conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
            if not exc_type:
                _bump(self.db.key)
        finally:
            self.db.writer.release()
            self.db.lock.release()


class Db:
    """The book file's one connection, its lock and its reads and writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.key = str(Path(path).resolve()) if self.path != ":memory:" else f"mem:{id(self)}"
        self.conn = connect(path)
        self.lock = threading.RLock()
        self.writer = _writer(self.key)  # shared with this file's other connections
        with self.lock:
            create_or_migrate(self.conn)

    def tx(self) -> Tx:
        return Tx(self)

    @property
    def version(self) -> int:
        """Moves with every committed write to this file from this process."""
        return _VERSIONS.get(self.key, 0)

    def rows(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, tuple(args)).fetchall()

    def row(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = self.rows(sql, args)
        return rows[0] if rows else None

    def records(self, build: Callable[[Columns], R], sql: str, args: Iterable[Any] = ()
                ) -> list[R]:
        """The rows as records of one kind (`build` is the record's `from_row`)."""
        return [build(r) for r in self.rows(sql, args)]

    def record(self, build: Callable[[Columns], R], sql: str, args: Iterable[Any] = ()
               ) -> R | None:
        row = self.row(sql, args)
        return None if row is None else build(row)

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def integrity_check(self) -> str:
        row = self.row("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"


class Repository:
    """One kind of record's reads and writes over the shared file (the Store composes
    them, so that one connection, lock and transaction helper serves all)."""

    def __init__(self, db: Db) -> None:
        self._db = db
