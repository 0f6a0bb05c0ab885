"""What the sale's limit walk earns over a market order, on a market that does not
flatter a patient seller: ibsim's `--fill-model buyers` (a sell limit inside the
spread fills only when an arriving buyer pays it; ibsim/fills.py). For each arrival
rate the real engine (a process) sells a put for each of N seeded entries (spot drawn
from the seed, held still during the entry); a bare ib_insync client on a second
ibsim of the same seed and spot sells the same contract with a MKT order (the
baseline), after reading its bid and ask. Figures per rate: (mean walk price - mean
MKT price) / mean half-spread, and the time to fill in walk steps.

Rates are buyers per walk step (ibsim gets rate / step seconds): with the default
profile's 2 s step, 0.1 a step is a buyer every 20 s. `--fill-model kind` runs the
old generous model instead (a seeded fair price each tick fills the mid in a few ticks).

    python -m bench.fills [--entries 30] [--rates 0.1,0.5,2] [--seed 1]
                          [--tick-interval 0.01] [--ticks-per-step 8] [--spread 0.025]
                          [--fill-model buyers]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from ib_insync import IB, Contract, MarketOrder

from bench.common import Row, close_to, limited_by, pct, report, sell_by_hand, workdir
from ibsim.harness import IbsimProcess

NOW = "2026-11-24T10:00:00-05:00"
TICKS_PER_STEP = 8  # the default profile's: a 2 s step over ~250 ms option quotes
PACE = 0.03  # between baseline orders: under ib_insync's 45 requests/s throttle


def spots(seed: int, n: int) -> list[float]:
    rng = random.Random(seed)
    return [round(600.0 + rng.uniform(-15.0, 15.0), 2) for _ in range(n)]


def engine_sales(sim: Any, tmp: Path, spot_list: list[float], walk_interval: float,
                 took: list[float]) -> dict[int, dict[str, Any]]:
    """Run one engine entry per spot; return the sale executions by entry number (and
    each entry's time from enter_now to its end in `took`)."""
    slots = sell_by_hand(sim, tmp, NOW, spot_list, walk_interval, 0.005,
                         took.append)
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


def run_rate(args: argparse.Namespace, rate: float, spot_list: list[float],
             walk_interval: float) -> dict[str, float]:
    """One arrival rate (buyers per walk step): the walk against MKT on fresh ibsims."""
    kw: dict[str, Any] = dict(seed=args.seed, now=NOW, tick_interval=args.tick_interval,
                              fill_model=args.fill_model, buyer_rate=rate / walk_interval,
                              spread=args.spread,
                              # IB's rhythm: fills do not depend on which ticks are sent.
                              tick_mode="change")
    took: list[float] = []
    with workdir() as tmp, IbsimProcess(**kw) as sim, IbsimProcess(**kw) as base:
        sold = engine_sales(sim, Path(tmp), spot_list, walk_interval, took)
        filled = sorted(sold)  # entries whose sale filled
        market = baseline_sales(base.port, [(spot_list[i], sold[i]["con_id"]) for i in filled],
                                base)
    walk = [sold[i]["price"] for i in filled]
    mkt = [m[2] for m in market]
    half = [(m[1] - m[0]) / 2 for m in market]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    kept = (mean(walk) - mean(mkt)) / mean(half) if half else float("nan")
    per_entry = [(w - m) / h for w, m, h in zip(walk, mkt, half, strict=True) if h > 0]
    steps = [t / walk_interval for t in took]
    return {"filled": len(walk), "half": mean(half), "mkt": mean(mkt), "walk": mean(walk),
            "kept": kept, "p10": pct(per_entry, 10), "fill_p50": pct(steps, 50),
            "fill_p90": pct(steps, 90), "fill_s_p50": pct(took, 50)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.fills")
    ap.add_argument("--entries", type=int, default=30, help="entries per arrival rate")
    ap.add_argument("--rates", default="0.1,0.5,2", help="buyers per walk step")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tick-interval", type=float, default=0.01)
    ap.add_argument("--ticks-per-step", type=int, default=TICKS_PER_STEP)
    ap.add_argument("--spread", type=float, default=0.025,
                    help="an option's half-spread as a share of its price")
    ap.add_argument("--fill-model", choices=("buyers", "kind"), default="buyers")
    args = ap.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    walk_interval = args.tick_interval * args.ticks_per_step
    spot_list = spots(args.seed, args.entries)
    t0 = time.perf_counter()
    rows: list[Row] = []
    for rate in rates:
        r = run_rate(args, rate, spot_list, walk_interval)
        tag = f"{rate:g} buyers/step"
        # The walk's price equal to MKT's: no buyer reached any step (the model's
        # arrivals bound the figure), or the walk is not working at all.
        lim = limited_by(args.fill_model == "buyers" and not close_to(r["walk"], r["mkt"], 1e-4),
                         "kind fill model fills the mid for free" if args.fill_model == "kind"
                         else "walk = MKT: no buyer reached a step")
        rows += [
            Row(f"{tag}: entries filled", r["filled"], "count"),
            Row(f"{tag}: baseline mean MKT price", r["mkt"], "$"),
            Row(f"{tag}: mean walk price", r["walk"], "$"),
            Row(f"{tag}: half-spread kept", r["kept"] * 100, "%", ">= 30%",
                r["kept"] >= 0.30, limit=lim),
            Row(f"{tag}: kept p10 per entry", r["p10"] * 100, "%"),
            Row(f"{tag}: time to fill p50", r["fill_p50"], "steps"),
            Row(f"{tag}: time to fill p90", r["fill_p90"], "steps"),
        ]
    rows += [Row("mean half-spread (last rate)", r["half"], "$"),
             Row("run time", time.perf_counter() - t0, "s")]
    report("fills", rows, [
        f"fill model {args.fill_model}, seed {args.seed}: spots drawn in 600 +/- 15; tick "
        f"{args.tick_interval}s, walk step every {walk_interval:.3f}s ({args.ticks_per_step} "
        f"ticks; the default profile's 2 s over ~250 ms quotes is {TICKS_PER_STEP})",
        "buyers per step: with the default profile's 2 s step, 0.1 is a buyer every 20 s; "
        "time to fill = enter_now to the entry's end, in steps (x 2 s for the default "
        "profile)",
        "baseline on a second ibsim of the same seed and spot: a MKT SELL of the same "
        "contract by a bare ib_insync client (fills at the bid)",
        "a shared 2-core machine: times are noisy; prices are seeded",
    ])


if __name__ == "__main__":
    main()
