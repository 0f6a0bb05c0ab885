"""Issue 6: the dashboard API against a real engine on ibsim, and its security."""

from __future__ import annotations

from typing import Any

from config.loader import load_config
from tests.engine.test_lifecycle import enter_and_wait
from tests.support.zmq_request import wait_for_value
from tests.web.conftest import PASSWORD, Browserless

TWO_SLOTS = {
    "schedule": {"entry_times": ["15:00", "15:30"]},
    "strategy": {"strike_selection": "otm_distance", "otm_distance": 0.03},
}


def test_every_op_returns_the_books_figures(sim: Any, start_engine: Any, web_server: Any) -> None:
    eng = start_engine(TWO_SLOTS)
    sim.post("/market", {"spot": 601.0, "walk_sigma": 0.0})
    first = enter_and_wait(eng, 0)
    sim.post("/market", {"spot": 600.5})
    enter_and_wait(eng, 1)
    web = Browserless(web_server(eng.engine.cfg).url)
    for op in ("status", "positions", "orders", "trades", "pnl_history", "alerts"):
        code, body = web.request("GET", f"/api/{op}")
        assert code == 200 and body["ok"], (op, body)
    positions = wait_for_value(lambda: web.request("GET", "/api/positions")[1]["data"],
                               lambda d: all(lot["pnl"] is not None for lot in d["lots"]), 10,
                               "P&L of both lots")
    lots = positions["lots"]
    assert len(lots) == 2 and lots[0]["strike"] == lots[1]["strike"]
    assert lots[0]["pnl"] != lots[1]["pnl"]  # one strike, two entries, two figures
    assert positions["totals"]["pnl"] == round(sum(lot["pnl"] for lot in lots), 2)
    status = web.request("GET", "/api/status")[1]["data"]
    assert status["link"]["state"] == "READY" and status["open_lots"] == 2
    orders = web.request("GET", "/api/orders")[1]["data"]["orders"]
    assert {o["role"] for o in orders} == {"tp", "sl"} and len(orders) == 4
    assert any(o["lot_id"] == first.id for o in orders)


def test_actions_need_login_and_csrf_and_are_not_reachable_by_get(
    sim: Any, start_engine: Any, web_server: Any
) -> None:
    eng = start_engine()
    web = Browserless(web_server(eng.engine.cfg).url)
    assert web.request("GET", "/api/pause")[0] == 405
    assert web.request("POST", "/api/pause")[0] == 401
    assert web.request("POST", "/login", {"password": "wrong"})[0] == 401
    # The failed login throttles this address for a second (issue 18).
    code, body = wait_for_value(lambda: web.request("POST", "/login", {"password": PASSWORD}),
                                lambda r: r[0] != 429, 10, "login throttle over")
    assert code == 200
    assert web.request("POST", "/api/pause")[0] == 403  # no CSRF token
    assert web.request("POST", "/api/pause", headers={"X-CSRF-Token": "forged"})[0] == 403
    assert web.request("GET", "/api/status")[1]["data"]["paused"] is False  # nothing changed
    code, reply = web.request("POST", "/api/pause", headers={"X-CSRF-Token": body["csrf"]})
    assert code == 200 and reply["data"] == {"paused": True}
    assert web.request("GET", "/api/status")[1]["data"]["paused"] is True
    # The kill switch from the dashboard: on, then off again.
    code, reply = web.request("POST", "/api/kill_switch_on",
                              headers={"X-CSRF-Token": body["csrf"]})
    assert code == 200 and reply["data"] == {"kill_switch": True}
    assert web.request("GET", "/api/status")[1]["data"]["kill_switch"] is True
    web.request("POST", "/api/kill_switch_off", headers={"X-CSRF-Token": body["csrf"]})
    assert web.request("GET", "/api/status")[1]["data"]["kill_switch"] is False


def test_engine_unreachable_then_recovers(tmp_path: Any, web_server: Any) -> None:
    from ibsim.harness import free_port
    from wire.keys import ensure_keys, server_keys
    from wire.server import ZmqService

    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(f'[storage]\npath = "{tmp_path / "db.sqlite"}"\n'
                        f'[zmq]\nendpoint = "{endpoint}"\nrequest_timeout = 0.3\nretries = 1\n')
    cfg = load_config(cfg_file, environ={})
    web = Browserless(web_server(cfg).url)
    code, body = web.request("GET", "/api/status")
    assert code == 503 and body["error"]["code"] == "engine_unreachable"
    # The engine writes its keys at start; the dashboard picks them up without a restart.
    ensure_keys(tmp_path / "zmq-keys")
    service = ZmqService(endpoint, lambda op, args: {"link": {"state": "READY"}},
                         {"status"}, set(), curve=server_keys(tmp_path / "zmq-keys"))
    service.start()
    try:
        body = wait_for_value(lambda: web.request("GET", "/api/status")[1],
                              lambda b: b.get("ok"), 10, "engine back")
        assert body["data"]["link"]["state"] == "READY"
    finally:
        service.stop()
