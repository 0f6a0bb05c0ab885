"""The dashboard: a JSON API over the engine's ZeroMQ ops, and one page.

Reads are GETs under /api; every action is a POST that needs a login (password
from TRADING_BOT_WEB_PASSWORD, session cookie) and the session's CSRF token in
the X-CSRF-Token header. When the engine does not answer, the API says
"engine unreachable" (HTTP 503) instead of failing.

Issue 18: reads need a login too unless the dashboard listens on loopback only
(or `web.login_required_for_reads`); a session ends after `web.session_hours` or
when the password changes (the session carries a keyed fingerprint of it); failed
logins are throttled per client address with a doubling delay (HTTP 429).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import threading
import time
from functools import wraps
from typing import Any

from flask import Flask, jsonify, render_template, request, session
from flask.typing import ResponseReturnValue

from config.loader import Config
from ops.backoff import backoff_delay
from wire.client import EngineClient, EngineError, EngineUnreachable
from wire.keys import curve_keys_dir
from wire.protocol import READ_OPS

ACTIONS = ("enter_now", "pause", "resume", "repair_exits", "restart_gateway",
           "kill_switch_on", "kill_switch_off")
# Actions that are one engine op with fixed arguments.
ACTION_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "kill_switch_on": ("kill_switch", {"on": True}),
    "kill_switch_off": ("kill_switch", {"on": False}),
}
PASSWORD_ENV = "TRADING_BOT_WEB_PASSWORD"
SECRET_ENV = "TRADING_BOT_WEB_SECRET"


THROTTLE_FIRST = 1.0  # seconds locked out after the first failed login from an address
THROTTLE_MAX = 300.0  # the delay doubles per failure up to this
THROTTLE_FORGET = 3600.0  # an address quiet this long starts again from the first delay


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0: reachable from elsewhere


class LoginThrottle:
    """Failed logins per client address: after the n-th failure the address is refused
    for THROTTLE_FIRST * 2**(n-1) seconds (capped), without its password being checked."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float, float]] = {}  # addr: (n, until, last)

    def retry_after(self, addr: str, now: float) -> float:
        with self._lock:
            n, until, last = self._failures.get(addr, (0, 0.0, 0.0))
            if n and now - last > THROTTLE_FORGET:
                del self._failures[addr]
                return 0.0
            return max(0.0, until - now)

    def failed(self, addr: str, now: float) -> float:
        with self._lock:
            n = self._failures.get(addr, (0, 0.0, 0.0))[0] + 1
            delay = backoff_delay(n, THROTTLE_FIRST, THROTTLE_MAX)
            self._failures[addr] = (n, now + delay, now)
            if len(self._failures) > 10_000:  # many addresses: drop the oldest
                oldest = min(self._failures, key=lambda a: self._failures[a][2])
                del self._failures[oldest]
            return delay

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._failures.pop(addr, None)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()


def _error(status: int, code: str, message: str) -> ResponseReturnValue:
    return jsonify({"ok": False, "error": {"code": code, "message": message}}), status


