"""Issue 33 acceptance: gateway restarts that survive what happens meanwhile, under a real
supervisord started from supervisord.conf (ibsim as the gateway program)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from ops.gateway_restart import supervisor_proxy
from tests.support.stack import Stack
from tests.support.webhook_sink import WebhookSink
from tests.support.zmq_request import hold_for, wait_until

NOW = "2026-11-24T10:00:00-05:00"
ESCALATE_AFTER = 10.0


def make_stack(tmp: Path, sink: WebhookSink, **watchdog: Any) -> Stack:
    return Stack(tmp, sink.url, NOW, {
        "schedule": {"entry_times": ["15:00"]},
        "watchdog": {"gateway_restart": "supervisor", "market_data_silence": 0.0,
                     "escalate_after": ESCALATE_AFTER, "backoff_max": 1.0, **watchdog},
        "alerts": {"retry_initial": 0.1, "coalesce_window": 0.0},
    }, {"TRADING_BOT__CLOCK__START": f'"{NOW}"'})


def ready(stack: Stack) -> bool:
    try:
        return bool(stack.api("/api/status")["data"]["link"]["state"] == "READY")
    except OSError:
        return False


def ibsim_info(stack: Stack) -> dict[str, Any]:
    proxy = supervisor_proxy(f"unix://{stack.root}/run/supervisor.sock", 5)
    return dict(proxy.supervisor.getProcessInfo("ibsim"))


def new_engine_pid(stack: Stack, old: int) -> int:
    """Waits for supervisord's next engine process; returns its pid."""
    pid = 0

    def started() -> bool:
        nonlocal pid
        try:
            pid = stack.pid("engine")
        except ValueError:
            return False
        return pid not in (0, old)
    wait_until(started, 60, 0.05, "engine started again")
    return pid


def gateway_alerts(sink: WebhookSink) -> list[dict[str, Any]]:
    """The gateway_restart alerts the sink received, one per alert id: delivery is at
    least once (an engine killed after the webhook answered, before it marked the alert
    delivered, sends the same id again; README, Alerts), and receivers dedupe by id."""
    return list({body["id"]: body for body in sink.bodies("gateway_restart")}.values())


@pytest.mark.slow(seconds=25, reason="two engine kills and gateway restarts under supervisord")
def test_engine_killed_during_its_gateway_restart(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        stack = make_stack(tmp_path, sink)
        stack.start()
        try:
            wait_until(lambda: ready(stack), 90, 0.2, "engine READY")
            # 1. The Watchdog escalates (a logged-out gateway); the engine is killed the
            # moment supervisord shows the gateway restart under way.
            first = ibsim_info(stack)["pid"]
            stack.ibsim_post("/fault/logout", {"seconds": 600})
            stack.ibsim_post("/fault/drop", {})
            wait_until(lambda: (i := ibsim_info(stack))["pid"] != first
                       or i["statename"] != "RUNNING", 60, 0.01, "gateway restart begun")
            engine = stack.pid("engine")
            os.kill(engine, signal.SIGKILL)
            pid = new_engine_pid(stack, engine)
            t0 = time.monotonic()
            wait_until(lambda: ready(stack) and ibsim_info(stack)["statename"] == "RUNNING",
                       ESCALATE_AFTER, 0.1, "gateway RUNNING and link READY")
            assert ibsim_info(stack)["pid"] != first
            # One alert says what happened (the killed engine's, or the new engine's
            # when the kill came before it could send its own).
            sink.wait_for(lambda s: s.bodies("gateway_restart"), 20)
            hold_for(3.0, lambda: len(gateway_alerts(sink)) == 1 or pytest.fail(
                f"not one gateway_restart alert: {gateway_alerts(sink)}"), 0.2)
            assert time.monotonic() - t0 < 60

            # 2. What the old two-step restart left (issue 33's supervisord.log): the
            # engine's memory holds a restart awaiting a login, the gateway was stopped
            # (the first step) and the engine killed before the second.
            with sqlite3.connect(stack.db_path, timeout=10) as db:
                db.execute("INSERT INTO kv(key, value) VALUES ('watchdog_escalation', ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (json.dumps({"day": "2026-11-24", "restarts": 2,
                                        "awaiting_login": True, "login_alerted": False,
                                        "wait_since": time.time(),
                                        "restart_pending": True}),))
            supervisor_proxy(f"unix://{stack.root}/run/supervisor.sock", 5) \
                .supervisor.stopProcess("ibsim:ibsim", False)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: ibsim_info(stack)["statename"] == "STOPPED", 30, 0.05,
                       "gateway STOPPED")
            new_engine_pid(stack, pid)
            t0 = time.monotonic()
            wait_until(lambda: ready(stack) and ibsim_info(stack)["statename"] == "RUNNING",
                       ESCALATE_AFTER, 0.1, "gateway started again and link READY")
            sink.wait_for(lambda s: len(s.bodies("gateway_restart")) >= 2, 20)
            hold_for(3.0, lambda: len(gateway_alerts(sink)) == 2 or pytest.fail(
                f"not one more gateway_restart alert: {gateway_alerts(sink)}"), 0.2)
            said = gateway_alerts(sink)[1]["message"]
            assert "was left STOPPED" in said and "started" in said, said
            # Not a login wait: the gateway ran again and no login was asked for.
            assert not sink.bodies("login_required")
        finally:
            stack.stop()


@pytest.mark.slow(seconds=22, reason="spends the day's restart budget under supervisord")
def test_a_gateway_stopped_by_hand_is_started_within_the_budget(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        stack = make_stack(tmp_path, sink, max_gateway_restarts=1)
        stack.start()
        try:
            wait_until(lambda: ready(stack), 90, 0.2, "engine READY")
            stack.ctl("stop", "ibsim")
            # Seen and started by the engine, long before escalate_after would end a wait.
            sink.wait_for(lambda s: s.bodies("gateway_restart"), 30)
            wait_until(lambda: ready(stack) and ibsim_info(stack)["statename"] == "RUNNING",
                       60, 0.1, "gateway started and link READY")
            said = gateway_alerts(sink)[0]["message"]
            assert "was STOPPED" in said and "supervisord started" in said, said
            assert not sink.bodies("login_required")
            # The day's one restart is spent: stopped again, it says so and waits.
            stack.ctl("stop", "ibsim")
            sink.wait_for(lambda s: len(s.bodies("gateway_restart")) >= 2, 30)
            said = gateway_alerts(sink)[1]["message"]
            assert "restarts are spent" in said and "STOPPED" in said, said
            hold_for(ESCALATE_AFTER + 2, lambda: ibsim_info(stack)["statename"] == "STOPPED"
                 or pytest.fail("started beyond the budget"), 0.2)
            assert len(gateway_alerts(sink)) == 2
            assert not sink.bodies("login_required")  # a stopped gateway awaits no login
            stack.ctl("start", "ibsim")  # the operator
            wait_until(lambda: ready(stack), 60, 0.1, "READY after the operator's start")
        finally:
            stack.stop()
