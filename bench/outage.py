"""How fast the engine sees an outage, tells it, and recovers.

ibsim (a process) sends error 1100 on `/fault/outage`; the figure is the time from
that control call to the engine's ZeroMQ `status` reporting the link not READY
(DOWN), and to the `link_down` alert arriving at a loopback webhook sink; then
`/fault/outage_end` with 1102 -> READY; then `/restart` (sockets dropped, the gateway
back after 1 s) -> READY, counted past the gateway's return (run last); flapping (issues
15 and 34): series of `--flaps` (10 and 30) 1 s outages (2110, then 1102) 0.5 s apart,
the status sampled every 10 ms: the engine process must live, never READY from 20 ms
after an outage starts to its restore, READY again after each, quickly (the restore
lands on the live socket: a flap is shorter than `watchdog.restart_grace`, so no
Connection restart races it; counted as the engine's new sockets at ibsim).

Baselines, measured in the same run: one raw ZeroMQ round trip (REQ -> echo ROUTER
process) of the same request; and a bare ib_insync client (its own process, on the
same ibsim) that notes the time each 1102 reaches it: the engine's 1102 -> READY is
given beside the bare client's 1102 -> seen, over the same restores.

    python -m bench.outage [--outages 20] [--restarts 5] [--flaps 10,30]
                           [--restart-grace S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack

from bench.common import (
    MEASURED,
    POLL,
    Row,
    ZmqClient,
    close_to,
    echo_server,
    engine_config,
    limited_by,
    pct,
    poll,
    raw_round_trips,
    report,
    start_engine,
    stop,
    workdir,
)
from config.schema import WatchdogConfig
from ibsim.harness import IbsimProcess, free_port
from tests.support.webhook_sink import WebhookSink

NOW = "2026-11-24T11:00:00-05:00"
ENGINE_ID = 1  # the engine's gateway.client_id (the shipped default)
BARE_ID = 62
FLAP_SECONDS, FLAP_GAP = 1.0, 0.5  # the fault's shape (issue 34)
# The bare client: prints "ready", then one JSON line [wall time, code] per error
# event with reqId -1 (1100, 2110, 1101, 1102 ...) the moment its loop sees it.
BARE = r"""
import json, sys, time
from ib_insync import IB
ib = IB()
def seen(req_id, code, msg, contract):
    if req_id == -1:
        print(json.dumps([time.time(), code]), flush=True)
ib.errorEvent += seen
ib.connect("127.0.0.1", int(sys.argv[1]), clientId=int(sys.argv[2]), timeout=10)
print("ready", flush=True)
ib.run()
"""


class BareClient:
    """The baseline client's process and the link codes it has seen, with their times."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", BARE, str(port), str(BARE_ID)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        self.seen: list[tuple[float, int]] = []
        for line in self.proc.stdout:  # the connect's farm codes (2104 ...) come first
            if line.strip() == "ready":
                break
        else:
            self.proc.wait(5)
            raise RuntimeError("bare client did not connect")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, code = json.loads(line)
            self.seen.append((float(t), int(code)))

    def first(self, code: int, after: float, timeout: float = 10.0) -> float:
        """Wall time of the first `code` seen at or after `after`."""
        return float(poll(lambda: next((t for t, c in list(self.seen)
                                        if c == code and t >= after), None), timeout))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def engine_sockets(sim: Any) -> int:
    """The engine's sockets at ibsim so far (open and closed: its last 100 clients)."""
    return sum(1 for c in sim.get("/stats")["clients"] if c.get("client_id") == ENGINE_ID)


def flap_series(sim: Any, state: Any, bare: BareClient, flaps: int,
                engine: subprocess.Popen[bytes]) -> dict[str, Any]:
    """`flaps` outages of FLAP_SECONDS (2110, then 1102) FLAP_GAP apart."""
    ready, bare_ready, ready_inside, exited = [], [], 0, False
    sockets_before = engine_sockets(sim)
    for _ in range(flaps):
        t0 = time.perf_counter()
        sim.post("/fault/outage", {"seconds": 3600, "code": 2110, "restore_code": 1102})
        while time.perf_counter() - t0 < FLAP_SECONDS:  # sample the outage every 10 ms
            if time.perf_counter() - t0 > 0.02 and state() == "READY":
                ready_inside += 1
            time.sleep(0.01)
        wall, t1 = time.time(), time.perf_counter()
        sim.post("/fault/outage_end", {})
        poll(lambda: state() == "READY", 30)
        ready.append(time.perf_counter() - t1)
        bare_ready.append(bare.first(1102, wall) - wall)
        exited = exited or engine.poll() is not None
        time.sleep(FLAP_GAP)  # the gap between flaps (the fault's shape)
    return {"ready": ready, "bare": bare_ready, "inside": ready_inside, "exited": exited,
            "restarts": engine_sockets(sim) - sockets_before}


