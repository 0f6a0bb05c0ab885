"""Issue 5: webhook formats, signatures, the outbox, coalescing, secrets, gateway restart."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from alerts.dispatcher import SIGNATURE_HEADER, AlertDispatcher, format_payload, post_url
from config.loader import load_config
from ops.gateway_restart import GatewayRestartError, restart_via_docker
from tests.support.webhook_sink import WebhookSink


def _cfg(tmp_path: Path, hooks: list[tuple[str, str]], **alerts: Any) -> Any:
    lines = [f'[storage]\npath = "{tmp_path / "book.sqlite"}"', "[alerts]"]
    lines += [f"{k} = {v}" for k, v in {"retry_initial": 0.05, "retry_max": 0.2, "timeout": 2.0,
                                         **alerts}.items()]
    for url, fmt in hooks:
        lines.append(f'[[alerts.webhooks]]\nurl = "{url}"\nformat = "{fmt}"')
    f = tmp_path / "c.toml"
    f.write_text("\n".join(lines) + "\n")
    return load_config(f, environ={})


@pytest.fixture
def sink() -> Any:
    with WebhookSink() as s:
        yield s


def test_formats() -> None:
    alert = {"id": 3, "time": 1795490000.0, "last_time": 1795490005.0, "kind": "link_down",
             "severity": "critical", "message": "gateway lost IB", "count": 4, "details": {}}
    assert format_payload(alert, "json")["count"] == 4
    assert "link_down (x4)" in format_payload(alert, "slack")["text"]
    assert "gateway lost IB" in format_payload(alert, "discord")["content"]
    ntfy = format_payload(alert, "ntfy", "https://ntfy.example/bot-alerts")
    assert ntfy["topic"] == "bot-alerts" and ntfy["priority"] == 5
    assert post_url("https://ntfy.example/bot-alerts", "ntfy") == "https://ntfy.example/"


def test_delivery_with_hmac_signature(tmp_path: Path, sink: WebhookSink,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_BOT_WEBHOOK_SECRET", "s3cret-key")
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json"), (sink.url, "slack")]))
    d.start()
    try:
        d.raise_alert("entry_done", "sold 1 put", "info")
        sink.wait_for(lambda s: len(s.requests) == 2)
        for r in sink.requests:
            expected = "sha256=" + hmac.new(b"s3cret-key", r["raw"], hashlib.sha256).hexdigest()
            assert r["headers"][SIGNATURE_HEADER] == expected
        assert sink.bodies("entry_done")[0]["message"] == "sold 1 put"
    finally:
        d.stop()


def test_sink_down_then_every_alert_once_in_order(tmp_path: Path, sink: WebhookSink) -> None:
    cfg = _cfg(tmp_path, [(sink.url, "json")], coalesce_window=0.0)
    sink.stop()
    d = AlertDispatcher(cfg)
    d.start()
    try:
        for i in range(5):
            d.raise_alert("order_rejected", f"alert {i}")
        d.stop()  # the engine restarts while the webhook is down
        d = AlertDispatcher(cfg)
        d.start()
        d.raise_alert("order_rejected", "alert 5")
        sink.start()  # the webhook comes back on the same port
        sink.wait_for(lambda s: len(s.bodies()) >= 6, 15)
        assert [b["message"] for b in sink.bodies()] == [f"alert {i}" for i in range(6)]
    finally:
        d.stop()


def test_flapping_is_coalesced_with_a_count(tmp_path: Path, sink: WebhookSink) -> None:
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json")], coalesce_window=1.0))
    d.start()
    try:
        for _ in range(20):
            d.raise_alert("link_down", "1100: connectivity lost", "critical")
        sink.wait_for(lambda s: sum(b["count"] for b in s.bodies()) == 20, 10)
        assert len(sink.bodies()) <= 3
        assert max(b["count"] for b in sink.bodies()) >= 18
    finally:
        d.stop()


def test_secrets_never_reach_a_log_line(tmp_path: Path, sink: WebhookSink,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from ops.logs import setup_logging

    monkeypatch.setenv("TRADING_BOT_WEB_PASSWORD", "hunter2-password")
    out = io.StringIO()
    setup_logging("test")
    handler = logger.add(out, format="{message}")
    sink.failing = True
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json")]))
    d.start()
    try:
        d.raise_alert("reconcile", f"posting to {sink.url} with password=hunter2-password")
        sink.wait_for(lambda s: True)
        threading.Event().wait(0.3)  # let a delivery fail and be logged
    finally:
        d.stop()
        logger.remove(handler)
    text = out.getvalue()
    assert "secret-token-abc" not in text and "hunter2-password" not in text
    assert "ALERT" in text
    from alerts.outbox import AlertStore

    alerts = AlertStore(tmp_path / "book.sqlite").recent()
    assert "secret-token-abc" not in json.dumps(alerts)


def test_docker_restart_request_on_a_unix_socket(tmp_path: Path) -> None:
    """No Docker engine runs here: a stand-in unix-socket server records the request."""
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    seen: list[bytes] = []

    def serve(status: str) -> None:
        conn, _ = server.accept()
        seen.append(conn.recv(65536))
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        conn.close()

    t = threading.Thread(target=serve, args=("204 No Content",))
    t.start()
    assert "restarted" in restart_via_docker(path, "ib-gateway", timeout=5)
    t.join()
    request_line = seen[0].split(b"\r\n")[0]
    assert request_line == b"POST /containers/ib-gateway/restart?t=10 HTTP/1.1"
    t = threading.Thread(target=serve, args=("404 Not Found",))
    t.start()
    with pytest.raises(GatewayRestartError, match="404"):
        restart_via_docker(path, "ib-gateway", timeout=5)
    t.join()
    server.close()
    os.unlink(path)
