"""The dashboard: a JSON API over the engine's ZeroMQ ops, and one page.

Reads are GETs under /api; every action is a POST that needs a login (password
from TRADING_BOT_WEB_PASSWORD, session cookie) and the session's CSRF token in
the X-CSRF-Token header. When the engine does not answer, the API says
"engine unreachable" (HTTP 503) instead of failing.
"""

from __future__ import annotations

import hmac
import os
import secrets
from functools import wraps
from typing import Any

from flask import Flask, jsonify, render_template, request, session
from flask.typing import ResponseReturnValue

from actors.config import Config
from actors.zmq_keys import curve_keys_dir
from web.engine_client import EngineClient, EngineError, EngineUnreachable

READ_OPS = ("status", "positions", "orders", "trades", "pnl_history", "alerts")
ACTIONS = ("enter_now", "pause", "resume", "repair_exits", "restart_gateway",
           "kill_switch_on", "kill_switch_off")
# Actions that are one engine op with fixed arguments.
ACTION_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "kill_switch_on": ("kill_switch", {"on": True}),
    "kill_switch_off": ("kill_switch", {"on": False}),
}
PASSWORD_ENV = "TRADING_BOT_WEB_PASSWORD"
SECRET_ENV = "TRADING_BOT_WEB_SECRET"


def _error(status: int, code: str, message: str) -> ResponseReturnValue:
    return jsonify({"ok": False, "error": {"code": code, "message": message}}), status


def create_app(cfg: Config, client: EngineClient | None = None) -> Flask:
    app = Flask(__name__)
    app.secret_key = os.environ.get(SECRET_ENV) or secrets.token_hex(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")
    engine = client or EngineClient(cfg.zmq, curve_keys_dir(cfg))

    def logged_in() -> bool:
        return bool(session.get("user"))

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return str(session["csrf"])

    def requires_login_for_reads(view: Any) -> Any:
        @wraps(view)
        def wrapped(*a: Any, **kw: Any) -> Any:
            if cfg.web.login_required_for_reads and not logged_in():
                return _error(401, "login_required", "log in first")
            return view(*a, **kw)

        return wrapped

    @app.get("/")
    def index() -> ResponseReturnValue:
        if cfg.web.login_required_for_reads and not logged_in():
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
        given = (request.get_json(silent=True) or {}).get("password") or request.form.get(
            "password", "")
        # Bytes: compare_digest refuses non-ASCII str (a 500 found by the HTTP fuzz).
        if not isinstance(given, str) or not hmac.compare_digest(given.encode(),
                                                                 expected.encode()):
            return _error(401, "bad_password", "wrong password")
        session.clear()
        session["user"] = "operator"
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
