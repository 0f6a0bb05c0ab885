"""Issue 7 acceptance: the whole system under a real supervisord from supervisord.conf."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ibsim.harness import free_port
from tests.support.webhook_sink import WebhookSink
from tests.support.zmq_request import wait_for_value, wait_until, zmq_request

ROOT = Path(__file__).resolve().parents[2]
NOW = "2026-11-24T10:00:00-05:00"


class Stack:
    def __init__(self, tmp: Path, sink: WebhookSink) -> None:
        self.tmp = tmp
        self.ibsim_port, self.control_port = free_port(), free_port()
        self.zmq = f"tcp://127.0.0.1:{free_port()}"
        self.web_port = free_port()
        cfg = tmp / "stack.toml"
        cfg.write_text(f"""
[gateway]
port = {self.ibsim_port}
connect_timeout = 3.0
[storage]
path = "{tmp / 'book.sqlite'}"
[zmq]
endpoint = "{self.zmq}"
[web]
port = {self.web_port}
[schedule]
entry_times = ["15:00"]
[strategy]
limit_walk_interval = 0.2
[watchdog]
gateway_restart = "supervisor"
market_data_silence = 0.0
escalate_after = 4.0
backoff_max = 2.0
[alerts]
retry_initial = 0.1
coalesce_window = 1.0
[[alerts.webhooks]]
url = "{sink.url}"
format = "json"
""")
        self.env = {
            **os.environ,
            "TB_PYTHON": sys.executable, "TB_RUN_DIR": str(tmp / "run"),
            "TB_LOG_DIR": str(tmp / "logs"), "TB_SOCKET": str(tmp / "run" / "sv.sock"),
            "TB_IBSIM_PORT": str(self.ibsim_port), "TB_IBSIM_CONTROL_PORT":
            str(self.control_port), "TB_IBSIM_NOW": NOW, "TB_START_IBSIM": "true",
            "TRADING_BOT_CONFIG": str(cfg), "TRADING_BOT__CLOCK__START": f'"{NOW}"',
            "SUPERVISOR_USER": "ops", "SUPERVISOR_PASSWORD": "pw-for-tests",
            "TRADING_BOT_WEB_PASSWORD": "web-pw", "PYTHONPATH": str(ROOT),
        }

    def start(self) -> None:
        subprocess.run([str(ROOT / "scripts" / "supervisord-env.sh")], env=self.env, check=True,
                       cwd=ROOT, timeout=30)

    def ctl(self, *args: str) -> str:
        out = subprocess.run([str(ROOT / "scripts" / "supervisord-env.sh"), "ctl", *args],
                             env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        return out.stdout

    def statuses(self) -> dict[str, str]:
        lines = [ln.split() for ln in self.ctl("status").splitlines() if ln.strip()]
        return {p[0]: p[1] for p in lines if len(p) > 1}

    def pid(self, name: str) -> int:
        return int(self.ctl("pid", name).strip())

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def ibsim_state(self) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control_port}/state",
                                    timeout=5) as r:
            return json.loads(r.read())

    def ibsim_post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}",
                                     data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.ctl("shutdown")


def _api_ok(stack: Stack, path: str) -> Any:
    try:
        return stack.api(path)
    except OSError:
        return None


@pytest.mark.slow
def test_whole_stack_under_supervisord(tmp_path: Path) -> None:
    with WebhookSink() as sink:
        stack = Stack(tmp_path, sink)
        stack.start()
        try:
            wait_until(lambda: set(stack.statuses().values()) == {"RUNNING"}
                       and len(stack.statuses()) == 4, 60, 0.2, "all programs RUNNING")
            wait_until(lambda: (s := _api_ok(stack, "/api/status")) and
                       s["data"]["link"]["state"] == "READY", 60, 0.2, "engine READY")
            reply = zmq_request(stack.zmq, "enter_now", sent_at=time.time())
            assert reply["ok"] and reply["data"]["accepted"], reply
            lots = wait_for_value(lambda: stack.api("/api/positions")["data"]["lots"],
                                  lambda ls: len(ls) == 1 and ls[0]["protected"], 60,
                                  "a protected lot on the dashboard")
            # kill -9 of the engine: supervisord restarts it, nothing is lost or sold twice.
            old = stack.pid("engine")
            os.kill(old, signal.SIGKILL)
            sink.wait_for(lambda s: s.bodies("process_crashed"), 30)
            wait_until(lambda: stack.statuses().get("engine") == "RUNNING"
                       and stack.pid("engine") != old, 60, 0.2, "engine restarted")
            after = wait_for_value(lambda: _api_ok(stack, "/api/positions"),
                                   lambda r: r and r["data"]["lots"] and
                                   r["data"]["lots"][0]["protected"], 60, "lot after restart")
            assert [lot["id"] for lot in after["data"]["lots"]] == [lots[0]["id"]]
            sales = [e for e in stack.ibsim_state()["executions"] if e["side"] == "SLD"]
            assert len(sales) == 1
            exits = [o for o in stack.ibsim_state()["open_orders"] if o["action"] == "BUY"]
            assert len(exits) == 2 and exits[0]["oca_group"] == exits[1]["oca_group"]
            # The dashboard restarts on its own command.
            assert "web: started" in stack.ctl("restart", "web")
            wait_until(lambda: _api_ok(stack, "/healthz"), 30, 0.2, "dashboard back")
            # The login button's gateway restart goes through supervisord's XML-RPC.
            ibsim_pid = stack.pid("ibsim")
            reply = zmq_request(stack.zmq, "restart_gateway", sent_at=time.time(),
                                timeout=40)
            assert reply["ok"] and reply["data"]["started"], reply
            assert stack.pid("ibsim") != ibsim_pid
            wait_until(lambda: (s := _api_ok(stack, "/api/status")) and
                       s["data"]["link"]["state"] == "READY", 60, 0.2, "READY after restart")
            # A gateway logged out (waiting for 2FA) past escalate_after: the Watchdog
            # restarts the gateway program through supervisord by itself.
            ibsim_pid = stack.pid("ibsim")
            stack.ibsim_post("/fault/logout", {"seconds": 600})
            stack.ibsim_post("/fault/drop", {})
            wait_until(lambda: stack.statuses().get("ibsim") == "RUNNING"
                       and stack.pid("ibsim") != ibsim_pid, 60, 0.2, "gateway restarted")
            wait_until(lambda: (s := _api_ok(stack, "/api/status")) and
                       s["data"]["link"]["state"] == "READY", 60, 0.2, "READY after escalation")
            wanted = {"link_down", "gateway_restart", "login_required", "link_restored"}
            sink.wait_for(lambda s: wanted <= {b["kind"] for b in s.bodies()}, 30)
        finally:
            stack.stop()
