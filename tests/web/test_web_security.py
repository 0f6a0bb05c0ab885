"""Issue 18 over HTTP: login throttling, session expiry, a new password ending old
sessions, reads behind the login off loopback, engine text never parsed as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config.loader import Config, load_config
from tests.support.zmq_request import wait_for_value, wait_until
from tests.web.conftest import PASSWORD, Browserless
from web.app import LoginThrottle, is_loopback

ROOT = Path(__file__).resolve().parents[2]


def no_engine(tmp_path: Path) -> Config:
    """A dashboard without an engine: reads that pass the login get 503, not 401."""
    from ibsim.harness import free_port

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\npath = "{tmp_path / "db.sqlite"}"\n[zmq]\n'
                   f'endpoint = "tcp://127.0.0.1:{free_port()}"\nrequest_timeout = 0.2\n'
                   "retries = 0\n")
    return load_config(cfg, environ={})


def login(web: Browserless, password: str) -> tuple[int, dict[str, Any], Any]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(web.base + "/login", data=json.dumps(
        {"password": password}).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with web.opener.open(req, timeout=20) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


def test_failed_logins_are_throttled_with_a_growing_delay(tmp_path: Path,
                                                          web_server: Any) -> None:
    web = Browserless(web_server(no_engine(tmp_path)).url)
    delays = []
    for _ in range(3):
        code, body, headers = wait_for_value(lambda: login(web, "wrong"),
                                             lambda r: r[0] != 429, 30, "throttle over")
        assert code == 401 and body["error"]["code"] == "bad_password"
        delays.append(int(headers["Retry-After"]))
        # Within the delay even the right password is refused, unchecked.
        code, body, headers = login(web, PASSWORD)
        assert code == 429 and body["error"]["code"] == "throttled", body
        assert int(headers["Retry-After"]) >= 1
    assert delays == [1, 2, 4]
    code, _, _ = wait_for_value(lambda: login(web, PASSWORD), lambda r: r[0] != 429, 30,
                                "throttle over")
    assert code == 200
    # A success starts the address again from the first delay.
    assert int(login(web, "wrong")[2]["Retry-After"]) == 1


def test_throttle_is_per_client_address() -> None:
    t = LoginThrottle()
    assert t.failed("10.0.0.1", 100.0) == 1.0 and t.failed("10.0.0.1", 101.5) == 2.0
    assert t.retry_after("10.0.0.1", 102.0) == pytest.approx(1.5)
    assert t.retry_after("10.0.0.2", 102.0) == 0.0  # another address is not held up
    assert t.retry_after("10.0.0.1", 101.5 + 3601) == 0.0  # forgotten after an hour


def test_sessions_expire(tmp_path: Path, web_server: Any) -> None:
    # Off loopback, so reads need the login: 503 (engine down) means "let in", 401 not.
    web = Browserless(web_server(no_engine(tmp_path), host="0.0.0.0",
                                 session_hours=2 / 3600).url)
    assert web.request("GET", "/api/status")[0] == 401
    assert login(web, PASSWORD)[0] == 200
    assert web.request("GET", "/api/status")[0] == 503
    wait_until(lambda: web.request("GET", "/api/status")[0] == 401, 20, 0.2,
               "the session expired")
    assert web.request("POST", "/api/pause", headers={"X-CSRF-Token": "x"})[0] == 401


def test_a_new_password_ends_old_sessions(tmp_path: Path, web_server: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    web = Browserless(web_server(no_engine(tmp_path), host="0.0.0.0").url)
    assert login(web, PASSWORD)[0] == 200
    assert web.request("GET", "/api/status")[0] == 503
    monkeypatch.setenv("TRADING_BOT_WEB_PASSWORD", "a-brand-new-password")
    assert web.request("GET", "/api/status")[0] == 401  # the old session is over
    other = Browserless(web.base)
    assert login(other, "a-brand-new-password")[0] == 200
    assert other.request("GET", "/api/status")[0] == 503


def test_reads_need_login_unless_the_dashboard_is_on_loopback(tmp_path: Path,
                                                             web_server: Any) -> None:
    cfg = no_engine(tmp_path)
    on_loopback = Browserless(web_server(cfg).url)  # web.host 127.0.0.1
    assert on_loopback.request("GET", "/api/status")[0] == 503
    exposed = Browserless(web_server(cfg, host="0.0.0.0").url)
    code, body = exposed.request("GET", "/api/positions")
    assert code == 401 and body["error"]["code"] == "login_required"
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_engine_text_is_never_inserted_as_html() -> None:
    js = (ROOT / "web" / "static" / "dashboard.js").read_text()
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js
    assert "createTextNode" in js
