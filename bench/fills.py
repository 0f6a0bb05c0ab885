"""What the sale's limit walk earns over a market order: the real engine (a process)
sells a put on ibsim for each of N seeded entries (spot drawn from the seed, held
still during the entry); a bare ib_insync client on a second ibsim of the same seed
and spot sells the same contract with a MKT order (the baseline), after reading its
bid and ask. Figure: (mean walk price - mean MKT price) / mean half-spread.

ibsim fills a resting sell limit when the tick's traded price (a seeded point inside
the spread, drawn again every tick) reaches it, so the walk's result depends on how
many ticks each step waits: the default here keeps the default profile's ratio
(limit_walk_interval 2 s against option quotes about every 250 ms: 8 ticks a step).

    python -m bench.fills [--entries 200] [--seed 1] [--tick-interval 0.01]
                          [--ticks-per-step 8]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from ib_insync import IB, Contract, MarketOrder

from bench.common import (
    Row,
    ZmqClient,
    engine_config,
    engine_ready,
    enter,
    entries_profile,
    manual_slots,
    pct,
    poll,
    report,
    start_engine,
    stop,
    workdir,
)
from ibsim.harness import IbsimProcess, free_port

NOW = "2026-11-24T10:00:00-05:00"
TICKS_PER_STEP = 8  # the default profile's: a 2 s step over ~250 ms option quotes
PACE = 0.03  # between baseline orders: under ib_insync's 45 requests/s throttle


def spots(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [round(600.0 + rng.uniform(-15.0, 15.0), 2) for _ in range(n)]


def engine_sales(sim: Any, tmp: Path, spot_list: list[float], walk_interval: float) -> \
        dict[int, dict[str, Any]]:
    """Run one engine entry per spot; return the sale executions by entry number."""
    n = len(spot_list)
    slots = manual_slots(n)
    zmq_ep = f"tcp://127.0.0.1:{free_port()}"
    cfg = engine_config(tmp, sim.port, zmq_ep, entries_profile(NOW, slots, walk_interval))
    engine = start_engine(cfg)
    client = ZmqClient(zmq_ep, timeout=10)
    try:
        poll(lambda: engine_ready(client), 60, 0.05)
        for slot, spot in zip(slots, spot_list, strict=True):
            enter(sim, client, slot, {"spot": spot, "walk_sigma": 0.0}, 0.01)
    finally:
        client.close()
        stop(engine)
    by_slot: dict[str, dict[str, Any]] = {}
    for e in sim.get_state()["executions"]:
        parts = e["order_ref"].split(":")
        if len(parts) == 5 and parts[3] == "sale":
            # tb:<date>:<HHMM>:sale:<attempt>; a later attempt replaces an earlier one
            by_slot[f"{parts[2][:2]}:{parts[2][2:]}"] = e
    return {slots.index(k): v for k, v in by_slot.items()}


def baseline_sales(port: int, sales: list[tuple[float, int]], sim: Any) -> \
        list[tuple[float, float, float]]:
    """For each (spot, con_id): bid, ask and the MKT sell's fill price on this ibsim."""
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=78, timeout=10)
    out = []
    try:
        for spot, con_id in sales:
            sim.post("/market", {"spot": spot, "walk_sigma": 0.0})
            contract = Contract(conId=con_id, exchange="SMART")
            ib.qualifyContracts(contract)
            ticker = ib.reqMktData(contract, "", False, False)
            deadline = time.monotonic() + 5
            # The first complete quote after the spot was set (tickers update in place).
            while not (ticker.bid and ticker.ask and ticker.bid > 0) and \
                    time.monotonic() < deadline:
                ib.waitOnUpdate(timeout=1)
            ib.sleep(0.05)  # a few ticks at the new spot: the quote settles
            bid, ask = ticker.bid, ticker.ask
            trade = ib.placeOrder(contract, MarketOrder("SELL", 1, orderRef="bench:mkt"))
            while not trade.isDone() and time.monotonic() < deadline:
                ib.waitOnUpdate(timeout=1)
            if trade.orderStatus.status != "Filled":
                raise RuntimeError(f"baseline MKT not filled: {trade.orderStatus}")
            out.append((bid, ask, trade.orderStatus.avgFillPrice))
            ib.cancelMktData(contract)
            ib.sleep(PACE)
    finally:
        ib.disconnect()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.fills")
    ap.add_argument("--entries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tick-interval", type=float, default=0.01)
    ap.add_argument("--ticks-per-step", type=int, default=TICKS_PER_STEP)
    args = ap.parse_args(argv)
    walk_interval = args.tick_interval * args.ticks_per_step
    spot_list = spots(args.seed, args.entries)
    t0 = time.perf_counter()
    with workdir() as tmp, \
            IbsimProcess(seed=args.seed, now=NOW, tick_interval=args.tick_interval) as sim, \
            IbsimProcess(seed=args.seed, now=NOW, tick_interval=args.tick_interval) as base:
        sold = engine_sales(sim, Path(tmp), spot_list, walk_interval)
        filled = sorted(sold)  # entries whose sale filled
        market = baseline_sales(base.port, [(spot_list[i], sold[i]["con_id"]) for i in filled],
                                base)
    walk = [sold[i]["price"] for i in filled]
    mkt = [m[2] for m in market]
    half = [(m[1] - m[0]) / 2 for m in market]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    kept = (mean(walk) - mean(mkt)) / mean(half) if half else float("nan")
    per_entry = [(w - m) / h for w, m, h in zip(walk, mkt, half, strict=True) if h > 0]
    rows = [
        Row("entries filled (walk)", len(walk), "count"),
        Row("mean half-spread", mean(half), "$"),
        Row("baseline: mean MKT sale price", mean(mkt), "$"),
        Row("mean walk sale price", mean(walk), "$"),
        Row("half-spread kept (of means)", kept * 100, "%", ">= 30%", kept >= 0.30),
        Row("half-spread kept p50 per entry", pct(per_entry, 50) * 100, "%"),
        Row("half-spread kept p10 per entry", pct(per_entry, 10) * 100, "%"),
        Row("run time", time.perf_counter() - t0, "s"),
    ]
    report("fills", rows, [
        f"seed {args.seed}: spots drawn in 600 +/- 15; tick interval {args.tick_interval}s, "
        f"walk step every {walk_interval:.3f}s ({args.ticks_per_step} ticks; the default "
        f"profile's 2 s over ~250 ms quotes is {TICKS_PER_STEP})",
        "the walk starts at the mid rounded up to the tick, so a fill at once can keep over "
        "100%; ibsim trades at a seeded point across the spread each tick",
        "baseline on a second ibsim of the same seed and spot: a MKT SELL of the same "
        "contract by a bare ib_insync client",
    ])


if __name__ == "__main__":
    main()
