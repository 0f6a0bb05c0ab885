"""Shared pieces of the benchmarks: percentiles, the report, a test-profile config,
an engine subprocess and polling at a fixed resolution."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ibsim.harness import free_port
from tests.support.stack import render_toml

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.001  # seconds between polls of a latency figure: its resolution
# The engine's ZeroMQ is CURVE-secured: endpoint -> the keys folder its engine writes.
ENGINE_KEYS: dict[str, Path] = {}
# Benches hold many short puts at once: an account large enough that IB's pre-trade
# margin check (ibsim rejects a sale past the available funds, 201) never bites.
os.environ.setdefault("IBSIM_CASH", "100000000")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


@dataclass
class Row:
    figure: str
    value: float
    unit: str
    goal: str = ""
    met: bool | None = None  # None: a figure without a goal (a baseline, a count)
    # What bounded the figure: "measured" (the thing under test) or "harness: why"
    # (the load generator or the baseline hit its own ceiling first). Set beside goals.
    limit: str = ""


MEASURED = "measured"  # the figure is bounded by the thing under test


def fsync_times(directory: Path, n: int = 100) -> list[float]:
    """Seconds per fsync of a 4 KiB append in `directory` (where the bench's book is):
    the price of each durable commit on this disk, to scale a figure to another one."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    out = []
    try:
        for _ in range(n):
            os.write(fd, b"\0" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            out.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        path.unlink()
    return out


def limited_by(measured: bool, why: str) -> str:
    """The `limit` of a figure: the thing measured, or the harness and why."""
    return "measured" if measured else f"harness: {why}"


def close_to(a: float, b: float, within: float = 0.05) -> bool:
    """a within `within` (relative) of b: a measured figure equal to its baseline says
    both hit the same ceiling (the harness), not that they are as fast."""
    return abs(a - b) <= within * max(abs(a), abs(b), 1e-12)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "host": platform.node()}


def machine_line() -> str:
    """The machine a figure was measured on, in words: figures only compare on it."""
    m = machine()
    return f"{m['cpus']} CPUs, {m['cpu'] or 'cpu unknown'}, Python {m['python']}, host {m['host']}"


def report(name: str, rows: list[Row], notes: list[str] | None = None) -> dict[str, Any]:
    """Print the table and the JSON line; return the JSON object."""
    width = max(len(r.figure) for r in rows) + 2
    print(f"\n== bench.{name} == on {machine_line()}")
    print(f"{'figure':<{width}}{'value':>12}  {'unit':<8}{'goal':<22}{'met':<5}limited by")
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.figure:<{width}}{r.value:>12.3f}  {r.unit:<8}{r.goal:<22}{met:<5}{r.limit}")
    for n in notes or []:
        print(f"  note: {n}")
    out = {
        "bench": name,
        "figures": {r.figure: round(r.value, 4) for r in rows},
        "goals_met": {r.figure: r.met for r in rows if r.met is not None},
        "limited_by": {r.figure: r.limit for r in rows if r.limit},
        "notes": notes or [],
        "machine": machine(),
        "units": {r.figure: r.unit for r in rows},
        "goals": {r.figure: r.goal for r in rows if r.goal},
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    line = json.dumps(out, sort_keys=True)
    print("BENCH_JSON " + line)
    results = os.environ.get("BENCH_RESULTS")
    if results:  # `make bench` collects every script's figures for the README's table
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        with open(results, "a") as f:
            f.write(line + "\n")
    return out


def poll(predicate: Callable[[], Any], timeout: float, interval: float = POLL) -> Any:
    """Poll until truthy; the time it took is the caller's figure (resolution `interval`)."""
    deadline = time.perf_counter() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.perf_counter() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s")
        time.sleep(interval)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    path.write_text(render_toml(sections))
    return path


def engine_config(tmp: Path, gateway_port: int, zmq_endpoint: str,
                  extra: dict[str, dict[str, Any]] | None = None) -> Path:
    """A paper profile against ibsim with the schedule out of the way (CURVE keys in
    `tmp/zmq-keys`, written by the engine, which ZmqClient loads)."""
    ENGINE_KEYS[zmq_endpoint] = tmp / "zmq-keys"
    sections: dict[str, dict[str, Any]] = {
        "gateway": {"port": gateway_port, "connect_timeout": 3.0, "request_timeout": 5.0},
        "storage": {"path": str(tmp / "book.sqlite")},
        "zmq": {"endpoint": zmq_endpoint},
        "schedule": {"entry_times": ["15:59"], "repair_interval": 3600.0},
        "watchdog": {"market_data_silence": 0.0},
        "logging": {"level": os.environ.get("BENCH_LOG_LEVEL", "WARNING")},
    }
    for k, v in (extra or {}).items():
        sections.setdefault(k, {}).update(v)
    return write_config(tmp / "engine.toml", sections)


def start_engine(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = open(config.parent / "engine.log", "ab")  # noqa: SIM115 - the child writes it
    return subprocess.Popen([sys.executable, "-m", "actors", "--config", str(config)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ZmqClient:
    """A REQ client kept open between polls (a new socket per poll would be the cost
    measured); on a timeout the socket is replaced, as the Lazy Pirate pattern does."""

    def __init__(self, endpoint: str, timeout: float = 2.0,
                 keys_dir: Path | None = None) -> None:
        import zmq

        self.zmq = zmq
        self.endpoint, self.timeout = endpoint, timeout
        self.keys_dir = keys_dir or ENGINE_KEYS.get(endpoint)
        self.ctx = zmq.Context.instance()
        self.sock = self._open()
        self.n = 0

    def _open(self) -> Any:
        s = self.ctx.socket(self.zmq.REQ)
        s.setsockopt(self.zmq.LINGER, 0)
        if self.keys_dir is not None:
            curve_client(s, self.keys_dir)
        s.connect(self.endpoint)
        return s

    def ask(self, op: str, args: dict[str, Any] | None = None) -> Any:
        import msgpack

        self.n += 1
        self.sock.send(msgpack.packb({"v": 1, "id": f"b{self.n}", "op": op, "args": args or {}}))
        if not self.sock.poll(int(self.timeout * 1000)):
            self.sock.close()
            self.sock = self._open()
            raise TimeoutError(f"{op}: no reply in {self.timeout}s")
        reply = msgpack.unpackb(self.sock.recv(), raw=False)
        if not reply.get("ok"):
            raise RuntimeError(f"{op}: {reply.get('error')}")
        return reply["data"]

    def close(self) -> None:
        self.sock.close()


def engine_ready(client: ZmqClient) -> bool:
    """The engine answers and its link is READY."""
    try:
        return bool(client.ask("status")["link"]["state"] == "READY")
    except TimeoutError:
        return False


def entry_over(client: ZmqClient, slot: str) -> bool:
    """The day's entry for `slot` has ended, done or failed."""
    slots = client.ask("status")["entry"]["slots"]
    return next(s["state"] for s in slots if s["slot"] == slot) in ("done", "failed")


def manual_slots(n: int) -> list[str]:
    """n entry slots from 11:00 on: on a clock held at 10:00 only enter_now sells."""
    return [f"{11 + i // 60:02d}:{i % 60:02d}" for i in range(n)]


def entries_profile(now: str, slots: list[str],
                    walk_interval: float = 0.05) -> dict[str, dict[str, Any]]:
    """Engine config for benches that sell many entries by hand: the clock held at
    `now`, a strike 2 % out of the money three days out, risk limits out of the way."""
    return {
        "clock": {"start": now, "speed": 0.001},
        "schedule": {"entry_times": slots},
        "strategy": {"expiry_rule": "nearest_dte", "strike_selection": "otm_distance",
                     "otm_distance": 0.02, "limit_walk_interval": walk_interval,
                     "target_dte": 3},
        "risk": {"max_open_lots": 10_000, "max_contracts_per_day": 10_000,
                 "max_short_notional": 1e12},
        "zmq": {"command_max_age": 60.0},
    }


def enter(sim: Any, client: ZmqClient, slot: str, market: dict[str, Any],
          interval: float = 0.02) -> None:
    """Set ibsim's market, sell the slot by hand and wait until its entry is over."""
    sim.post("/market", market)
    reply = client.ask("enter_now", {"slot": slot})
    if not reply["accepted"]:
        raise RuntimeError(f"entry {slot} refused: {reply}")
    poll(lambda: entry_over(client, slot), 30, interval)


def sell_by_hand(sim: Any, tmp: Path, now: str, spot_list: list[float],
                 walk_interval: float = 0.05, interval: float = 0.02,
                 after: Callable[[float], None] | None = None,
                 extra: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """One engine (a process) on `sim` with its clock held at `now`: a hand entry per
    spot (held still during the entry), `after(seconds)` run after each with the time
    it took; `extra` config sections on top (e.g. logging). Returns the slots sold."""
    slots = manual_slots(len(spot_list))
    zmq_ep = f"tcp://127.0.0.1:{free_port()}"
    sections = entries_profile(now, slots, walk_interval)
    for k, v in (extra or {}).items():
        sections.setdefault(k, {}).update(v)
    cfg = engine_config(tmp, sim.port, zmq_ep, sections)
    engine = start_engine(cfg)
    client = ZmqClient(zmq_ep, timeout=10)
    try:
        poll(lambda: engine_ready(client), 60, 0.05)
        for slot, spot in zip(slots, spot_list, strict=True):
            t = time.perf_counter()
            enter(sim, client, slot, {"spot": spot, "walk_sigma": 0.0}, interval)
            if after is not None:
                after(time.perf_counter() - t)
    finally:
        client.close()
        stop(engine)
    return slots


def streaming_profile(now: str, slots: list[str]) -> dict[str, dict[str, Any]]:
    """Engine config for benches that hold open lots so their puts stream: a clock held
    at `now` (only enter_now sells), exits far away (the lots stay open while spot steps
    up per entry), risk limits out of the way."""
    return {
        "clock": {"start": now, "speed": 0.001},
        "schedule": {"entry_times": slots},
        # The weekly put 3% below spot these benches were measured with.
        "strategy": {"expiry_rule": "nearest_dte", "target_dte": 7,
                     "strike_selection": "otm_distance", "otm_distance": 0.03,
                     "limit_walk_interval": 0.05,
                     "take_profit_ratio": 0.05, "stop_loss_ratio": 20.0},
        "risk": {"max_open_lots": 100, "max_contracts_per_day": 100,
                 "max_short_notional": 1e12},
        "zmq": {"command_max_age": 60.0},
    }


def open_streaming_lots(sim: Any, client: ZmqClient, slots: list[str],
                        tick_interval: float) -> None:
    """One real entry per slot, spot a dollar higher each (a strike each), then spot
    held (no exit fills, no line closes) while quotes tick every `tick_interval`."""
    for i, slot in enumerate(slots):
        enter(sim, client, slot, {"spot": 600.0 + i, "walk_sigma": 0.00008})
    sim.post("/market", {"spot": 600.0 + len(slots), "walk_sigma": 0.0,
                         "tick_interval": tick_interval})


def curve_client(sock: Any, keys_dir: Path, wait: float = 60.0) -> None:
    """Give `sock` the client keys from `keys_dir`, waiting for an engine that is
    starting to write them."""
    from wire.keys import KeysError, apply_client, client_keys

    deadline = time.monotonic() + wait
    while True:
        try:
            apply_client(sock, client_keys(keys_dir))
            return
        except KeysError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def echo_server(endpoint: str, keys_dir: Path | None = None) -> Callable[[], None]:
    """A raw ZeroMQ ROUTER that returns each request as it came: the baseline of every
    ZeroMQ figure. With `keys_dir` (written here if missing) it is a CURVE server, the
    baseline of the engine's CURVE cost. Runs in a child process; returns a function
    that stops it."""
    code = (
        "import sys, zmq, zmq.auth\n"
        "ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER)\n"
        "if len(sys.argv) > 2:\n"
        "    pub, sec = zmq.auth.load_certificate(sys.argv[2] + '/server.key_secret')\n"
        "    s.curve_publickey, s.curve_secretkey, s.curve_server = pub, sec, True\n"
        "s.bind(sys.argv[1])\n"
        "while True:\n"
        "    s.send_multipart(s.recv_multipart())\n"
    )
    extra: list[str] = []
    if keys_dir is not None:
        from wire.keys import ensure_keys

        ensure_keys(keys_dir)
        extra = [str(keys_dir)]
    proc = subprocess.Popen([sys.executable, "-c", code, endpoint, *extra])

    def stop_echo() -> None:
        proc.kill()
        proc.wait(5)

    return stop_echo


def raw_round_trips(endpoint: str, payload: bytes, n: int) -> list[float]:
    """n REQ round trips of `payload` against an echo server, in seconds each."""
    import zmq

    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    out = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            s.send(payload)
            s.recv()
            out.append(time.perf_counter() - t)
    finally:
        s.close()
    return out


class workdir:
    """A temp dir, kept (and its path printed) when BENCH_KEEP=1, for the engine's log."""

    def __enter__(self) -> str:
        import tempfile

        self.keep = os.environ.get("BENCH_KEEP") == "1"
        self.path = tempfile.mkdtemp(prefix="bench-")
        return self.path

    def __exit__(self, *_: Any) -> None:
        import shutil

        if self.keep:
            print(f"work dir kept: {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def engine_log_lines(log: Path) -> list[tuple[float, str]]:
    """The engine's JSON log (`[logging] format = "json"`) as (wall-clock time, message)
    per line; lines that are not its JSON (a child's stray output) are skipped."""
    lines: list[tuple[float, str]] = []
    for raw in log.read_text().splitlines():
        try:
            rec = json.loads(raw)
            lines.append((datetime.fromisoformat(rec["time"]).timestamp(), rec["message"]))
        except (ValueError, KeyError, TypeError):
            continue
    return lines
