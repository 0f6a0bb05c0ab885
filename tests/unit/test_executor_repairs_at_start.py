"""The OrderExecutor repairs once as it starts. The book's reconciliation after a
connect tells the executor to repair (resume or cancel a leftover sale, place missing
exits), but with a gateway on the same machine the link is READY and reconciled before
the executor has started (or while the Supervisor restarts it), and that tell was
dropped: a leftover sale rested, past the kill switch, until the next repair tick a
minute later (seen in CI: test_path_7_a_leftover_sale_is_not_resumed_past_the_kill_switch).
On the executor's own actor with a real book file; what the repair does is
tests/engine/test_crash_recovery.py's."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from actors.context import EngineContext
from actors.directory import ActorDirectory
from actors.order_executor import OrderExecutor
from config.loader import load_config
from tests.support.zmq_request import wait_until


class _Recording(OrderExecutor):
    asked: list[str] = []

    def repair_exits(self, reason: str = "requested") -> dict[str, int]:
        self.asked.append(reason)
        return {"repaired": 0, "checked": 0}


def test_an_executor_that_starts_repairs_without_being_told(tmp_path: Path) -> None:
    cfg = load_config(None, environ={})
    cfg = dataclasses.replace(
        cfg, storage=dataclasses.replace(cfg.storage, path=str(tmp_path / "book.sqlite")))
    alerts: Any = SimpleNamespace(raise_alert=lambda *a, **k: None, recent=lambda n=50: [])
    ctx = EngineContext(cfg=cfg, directory=ActorDirectory(), clock=SimpleNamespace(),
                        alerts=alerts, calendar=SimpleNamespace(), started_at=time.time())
    _Recording.asked = []
    ref = _Recording.start(ctx)
    try:
        wait_until(lambda: _Recording.asked, 10, message="a repair at start")
        assert _Recording.asked == ["started"]
    finally:
        ref.stop()
