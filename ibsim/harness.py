"""Run ibsim for tests and benchmarks: in-process on a thread, or as a subprocess.

    with IbsimThread(seed=7) as sim:        # or IbsimProcess(...)
        ib.connect("127.0.0.1", sim.port, clientId=1)
        sim.post("/market", {"spot": 580.0})
        sim.get_state()["open_orders"]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


_PORTS = random.Random()  # its own stream: a test that seeds `random` changes nothing here
_HANDED_OUT: set[int] = set()  # this process's draws: not bound yet, so a probe passes


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server that binds it a moment later (an
    engine or a gateway started with it in its config). Drawn outside the kernel's
    ephemeral range: a port from bind(0) is one the kernel also hands out as the local
    end of outgoing connections, and under load (a suite beside a soak) one of those
    took it before the server bound it ('Address already in use' for an engine's
    ZeroMQ port). Ours collide only with each other's draws, rarely, and never with a
    port in use when drawn."""
    low, high = _ephemeral_range()
    spans = [(r0, r1) for r0, r1 in ((10000, low), (high + 1, 65536)) if r1 - r0 >= 1000]
    for _ in range(100):
        if not spans:
            break
        r0, r1 = _PORTS.choices(spans, weights=[r1 - r0 for r0, r1 in spans])[0]
        port = _PORTS.randrange(r0, r1)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:  # no room outside the range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _flags(options: dict[str, Any]) -> list[str]:
    """Gateway settings as `python -m ibsim` flags: read_only=True -> --read-only,
    tick_mode="change" -> --tick-mode change, a list -> comma-joined."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out += [flag] if value else []
        elif isinstance(value, dict):  # market_data={"OPT": "none"} -> OPT=none
            out += [flag, ",".join(f"{k}={v}" for k, v in value.items())]
        elif value is not None:
            out += [flag, ",".join(map(str, value)) if isinstance(value, list | tuple)
                    else str(value)]
    return out


class ControlError(RuntimeError):
    pass


class _Control:
    host = "127.0.0.1"
    port = 0
    control_port = 0

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body or {}).encode() if method == "POST" else None
        req = urllib.request.Request(f"http://{self.host}:{self.control_port}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ControlError(f"{exc.code}: {exc.read().decode()}") from None

    def get_state(self) -> dict[str, Any]:
        return self._request("GET", "/state", None)

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._request("POST", path, body)

    def filled_while_away(self, **which: Any) -> dict[str, Any]:
        """"The sale filled while the engine was down, and the reset passed", in one call:
        the open orders named (order_ref=, order_ref_prefix=, perm_id=; none: all) fill
        now, then the clock moves past the next daily reset, after which IB reports the
        fills only as positions (POST /scenario/filled_while_away)."""
        return self.post("/scenario/filled_while_away", which)

    def _check_alive(self) -> None:
        """Raise if the simulator died (a subprocess that exited)."""

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get_state()
                return
            except (OSError, ControlError):
                self._check_alive()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


class IbsimThread(_Control):
    """The simulator on a background thread with its own event loop."""

    def __init__(self, seed: int = 1, spot: float = 600.0, account: str = "DU1234567",
                 state_file: str | None = None, tick_interval: float = 0.05,
                 now: str | None = None, port: int = 0, control_port: int = 0,
                 master_client_id: int | None = None, cash: float = 100_000.0,
                 ib_schedule: bool = False, fill_model: str = "kind", buyer_rate: float = 1.0,
                 spread: float = 0.025, **options: Any) -> None:
        # options: the Gateway's other settings (read_only, ...), as `python -m ibsim`
        # flags name them (IbsimProcess turns them into those flags).
        self.args = dict(seed=seed, spot=spot, account=account, state_file=state_file,
                         tick_interval=tick_interval, now=now, master_client_id=master_client_id,
                         cash=cash, ib_schedule=ib_schedule, fill_model=fill_model,
                         buyer_rate=buyer_rate, spread=spread, **options)
        # 0 = let the OS pick (read back after start): no race with other tests.
        self.port = port
        self.control_port = control_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="ibsim", daemon=True)
        self.sim: Any = None

    def start(self) -> IbsimThread:
        from ibsim.app import Simulator

        self.thread.start()
        self.sim = Simulator(port=self.port, control_port=self.control_port, **self.args)
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(10)
        self.port = self.sim.gateway.port
        self.control_port = self.sim.control.port
        return self

    def call(self, fn: Any) -> Any:
        """Run `fn(gateway)` on the simulator's loop (direct access for tests)."""

        async def run() -> Any:
            return fn(self.sim.gateway)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def stop(self) -> None:
        if self.sim is not None:
            asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self) -> IbsimThread:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class IbsimProcess(_Control):
    """`python -m ibsim` as a subprocess on free ports (state file in a temp dir)."""

    def __init__(self, seed: int = 1, spot: float = 600.0, account: str = "DU1234567",
                 state_file: str | None = None, tick_interval: float = 0.05,
                 now: str | None = None, port: int = 0, control_port: int = 0,
                 log_path: str | None = None, cash: float | None = None,
                 ib_schedule: bool = False, fill_model: str = "kind", buyer_rate: float = 1.0,
                 spread: float = 0.025, **options: Any) -> None:
        self._fixed_ports = bool(port or control_port)
        self.port = port or free_port()
        self.control_port = control_port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="ibsim-")
        self.state_file = state_file or str(Path(self._tmp.name) / "ibsim-state.json")
        self.log_path = log_path or str(Path(self._tmp.name) / "ibsim.log")
        self.cmd = [sys.executable, "-m", "ibsim", "--port", str(self.port), "--control-port",
                    str(self.control_port), "--seed", str(seed), "--spot", str(spot),
                    "--account", account, "--state-file", self.state_file, "--tick-interval",
                    str(tick_interval)]
        if cash is not None:  # else --cash's default: env IBSIM_CASH or 100,000
            self.cmd += ["--cash", str(cash)]
        if ib_schedule:
            self.cmd.append("--ib-schedule")
        if fill_model != "kind":
            self.cmd += ["--fill-model", fill_model, "--buyer-rate", str(buyer_rate)]
        if spread != 0.025:
            self.cmd += ["--spread", str(spread)]
        if now:
            self.cmd += ["--now", now]
        self.cmd += _flags(options)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IbsimProcess:
        for attempt in range(3):
            log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                self.wait_ready()
                return self
            except (OSError, ControlError):
                if self.proc.poll() is None or attempt == 2 or self._fixed_ports:
                    raise
                # A free port taken meanwhile by someone else: try fresh ones.
                self.port, self.control_port = free_port(), free_port()
                self._set_ports()
        return self

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ControlError(f"ibsim exited with {self.proc.returncode}")

    def _set_ports(self) -> None:
        self.cmd[self.cmd.index("--port") + 1] = str(self.port)
        self.cmd[self.cmd.index("--control-port") + 1] = str(self.control_port)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> IbsimProcess:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
        self._tmp.cleanup()