def create_app(cfg: Config, client: EngineClient | None = None) -> Flask:
    app = Flask(__name__)
    # A doubled slash is no route: Werkzeug would answer an HTML 308 redirect on /api/.
    app.url_map.merge_slashes = False
    app.secret_key = os.environ.get(SECRET_ENV) or secrets.token_hex(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")
    engine = client or EngineClient(cfg.zmq, curve_keys_dir(cfg))
    throttle = LoginThrottle()
    reads_need_login = cfg.web.login_required_for_reads or not is_loopback(cfg.web.host)
    app.config["throttle"] = throttle

    def password_mark(password: str) -> str:
        # Keyed with the session secret: the cookie never carries the password's hash.
        key = str(app.secret_key).encode()
        return hmac.new(key, password.encode(), hashlib.sha256).hexdigest()[:32]

    def logged_in() -> bool:
        if not session.get("user"):
            return False
        expected = os.environ.get(PASSWORD_ENV)
        login_at = session.get("login_at")
        if (
            not expected
            or not isinstance(login_at, int | float)
            or time.time() - login_at > cfg.web.session_hours * 3600
            or not hmac.compare_digest(str(session.get("pw", "")), password_mark(expected))
        ):
            session.clear()  # expired, or the password changed since this login
            return False
        return True

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return str(session["csrf"])

    def requires_login_for_reads(view: Any) -> Any:
        @wraps(view)
        def wrapped(*a: Any, **kw: Any) -> Any:
            if reads_need_login and not logged_in():
                return _error(401, "login_required", "log in first")
            return view(*a, **kw)

        return wrapped

    @app.get("/")
    def index() -> ResponseReturnValue:
        if reads_need_login and not logged_in():
            return render_template("login.html", error=None), 200
        return render_template(
            "index.html", csrf=csrf_token(), logged_in=logged_in(),
            refresh=cfg.web.refresh_seconds, stale_after=cfg.web.stale_after,
            login_enabled=bool(os.environ.get(PASSWORD_ENV)),
        )

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"ok": True})

    @app.post("/login")
    def login() -> ResponseReturnValue:
        expected = os.environ.get(PASSWORD_ENV)
        if not expected:
            return _error(403, "login_disabled",
                          f"set {PASSWORD_ENV} in the environment to enable actions")
        addr = request.remote_addr or "?"
        wait = throttle.retry_after(addr, time.monotonic())
        if wait > 0:
            resp = jsonify({"ok": False, "error": {
                "code": "throttled", "message": f"too many failed logins: retry in {wait:.0f}s"}})
            resp.headers["Retry-After"] = str(max(1, round(wait)))
            return resp, 429
        body = request.get_json(silent=True)
        given = (body.get("password") if isinstance(body, dict) else None) or request.form.get(
            "password", "")
        # Bytes: compare_digest refuses non-ASCII str (a 500 found by the HTTP fuzz).
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(),
                                                                 expected.encode()):
            delay = throttle.failed(addr, time.monotonic())
            resp = jsonify({"ok": False, "error": {"code": "bad_password",
                                                   "message": "wrong password"}})
            resp.headers["Retry-After"] = str(max(1, round(delay)))
            return resp, 401
        throttle.succeeded(addr)
        session.clear()
        session.update(user="operator", login_at=time.time(), pw=password_mark(expected))
        return jsonify({"ok": True, "csrf": csrf_token()})

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        session.clear()
        return jsonify({"ok": True})

    @app.get("/api/<op>")
    @requires_login_for_reads
    def read(op: str) -> ResponseReturnValue:
        if op in ACTIONS:
            return _error(405, "method_not_allowed", f"{op} is an action: POST it")
        if op not in READ_OPS:
            return _error(404, "unknown_op", f"no such view: {op}")
        args: dict[str, Any] = {}
        if op == "alerts" and request.args.get("limit"):
            try:
                args["limit"] = int(request.args["limit"])
            except ValueError:
                return _error(400, "bad_args", "limit must be an integer")
        try:
            return jsonify({"ok": True, "data": engine.call(op, args)})
        except EngineUnreachable:
            return _error(503, "engine_unreachable", "engine unreachable")
        except EngineError as exc:
            return _error(400 if exc.code in ("bad_args", "bad_request") else 502, exc.code,
                          exc.message)

    @app.post("/api/<op>")
    def act(op: str) -> ResponseReturnValue:
        if op not in ACTIONS:
            return _error(405 if op in READ_OPS else 404, "unknown_action", f"no action {op}")
        if not logged_in():
            return _error(401, "login_required", "log in first")
        token = request.headers.get("X-CSRF-Token", "")
        if not token or not hmac.compare_digest(token.encode(),
                                                str(session.get("csrf", "")).encode()):
            return _error(403, "csrf", "missing or wrong CSRF token")
        try:
            engine_op, args = ACTION_OPS.get(op, (op, {}))
            return jsonify({"ok": True, "data": engine.call(engine_op, args, command=True)})
        except EngineUnreachable:
            return _error(503, "engine_unreachable", "engine unreachable")
        except EngineError as exc:
            return _error(409, exc.code, exc.message)

    return app
