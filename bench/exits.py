"""How fast a sold put is protected: the sale's fill at ibsim (its execution time) to
both exit orders (TP LMT and SL STP) accepted by ibsim (their creation times), both
stamped by ibsim's clock, over 100 entries of the real engine (a process).
Baseline: ibsim's own order round trip with a bare ib_insync client (placeOrder ->
Submitted), measured in the same run: 50 orders before the entries and 50 after.

    python -m bench.exits [--entries 100]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ib_insync import IB, LimitOrder, Option

from bench.common import Row, close_to, limited_by, pct, report, sell_by_hand, workdir
from ibsim.harness import IbsimProcess

NOW = "2026-11-24T10:00:00-05:00"
# ib_insync holds requests past 45 per second (IB's pacing limit, Client.MaxRequests):
# orders and entries are paced under it, as a once-a-day entry always is.
PACE = 0.03
ENTRY_PAUSE = 0.6


def baseline_round_trips(port: int, n: int) -> list[float]:
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=77, timeout=10)
    try:
        spy = ib.reqContractDetails(Option("SPY", "20261127", 500.0, "P", "SMART"))[0].contract
        out = []
        for i in range(n + 10):  # the first 10 warm up (contract cache, first sends)
            order = LimitOrder("BUY", 1, 0.01, orderRef=f"bench:{i}", tif="GTC")
            t = time.perf_counter()
            trade = ib.placeOrder(spy, order)
            while trade.orderStatus.status not in ("Submitted", "Filled", "Cancelled"):
                ib.waitOnUpdate(timeout=5)
            if i >= 10:
                out.append(time.perf_counter() - t)
            ib.sleep(PACE)
        ib.reqGlobalCancel()
        ib.sleep(0.2)
        return out
    finally:
        ib.disconnect()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.exits")
    ap.add_argument("--entries", type=int, default=100)
    args = ap.parse_args(argv)
    n = args.entries
    with workdir() as tmp, IbsimProcess(seed=5, now=NOW, tick_interval=0.02,
                                           tick_mode="change") as sim:  # IB's rhythm
        # Half the baseline before the engine's entries and half after: ibsim's own
        # cost per order grows a little with its book, so both ends are measured.
        base = baseline_round_trips(sim.port, 50)
        lat: list[float] = []
        seen: set[int] = set()

        def after(_took: float) -> None:
            # Read while the new lot's exits are live (a later spot move may fill them).
            lat.extend(protection_times(sim.get_state(), seen))
            time.sleep(ENTRY_PAUSE)  # pacing (see PACE), not a wait for a result

        sell_by_hand(sim, Path(tmp), NOW, [600.0 + i for i in range(n)], interval=0.01,
                     after=after)
        base += baseline_round_trips(sim.port, 50)
    ms = 1000.0
    ratio = pct(lat, 99) / pct(base, 99)
    # As fast as ibsim's own order round trip: the figure is ibsim's, not the engine's.
    harness = limited_by(not close_to(pct(lat, 99), pct(base, 99), 0.2),
                         "as fast as ibsim's own order round trip")
    rows = [
        Row("baseline order round trip p50", pct(base, 50) * ms, "ms"),
        Row("baseline order round trip p99", pct(base, 99) * ms, "ms"),
        Row("fill -> both exits acked p50", pct(lat, 50) * ms, "ms"),
        Row("fill -> both exits acked p99", pct(lat, 99) * ms, "ms", "<= 50 ms",
            pct(lat, 99) <= 0.05, limit=harness),
        Row("p99 / baseline p99", ratio, "x", "<= 5x", ratio <= 5.0, limit=harness),
        Row("entries measured", len(lat), "count"),
    ]
    report("exits", rows, ["times from ibsim's clock: execution time of the sale, creation "
                           "time of the later exit leg",
                           f"entries {ENTRY_PAUSE}s apart and baseline orders {PACE}s apart:"
                           " under ib_insync's 45 requests/s throttle"])


def protection_times(state: dict[str, Any], seen: set[int]) -> list[float]:
    """For lots not measured yet: the later exit leg's creation at ibsim minus its
    sale's execution time at ibsim (the first exit pair of the lot only)."""
    sale_time = {}
    for e in state["executions"]:
        if ":sale:" in e["order_ref"]:
            sale_time[e["con_id"]] = e["time"]
    legs: dict[tuple[int, str], list[float]] = {}
    for o in state["open_orders"]:
        if o["order_ref"].startswith("tb:lot") and o.get("created"):
            lot = int(o["order_ref"].split(":")[1][3:])
            legs.setdefault((lot, o["oca_group"]), []).append(o["created"])
            legs[(lot, o["oca_group"])].append(float(o["con_id"]))
    out = []
    for (lot, _oca), vals in sorted(legs.items()):
        created, con_ids = vals[0::2], vals[1::2]
        if lot in seen or len(created) != 2 or int(con_ids[0]) not in sale_time:
            continue
        seen.add(lot)
        out.append(max(created) - sale_time[int(con_ids[0])])
    return out


if __name__ == "__main__":
    main()
