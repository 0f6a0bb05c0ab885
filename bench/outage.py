"""How fast the engine sees an outage, tells it, and recovers.

ibsim (a process) sends error 1100 on `/fault/outage`; the figure is the time from
that control call to the engine's ZeroMQ `status` reporting the link not READY
(DOWN), and to the `link_down` alert arriving at a loopback webhook sink; then
`/fault/outage_end` with 1102 -> READY; then `/restart` (sockets dropped, the gateway
back after 1 s) -> READY, counted past the gateway's return; then flapping (issue 15):
`--flaps` 1 s outages (2110, then 1102) 0.5 s apart, the status sampled every 10 ms:
the engine process must live, never READY from 20 ms after an outage starts to its
restore, READY again after each. Baseline: one raw ZeroMQ round trip (REQ -> echo
ROUTER process) of the same request.

    python -m bench.outage [--outages 20] [--restarts 5] [--flaps 10]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
from ibsim.harness import IbsimProcess, free_port
from tests.support.webhook_sink import WebhookSink

NOW = "2026-11-24T11:00:00-05:00"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.outage")
    ap.add_argument("--outages", type=int, default=20)
    ap.add_argument("--restarts", type=int, default=5)
    ap.add_argument("--flaps", type=int, default=10)
    ap.add_argument("--verbose", action="store_true", help="print every sample")
    args = ap.parse_args(argv)
    echo_ep = f"tcp://127.0.0.1:{free_port()}"
    stop_echo = echo_server(echo_ep)
    request = msgpack.packb({"v": 1, "id": "b1", "op": "status", "args": {}})
    with workdir() as tmp, WebhookSink() as sink, \
            IbsimProcess(seed=3, now=NOW, tick_interval=0.05,
                         tick_mode="change") as sim:  # IB's rhythm: event latencies
        zmq_ep = f"tcp://127.0.0.1:{free_port()}"
        cfg = engine_config(Path(tmp), sim.port, zmq_ep, {
            "alerts": {"coalesce_window": 0.0, "retry_initial": 0.05},
            "clock": {"start": NOW},
        })
        (Path(tmp) / "engine.toml").write_text(
            (Path(tmp) / "engine.toml").read_text()
            + f'\n[[alerts.webhooks]]\nurl = "{sink.url}"\nformat = "json"\n')
        engine = start_engine(cfg)
        client = ZmqClient(zmq_ep, timeout=1.0)
        try:
            def state() -> str:
                try:
                    return str(client.ask("status")["link"]["state"])
                except TimeoutError:
                    return "UNREACHABLE"

            poll(lambda: state() == "READY", 60, 0.05)
            base = raw_round_trips(echo_ep, request, 500)
            down, alert, ready = [], [], []
            for _ in range(args.outages):
                alerts_before = len(sink.bodies("link_down"))
                t0 = time.perf_counter()
                sim.post("/fault/outage", {"seconds": 3600, "restore_code": 1102})
                poll(lambda: state() != "READY", 10)
                down.append(time.perf_counter() - t0)
                poll(lambda n=alerts_before: len(sink.bodies("link_down")) > n, 10)
                alert.append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                sim.post("/fault/outage_end", {})
                poll(lambda: state() == "READY", 10)
                ready.append(time.perf_counter() - t1)
            restart = []
            for _ in range(args.restarts):
                t0 = time.perf_counter()
                sim.post("/restart", {"seconds": 1})
                back = t0 + 1.0  # the gateway accepts connections again
                poll(lambda: state() != "READY", 10)
                poll(lambda: state() == "READY", 30)
                restart.append(time.perf_counter() - back)
            flap_ready, ready_inside, exited = [], 0, False
            for _ in range(args.flaps):
                t0 = time.perf_counter()
                sim.post("/fault/outage", {"seconds": 3600, "code": 2110, "restore_code": 1102})
                while time.perf_counter() - t0 < 1.0:  # sample the outage every 10 ms
                    if time.perf_counter() - t0 > 0.02 and state() == "READY":
                        ready_inside += 1
                    time.sleep(0.01)
                t1 = time.perf_counter()
                sim.post("/fault/outage_end", {})
                poll(lambda: state() == "READY", 30)
                flap_ready.append(time.perf_counter() - t1)
                exited = exited or engine.poll() is not None
                time.sleep(0.5)  # the gap between flaps (the fault's shape)
        finally:
            client.close()
            stop(engine)
            stop_echo()
    ms = 1000.0
    if args.verbose:
        print("down", [round(x * ms, 1) for x in down])
        print("ready", [round(x * ms, 1) for x in ready])
    rows = [
        Row("baseline raw zmq round trip p50", pct(base, 50) * ms, "ms"),
        Row("baseline raw zmq round trip p99", pct(base, 99) * ms, "ms"),
        Row("1100 -> DOWN p50", pct(down, 50) * ms, "ms"),
        Row("1100 -> DOWN p99", pct(down, 99) * ms, "ms", "<= 50 ms", pct(down, 99) <= 0.050,
            limit=limited_by(not close_to(pct(down, 99), pct(base, 99), 0.2),
                             "as fast as the raw zmq round trip of the status poll")),
        Row("1100 -> alert at sink p50", pct(alert, 50) * ms, "ms"),
        Row("1100 -> alert at sink p99", pct(alert, 99) * ms, "ms", "<= 500 ms",
            pct(alert, 99) <= 0.5, limit=MEASURED),
        Row("1102 -> READY p50", pct(ready, 50) * ms, "ms"),
        Row("1102 -> READY p99", pct(ready, 99) * ms, "ms", "<= 200 ms", pct(ready, 99) <= 0.2,
            limit=MEASURED),
        Row("restart -> READY past return max", max(restart) * ms, "ms", "<= 2000 ms",
            max(restart) <= 2.0, limit=MEASURED),
        Row("DOWN p50 / raw round trip p50", pct(down, 50) / pct(base, 50), "x"),
    ]
    if flap_ready:
        rows += [
            Row("flapping: 1102 -> READY p99", pct(flap_ready, 99) * ms, "ms", "<= 200 ms",
                pct(flap_ready, 99) <= 0.2, limit=MEASURED),
            Row("flapping: READY samples inside an outage", ready_inside, "", "0",
                ready_inside == 0, limit=MEASURED),
            Row("flapping: engine exited", int(exited), "", "0", not exited, limit=MEASURED),
        ]
    report("outage", rows, [f"{args.outages} outages, {args.restarts} restarts, "
                            f"{args.flaps} flaps; poll every "
                            f"{POLL * 1000:.0f} ms; times include the control HTTP call"])


if __name__ == "__main__":
    main()