def flap_rows(n: int, f: dict[str, Any], grace: str) -> list[Row]:
    ms = 1000.0
    ready, bare = f["ready"], f["bare"]
    rows = [Row(f"flapping x{n}: bare client 1102 seen p50", pct(bare, 50) * ms, "ms"),
            Row(f"flapping x{n}: bare client 1102 seen p99", pct(bare, 99) * ms, "ms")]
    for p in (50, 99):
        rows.append(Row(f"flapping x{n}: 1102 -> READY p{p}", pct(ready, p) * ms, "ms",
                        *(("<= 50 ms", pct(ready, p) <= 0.050) if p == 99 else ()),
                        limit=limited_by(not close_to(pct(ready, p), pct(bare, p), 0.2),
                                         "as fast as the bare client's 1102") if p == 99
                        else ""))
        rows.append(Row(f"flapping x{n}: READY p{p} / bare 1102 p{p}",
                        pct(ready, p) / pct(bare, p), "x"))
    rows += [
        Row(f"flapping x{n}: Connection restarts (outages < grace {grace})", f["restarts"],
            "", "0 (bare client: 0)", f["restarts"] == 0, limit=MEASURED),
        Row(f"flapping x{n}: READY samples inside an outage", f["inside"], "", "0",
            f["inside"] == 0, limit=MEASURED),
        Row(f"flapping x{n}: engine exited", int(f["exited"]), "", "0", not f["exited"],
            limit=MEASURED),
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.outage")
    ap.add_argument("--outages", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--flaps", default="10,30",
                    help="flapping series, outages in each (comma list; empty: none)")
    ap.add_argument("--restart-grace", type=float, default=None,
                    help="watchdog.restart_grace for the engine (default: the shipped one;"
                         " 0: a restart backoff_initial after each loss, before issue 34)")
    ap.add_argument("--verbose", action="store_true", help="print every sample")
    args = ap.parse_args(argv)
    series = [int(x) for x in args.flaps.split(",") if x.strip()]
    echo_ep = f"tcp://127.0.0.1:{free_port()}"
    stop_echo = echo_server(echo_ep)
    request = msgpack.packb({"v": 1, "id": "b1", "op": "status", "args": {}})
    watchdog: dict[str, Any] = {"market_data_silence": 0.0}
    if args.restart_grace is not None:
        watchdog["restart_grace"] = args.restart_grace
    shipped = WatchdogConfig().restart_grace
    grace = f"{shipped if args.restart_grace is None else args.restart_grace:g} s"
    with workdir() as tmp, WebhookSink() as sink, \
            IbsimProcess(seed=3, now=NOW, tick_interval=0.05,
                         tick_mode="change") as sim:  # IB's rhythm: event latencies
        zmq_ep = f"tcp://127.0.0.1:{free_port()}"
        cfg = engine_config(Path(tmp), sim.port, zmq_ep, {
            "gateway": {"client_id": ENGINE_ID},
            "alerts": {"coalesce_window": 0.0, "retry_initial": 0.05},
            "clock": {"start": NOW},
            "watchdog": watchdog,
        })
        (Path(tmp) / "engine.toml").write_text(
            (Path(tmp) / "engine.toml").read_text()
            + f'\n[[alerts.webhooks]]\nurl = "{sink.url}"\nformat = "json"\n')
        engine = start_engine(cfg)
        client = ZmqClient(zmq_ep, timeout=1.0)
        bare: BareClient | None = None
        try:
            bare = BareClient(sim.port)
            def state() -> str:
                try:
                    return str(client.ask("status")["link"]["state"])
                except TimeoutError:
                    return "UNREACHABLE"

            poll(lambda: state() == "READY", 60, 0.05)
            base = raw_round_trips(echo_ep, request, 500)
            down, alert, ready, bare_ready = [], [], [], []
            for _ in range(args.outages):
                alerts_before = len(sink.bodies("link_down"))
                t0 = time.perf_counter()
                sim.post("/fault/outage", {"seconds": 3600, "restore_code": 1102})
                poll(lambda: state() != "READY", 10)
                down.append(time.perf_counter() - t0)
                poll(lambda n=alerts_before: len(sink.bodies("link_down")) > n, 10)
                alert.append(time.perf_counter() - t0)
                wall, t1 = time.time(), time.perf_counter()
                sim.post("/fault/outage_end", {})
                poll(lambda: state() == "READY", 10)
                ready.append(time.perf_counter() - t1)
                bare_ready.append(bare.first(1102, wall) - wall)
            flapping = []
            for n in series:
                poll(lambda: state() == "READY", 30)
                flapping.append((n, flap_series(sim, state, bare, n, engine)))
            # Last: the gateway restarts end every socket, the bare client's too.
            restart = []
            for _ in range(args.restarts):
                t0 = time.perf_counter()
                sim.post("/restart", {"seconds": 1})
                back = t0 + 1.0  # the gateway accepts connections again
                poll(lambda: state() != "READY", 10)
                poll(lambda: state() == "READY", 30)
                restart.append(time.perf_counter() - back)
        finally:
            if bare is not None:
                bare.close()
            client.close()
            stop(engine)
            stop_echo()
    ms = 1000.0
    if args.verbose:
        print("down", [round(x * ms, 1) for x in down])
        print("ready", [round(x * ms, 1) for x in ready])
        for n, f in flapping:
            print(f"flapping x{n} ready", [round(x * ms, 1) for x in f["ready"]])
            print(f"flapping x{n} bare", [round(x * ms, 1) for x in f["bare"]])
    rows = [
        Row("baseline raw zmq round trip p50", pct(base, 50) * ms, "ms"),
        Row("baseline raw zmq round trip p99", pct(base, 99) * ms, "ms"),
        Row("baseline bare client 1102 seen p50", pct(bare_ready, 50) * ms, "ms"),
        Row("baseline bare client 1102 seen p99", pct(bare_ready, 99) * ms, "ms"),
        Row("1100 -> DOWN p50", pct(down, 50) * ms, "ms"),
        Row("1100 -> DOWN p99", pct(down, 99) * ms, "ms", "<= 50 ms", pct(down, 99) <= 0.050,
            limit=limited_by(not close_to(pct(down, 99), pct(base, 99), 0.2),
                             "as fast as the raw zmq round trip of the status poll")),
        Row("1100 -> alert at sink p50", pct(alert, 50) * ms, "ms"),
        Row("1100 -> alert at sink p99", pct(alert, 99) * ms, "ms", "<= 500 ms",
            pct(alert, 99) <= 0.5, limit=MEASURED),
        Row("1102 -> READY p50", pct(ready, 50) * ms, "ms"),
        Row("1102 -> READY p99", pct(ready, 99) * ms, "ms", "<= 200 ms", pct(ready, 99) <= 0.2,
            limit=limited_by(not close_to(pct(ready, 99), pct(bare_ready, 99), 0.2),
                             "as fast as the bare client's 1102")),
        Row("1102 -> READY p99 / bare 1102 p99", pct(ready, 99) / pct(bare_ready, 99), "x"),
        Row("restart -> READY past return max", max(restart) * ms, "ms", "<= 2000 ms",
            max(restart) <= 2.0, limit=MEASURED),
        Row("DOWN p50 / raw round trip p50", pct(down, 50) / pct(base, 50), "x"),
    ]
    for n, f in flapping:
        rows += flap_rows(n, f, grace)
    report("outage", rows, [
        f"{args.outages} outages, {args.restarts} restarts, flapping series "
        f"{', '.join(map(str, series)) or 'none'} ({FLAP_SECONDS:g} s outages "
        f"{FLAP_GAP:g} s apart); watchdog.restart_grace {grace}; poll every "
        f"{POLL * 1000:.0f} ms; times include the control HTTP call (so do the bare "
        f"client's); restarts = the engine's new sockets at ibsim during the series"])


if __name__ == "__main__":
    main()
