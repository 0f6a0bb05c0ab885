"""A real HTTP webhook sink on loopback that records every POST; it can fail (503) or
stop and start again on the same port, to test the alert outbox."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookSink:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failing = False
        self._lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/secret-token-abc"

    def start(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if sink.failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with sink._lock:
                    sink.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "raw": raw, "json": body, "time": time.time()})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            out = [r["json"] for r in self.requests if r["json"] is not None]
        return [b for b in out if kind is None or b.get("kind") == kind]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate(self)
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"webhook sink: condition not met in {timeout}s; got "
                             f"{[b.get('kind') for b in self.bodies()]}")

    def __enter__(self) -> WebhookSink:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()
