"""The whole system under a real supervisord started from supervisord.conf:
ibsim (with a state file), the engine, the dashboard and the alert listener.
Used by the end-to-end test and the chaos soak."""

from __future__ import annotations

import json
import os
import subprocess
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


def project_root(tmp: Path) -> Path:
    """A project root of its own for a test: the code, config and venv linked in, a copy
    of supervisord.conf (so that %(here)s, and with it run/, is under `tmp`)."""
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("actors", "trading", "book", "wire", "alerts", "ops", "web", "ibsim", "config",
                 "scripts", ".venv"):
        link = root / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    (root / "supervisord.conf").write_text((ROOT / "supervisord.conf").read_text())
    (root / "run").mkdir(exist_ok=True)
    return root


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
            # supervisord's ibsim program reads its ports and clock from here.
            "ibsim": {"enabled": True, "control_port": self.control_port, "now": now,
                      "state_file": str(tmp / "run" / "ibsim-state.json")},
        }
        for name, values in (overrides or {}).items():
            sections.setdefault(name, {}).update(values)
        sections["webhooks"] = {"sink": {"url": sink_url, "format": "json"}}
        self.config = tmp / "stack.toml"
        self.config.write_text(render_toml(sections))
        self.root = project_root(tmp)
        self.bin = ROOT / ".venv" / "bin"
        # supervisord.conf needs nothing exported: the profile and overrides only.
        self.env = {
            **os.environ,
            "TRADING_BOT_CONFIG": str(self.config),
            "TRADING_BOT_WEB_PASSWORD": "web-pw",
            **(env or {}),
        }

    def start(self) -> None:
        # The convenience wrapper, run from the copied root.
        wrapper = self.root / "scripts" / "supervisord-env.sh"
        if not wrapper.exists():
            wrapper.parent.mkdir(exist_ok=True)
            wrapper.symlink_to(ROOT / "scripts" / "supervisord-env.sh")
        subprocess.run(["bash", str(self.root / "scripts" / "supervisord-env.sh")],
                       env=self.env, check=True, cwd=self.root, timeout=30)

    def ctl(self, *args: str) -> str:
        out = subprocess.run([str(self.bin / "supervisorctl"), *args], env=self.env,
                             cwd=self.root, capture_output=True, text=True, timeout=60)
        return out.stdout

    def statuses(self) -> dict[str, str]:
        lines = [ln.split() for ln in self.ctl("status").splitlines() if ln.strip()]
        return {p[0]: p[1] for p in lines if len(p) > 1}

    def pid(self, name: str) -> int:
        """The program's pid; ValueError while it is not running. supervisorctl answers
        "0" then, and os.kill(0, SIGKILL) kills the caller's whole process group (a
        soak's kill landing in a restart took itself and a `make test` beside it down)."""
        pid = int(self.ctl("pid", name).strip())
        if pid <= 0:
            raise ValueError(f"{name} is not running (supervisorctl pid: {pid})")
        return pid

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
