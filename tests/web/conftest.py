"""Dashboard tests: the real web app under waitress against a real engine on ibsim."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.engine.conftest import sim, start_engine  # noqa: F401 - shared fixtures

PASSWORD = "test-password-123"


class WebServer:
    def __init__(self, cfg: Any) -> None:
        from waitress import create_server

        from web.app import create_app

        self.app = create_app(cfg)
        self.server = create_server(self.app, host="127.0.0.1", port=0, threads=4)
        self.port = self.server.effective_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def web_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., WebServer]]:
    monkeypatch.setenv("TRADING_BOT_WEB_PASSWORD", PASSWORD)
    servers: list[WebServer] = []

    def start(cfg: Any, **web: Any) -> WebServer:
        if web:
            cfg = replace(cfg, web=replace(cfg.web, **web))
        s = WebServer(cfg)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


class Browserless:
    """An HTTP client with a cookie jar (a logged-in operator without a browser)."""

    def __init__(self, base: str) -> None:
        import http.cookiejar
        import urllib.request

        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        import json
        import urllib.error
        import urllib.request

        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST"
                                                                    else None)
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
        try:
            with self.opener.open(req, timeout=20) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
