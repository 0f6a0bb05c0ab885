"""The whole system under a real supervisord started from supervisord.conf:
ibsim (with a state file), the engine, the dashboard and the alert listener.
Used by the end-to-end test and the chaos soak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from ibsim.harness import free_port
from tests.support.zmq_request import engine_keys_dir, use_keys

ROOT = Path(__file__).resolve().parents[2]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # a TOML basic string: JSON's escapes, DEL escaped too
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def render_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        if name == "webhooks":
            for hook in values.values():
                lines.append("[[alerts.webhooks]]")
                lines += [f"{k} = {toml_value(x)}" for k, x in hook.items()]
            continue
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(x)}" for k, x in values.items()]
    return "\n".join(lines) + "\n"


class Stack:
    def __init__(self, tmp: Path, sink_url: str, now: str,
                 overrides: dict[str, dict[str, Any]] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.ibsim_port, self.control_port = free_port(), free_port()
        self.zmq = f"tcp://127.0.0.1:{free_port()}"
        self.web_port = free_port()
        self.db_path = tmp / "book.sqlite"
        use_keys(self.zmq, engine_keys_dir(self.db_path))  # the engine writes them at start
        sections: dict[str, dict[str, Any]] = {
            "gateway": {"port": self.ibsim_port, "connect_timeout": 3.0},
            "storage": {"path": str(self.db_path)},
            "zmq": {"endpoint": self.zmq},
            "web": {"port": self.web_port},
        }
        for name, values in (overrides or {}).items():
            sections.setdefault(name, {}).update(values)
        sections["webhooks"] = {"sink": {"url": sink_url, "format": "json"}}
        self.config = tmp / "stack.toml"
        self.config.write_text(render_toml(sections))
        self.env = {
            **os.environ,
            "TB_PYTHON": sys.executable, "TB_RUN_DIR": str(tmp / "run"),
            "TB_LOG_DIR": str(tmp / "logs"), "TB_SOCKET": str(tmp / "run" / "sv.sock"),
            "TB_IBSIM_PORT": str(self.ibsim_port),
            "TB_IBSIM_CONTROL_PORT": str(self.control_port),
            "TB_IBSIM_NOW": now, "TB_START_IBSIM": "true",
            "TRADING_BOT_CONFIG": str(self.config),
            "SUPERVISOR_USER": "ops", "SUPERVISOR_PASSWORD": "pw-for-tests",
            "TRADING_BOT_WEB_PASSWORD": "web-pw", "PYTHONPATH": str(ROOT),
            **(env or {}),
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
