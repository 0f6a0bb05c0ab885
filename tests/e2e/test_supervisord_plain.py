"""Issue 18: supervisord.conf as operators type it, from the project root, with a clean
environment (`env -i PATH=… HOME=…`): no wrapper, nothing exported. The project root
is a copy (code and venv linked in) whose demo profile has free ports."""

from __future__ import annotations

import select
import subprocess
import time
from pathlib import Path

import pytest

from ibsim.harness import free_port
from tests.support.stack import ROOT, project_root
from tests.support.zmq_request import wait_until, zmq_request

PROGRAMS = {"alert-listener", "engine", "ibsim", "web"}


def demo_root(tmp: Path) -> tuple[Path, dict[str, int]]:
    """A project root whose config/ is a copy (profiles and loader), the demo profile's
    ports made free."""
    root = project_root(tmp)
    (root / "config").unlink()
    (root / "config").mkdir()
    for f in [*(ROOT / "config").glob("*.toml"), *(ROOT / "config").glob("*.py")]:
        (root / "config" / f.name).write_text(f.read_text())
    scripts = root / "scripts"
    if not scripts.exists():
        scripts.symlink_to(ROOT / "scripts")
    ports = {"gateway": free_port(), "control": free_port(), "zmq": free_port(),
             "web": free_port()}
    demo = (root / "config" / "demo.toml").read_text()
    for old, new in (("port = 4002", f"port = {ports['gateway']}"),
                     ("control_port = 4010", f"control_port = {ports['control']}"),
                     ("tcp://127.0.0.1:5557", f"tcp://127.0.0.1:{ports['zmq']}"),
                     ("port = 8080", f"port = {ports['web']}")):
        assert old in demo, old
        demo = demo.replace(old, new)
    (root / "config" / "demo.toml").write_text(demo)
    return root, ports


def clean_env(tmp: Path) -> dict[str, str]:
    # What `env -i PATH=… HOME=…` leaves: the venv's bin on PATH, nothing else.
    return {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp)}


def run(root: Path, env: dict[str, str], *cmd: str, timeout: float = 60) -> str:
    out = subprocess.run(list(cmd), cwd=root, env=env, capture_output=True, text=True,
                         timeout=timeout)
    return out.stdout + out.stderr


def statuses(root: Path, env: dict[str, str]) -> dict[str, str]:
    lines = [ln.split() for ln in run(root, env, "supervisorctl", "status").splitlines()]
    return {p[0]: p[1] for p in lines if len(p) > 1 and p[0] in PROGRAMS}


def engine_pid(root: Path, env: dict[str, str]) -> int:
    return int(run(root, env, "supervisorctl", "pid", "engine").strip())


@pytest.mark.slow(seconds=14, reason="supervisord and supervisorctl as an operator types them")
def test_supervisord_and_supervisorctl_as_typed_with_a_clean_environment(
    tmp_path: Path,
) -> None:
    root, ports = demo_root(tmp_path)
    env = clean_env(tmp_path)
    out = subprocess.run(["supervisord", "-c", "supervisord.conf"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    try:
        wait_until(lambda: statuses(root, env) == dict.fromkeys(PROGRAMS, "RUNNING"), 60, 0.5,
                   "every demo program RUNNING")
        # The engine wrote its CURVE keys beside the demo's SQLite file (run/).
        keys = root / "run" / "zmq-keys"
        endpoint = f"tcp://127.0.0.1:{ports['zmq']}"
        wait_until(lambda: zmq_request(endpoint, "status", timeout=5, keys_dir=keys)["data"]
                   ["link"]["state"] == "READY", 60, 0.5, "engine READY on the demo's ibsim")
        # The healthcheck loads the same keys.
        health = subprocess.run([".venv/bin/python", "-m", "ops.healthcheck",
                                 "config/demo.toml"], cwd=root, env=env, capture_output=True,
                                text=True, timeout=30)
        assert health.returncode == 0 and "engine ok" in health.stdout, health
        old = engine_pid(root, env)
        restarted = run(root, env, "supervisorctl", "restart", "engine")
        assert "engine: started" in restarted, restarted
        assert engine_pid(root, env) != old
        # `tail -f engine` follows the engine's log.
        tail = subprocess.Popen(["supervisorctl", "tail", "-f", "engine"], cwd=root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            seen = b""
            deadline = time.monotonic() + 30
            while b"engine started" not in seen and time.monotonic() < deadline:
                assert tail.stdout is not None
                ready, _, _ = select.select([tail.stdout], [], [], 1.0)
                if ready:
                    seen += tail.stdout.read1(65536)  # type: ignore[attr-defined]
            assert b"engine started" in seen, seen[-2000:]
        finally:
            tail.kill()
            tail.wait(10)
    finally:
        run(root, env, "supervisorctl", "shutdown")
        wait_until(lambda: not (root / "run" / "supervisord.pid").exists(), 60, 0.5,
                   "supervisord gone")


@pytest.mark.slow(seconds=9, reason="runs make demo")
def test_make_demo_prints_plain_supervisorctl_commands(tmp_path: Path) -> None:
    root, ports = demo_root(tmp_path)
    env = {**clean_env(tmp_path), "TRADING_BOT_WEB_PASSWORD": "demo-pw-123"}
    try:
        out = run(root, env, "bash", "scripts/demo.sh", timeout=120)
        assert f"http://127.0.0.1:{ports['web']}/" in out, out
        assert "supervisorctl status" in out and "supervisorctl tail -f engine" in out
        assert "supervisord-env.sh" not in out  # no wrapper needed
        wait_until(lambda: statuses(root, env) == dict.fromkeys(PROGRAMS, "RUNNING"), 60, 0.5,
                   "demo programs RUNNING")
    finally:
        run(root, env, "bash", "scripts/demo.sh", "stop")
        wait_until(lambda: not (root / "run" / "supervisord.pid").exists(), 60, 0.5,
                   "demo stopped")
