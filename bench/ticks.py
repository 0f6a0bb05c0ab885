"""How many market-data messages (SPY and option ticks) the engine absorbs per second
from ibsim while keeping its quotes fresh: the engine (a process) holds a few lots so
SPY and their options stream; ibsim's tick interval is cut to a few milliseconds.
Figures: messages/s received by the engine's API client, and the lag from a ticker's
decoding to MarketData applying it (p50/p99, from the `market_data` op). Baseline: a
bare ib_insync client (another process) on the same lines of the same ibsim, counted
over the same seconds.

    python -m bench.ticks [--seconds 10] [--tick-interval 0.001] [--lots 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    ROOT,
    Row,
    ZmqClient,
    engine_config,
    engine_ready,
    open_streaming_lots,
    poll,
    report,
    start_engine,
    stop,
    streaming_profile,
    workdir,
)
from ibsim.harness import IbsimProcess, free_port

NOW = "2026-11-24T11:00:00-05:00"
BARE = r"""
import json, sys, time
from ib_insync import IB, Contract
port, seconds, con_ids = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
ib = IB(); ib.connect("127.0.0.1", port, clientId=61, timeout=10)
for c in con_ids:
    contract = Contract(conId=c, exchange="SMART")
    ib.qualifyContracts(contract)
    ib.reqMktData(contract, "", False, False)
ib.sleep(1.0)
start = ib.client.connectionStats().numMsgRecv
t0 = time.perf_counter()
ib.sleep(seconds)
n = ib.client.connectionStats().numMsgRecv - start
print(json.dumps({"messages_per_s": n / (time.perf_counter() - t0)}), flush=True)
ib.disconnect()
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.ticks")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tick-interval", type=float, default=0.001)
    ap.add_argument("--lots", type=int, default=10)
    args = ap.parse_args(argv)
    with workdir() as tmp, IbsimProcess(seed=9, now=NOW, tick_interval=0.05) as sim:
        zmq_ep = f"tcp://127.0.0.1:{free_port()}"
        slots = [f"12:{i:02d}" for i in range(args.lots)]
        cfg = engine_config(Path(tmp), sim.port, zmq_ep, streaming_profile(NOW, slots))
        engine = start_engine(cfg)
        client = ZmqClient(zmq_ep, timeout=10)
        try:
            poll(lambda: engine_ready(client), 60, 0.05)
            open_streaming_lots(sim, client, slots, args.tick_interval)
            lines = client.ask("market_data")["lines"]
            bare = subprocess.Popen(
                [sys.executable, "-c", BARE, str(sim.port), str(args.seconds), json.dumps(lines)],
                cwd=ROOT, stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)  # the bare client subscribes and waits 1 s too: same window
            before = client.ask("market_data")
            t0 = time.perf_counter()
            time.sleep(args.seconds)  # the measurement window, not a wait for a result
            after = client.ask("market_data")
            elapsed = time.perf_counter() - t0
            out, _ = bare.communicate(timeout=60)
            subs = {c["client_id"]: c["subscriptions"] for c in sim.get_state()["clients"]}
            bare_rate = json.loads(out.strip().splitlines()[-1])["messages_per_s"]
        finally:
            client.close()
            stop(engine)
    rate = (after["messages_received"] - before["messages_received"]) / elapsed
    ratio = rate / bare_rate if bare_rate else float("nan")
    rows = [
        Row("bare ib_insync client messages/s", bare_rate, "msg/s"),
        Row("engine messages/s", rate, "msg/s", ">= 10,000", rate >= 10_000),
        Row("engine / bare client", ratio, "x", ">= 0.8x", ratio >= 0.8),
        Row("quote lag p50", after["quote_lag_ms_p50"], "ms"),
        Row("quote lag p99", after["quote_lag_ms_p99"], "ms", "< 100 ms",
            after["quote_lag_ms_p99"] < 100),
        Row("lines streaming (SPY + options)", len(lines), "count"),
        Row("engine subscriptions at ibsim", subs.get(1, 0), "count"),
    ]
    report("ticks", rows, [f"ibsim tick interval {args.tick_interval * 1000:.1f} ms, "
                           f"{args.seconds:.0f} s window; messages = tickPrice/tickSize/"
                           "tickOptionComputation frames, counted by each API client"])


if __name__ == "__main__":
    main()
