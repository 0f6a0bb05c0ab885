"""The engine killed after its gateway_restart alert was stored and before it cleared its
pending mark: the next engine finds that alert in the store and says nothing more (CI:
tests/e2e/test_gateway_restart.py saw two alerts when the kill fell in that window, as
the store's epoch times were read as ISO text and every stored report skipped)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from loguru import logger

from actors.watchdog import Watchdog
from alerts.outbox import AlertStore


def test_a_report_stored_after_the_restart_began_is_found(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "book.sqlite")
    began = time.time()
    store.add("engine_started", "engine started")
    me = SimpleNamespace(alerts=store, log=logger)
    assert not Watchdog._restart_reported_since(me, began)  # type: ignore[arg-type]
    store.add("gateway_restart", "gateway restart via supervisor: RUNNING again")
    assert Watchdog._restart_reported_since(me, began)  # type: ignore[arg-type]
    assert not Watchdog._restart_reported_since(me, time.time() + 1)  # type: ignore[arg-type]
    assert not Watchdog._restart_reported_since(me, 0.0)  # type: ignore[arg-type]
