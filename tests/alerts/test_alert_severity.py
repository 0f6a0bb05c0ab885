"""Issue 32 item 10: a folded alert takes the highest severity, and an alert held back
for coalescing never makes a later critical one wait (real dispatcher, real SQLite,
real HTTP sink)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from alerts.dispatcher import AlertDispatcher
from tests.alerts.test_alerts import _cfg
from tests.support.webhook_sink import WebhookSink


@pytest.fixture
def sink() -> Any:
    with WebhookSink() as s:
        yield s


def test_a_folded_alert_takes_the_highest_severity(tmp_path: Path, sink: WebhookSink) -> None:
    """A warning goes out; its repeat is held for the window; a critical repeat folds
    into it. The old code kept 'warning' on the folded alert."""
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json")], coalesce_window=30.0))
    d.start()
    try:
        d.raise_alert("link_down", "first", "warning")
        sink.wait_for(lambda s: len(s.requests) == 1)
        d.raise_alert("link_down", "second", "warning")
        d.raise_alert("link_down", "third: worse", "critical")
        (latest, *_) = d.recent(5)
        assert latest["count"] == 2 and latest["severity"] == "critical", latest
        # Critical: not held back for the window.
        sink.wait_for(lambda s: len(s.requests) == 2, timeout=5)
        assert sink.bodies()[-1]["severity"] == "critical"
    finally:
        d.stop()


def test_a_held_alert_does_not_make_a_later_critical_wait(
    tmp_path: Path, sink: WebhookSink
) -> None:
    """A flapping warning's repeat is held for a 30 s window; then a lot is
    unprotected. The old code queued the critical behind the held one (up to the
    window); now the held one is released at once and the critical follows it, in
    order."""
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json")], coalesce_window=30.0))
    d.start()
    try:
        d.raise_alert("link_down", "flap 1", "warning")
        sink.wait_for(lambda s: len(s.requests) == 1)
        d.raise_alert("link_down", "flap 2", "warning")  # held for the window
        t0 = time.monotonic()
        d.raise_alert("lot_unprotected", "lot 1 has NO exits", "critical")
        sink.wait_for(lambda s: bool(s.bodies("lot_unprotected")), timeout=8)
        assert time.monotonic() - t0 < 8
        ids = [b["id"] for b in sink.bodies()]
        assert ids == sorted(ids), ids  # still in order
    finally:
        d.stop()
