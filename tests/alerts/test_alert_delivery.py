"""Money-path issue, item 12: alerts of one kind about different lots do not fold into
each other; a webhook that refuses an alert for good (4xx) parks it and does not hold
back its queue; a broken HTTP answer does not end the delivery thread. Real HTTP
servers on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerts.dispatcher import AlertDispatcher
from alerts.outbox import AlertStore
from tests.alerts.test_alerts import _cfg
from tests.support.webhook_sink import WebhookSink
from tests.support.zmq_request import wait_until


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


def test_alerts_of_one_kind_for_different_lots_are_not_folded(
    tmp_path: Path, sink: WebhookSink
) -> None:
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json")], coalesce_window=60.0))
    d.start()
    try:
        d.raise_alert("lot_unprotected", "lot 1 has no exits", "critical", {"lot_id": 1})
        d.raise_alert("lot_unprotected", "lot 2 has no exits", "critical", {"lot_id": 2})
        # A repeat about lot 1 still folds (flapping stays quiet).
        d.raise_alert("lot_unprotected", "lot 1 has no exits", "critical", {"lot_id": 1})
        sink.wait_for(lambda s: len(s.bodies("lot_unprotected")) >= 2, timeout=10)
        bodies = sink.bodies("lot_unprotected")
        assert sorted(b["details"]["lot_id"] for b in bodies) == [1, 2]
        # Stored: the two sent, and lot 1's repeat held back for the window.
        stored = [a for a in d.recent() if a["kind"] == "lot_unprotected"]
        assert sorted(a["details"]["lot_id"] for a in stored) == [1, 1, 2]
    finally:
        d.stop()


class RefusingSink:
    """Answers 400 to any alert whose message says 'poison', 204 to the rest."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if "poison" in body["message"]:
                    outer.refused += 1
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.accepted.append(body)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_permanent_4xx_is_parked_and_the_queue_goes_on(tmp_path: Path) -> None:
    sink = RefusingSink()
    d = AlertDispatcher(_cfg(tmp_path, [(sink.url, "json")]))
    d.start()
    try:
        d.raise_alert("reconcile", "poison pill", "warning")
        d.raise_alert("entry_done", "sold 1 put", "info")
        wait_until(lambda: [b for b in sink.accepted if b["kind"] == "entry_done"], 10,
                   message="the alert behind the refused one delivered")
        assert sink.refused == 1, "a 4xx is not retried"
        status = d.delivery_status()
        assert status[0]["parked"] == 1 and status[0]["pending"] == 0
        assert "400" in (status[0]["last_error"] or "")
        assert "127.0.0.1" not in json.dumps(status), "no URL in the status"
    finally:
        d.stop()
        sink.close()
    # Parked, not lost: the alert is still in the book.
    kinds = [a["kind"] for a in AlertStore(tmp_path / "book.sqlite").recent()]
    assert "reconcile" in kinds


def test_a_broken_http_answer_does_not_end_delivery(tmp_path: Path) -> None:
    """The first answer is not HTTP at all (http.client.BadStatusLine, which is no
    OSError); later answers are fine: the alert still arrives."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        first = True
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                while len(body) < length:
                    body += conn.recv(65536)
                if first:
                    first = False
                    conn.sendall(b"garbage that is no status line\r\n\r\n")
                    continue
                received.append(body)
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    d = AlertDispatcher(_cfg(tmp_path, [(f"http://127.0.0.1:{port}/hook", "json")]))
    d.start()
    try:
        d.raise_alert("entry_done", "sold 1 put", "info")
        wait_until(lambda: received, 10, message="the alert delivered after a bad answer")
        assert json.loads(received[0])["kind"] == "entry_done"
        assert all(t.is_alive() for t in d._threads)
    finally:
        d.stop()
        server.close()
