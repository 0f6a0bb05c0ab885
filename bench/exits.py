"""How fast a sold put is protected: the sale's fill at ibsim (its execution time) to
both exit orders (TP LMT and SL STP) accepted by ibsim (their creation times), both
stamped by ibsim's clock, over 100 entries of the real engine (a process).
Baseline: ibsim's own order round trip with a bare ib_insync client (placeOrder ->
Submitted), measured in the same run: 50 orders before the entries and 50 after.
Goal (issue 34): p99 within 1.5x of the baseline's p99 (the issue's 20 ms was 1.5x of
its machine's 13.5 ms). Where the time goes is printed beside it: the phases between
ibsim's stamps and the engine's own log lines (INFO, JSON, wall-clock stamps).

    python -m bench.exits [--entries 100] [--floor 20]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ib_insync import IB, LimitOrder, Option, StopOrder

from bench.common import (
    Row,
    close_to,
    engine_log_lines,
    fsync_times,
    limited_by,
    pct,
    report,
    sell_by_hand,
    workdir,
)
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


def bare_fill_to_pair(port: int, state: Any, n: int) -> list[float]:
    """ibsim's own floor for the figure: a bare ib_insync client sells at once (a limit
    at the bid's side fills on arrival) and sends a BUY LMT + BUY STP pair in one OCA
    group from inside its fill event (no book, no intents): the sale's execution to the
    later leg's creation, both at ibsim, as the engine is measured. A strike each, so
    no pair rests against the next sale, and the next week's expiry, so none rests on
    a contract the engine holds: ibsim, like IB, refuses a SELL beside a BUY of the same
    account on the contract (self-cross). Spot is put back at 600 first (the engine's
    entries walked it up), so every put has a bid."""
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=78, timeout=10)
    try:
        puts = [ib.reqContractDetails(Option("SPY", FLOOR_EXPIRY, 590.0 - i, "P", "SMART"))[0]
                .contract for i in range(n)]
        for i, put in enumerate(puts):
            def protect(trade: Any, fill: Any, i: int = i, put: Any = put) -> None:
                if trade.order.orderRef != f"bench:floor:{i}:sale":
                    return
                for leg in (LimitOrder("BUY", 1, 0.01, orderRef=f"bench:floor:{i}:tp"),
                            StopOrder("BUY", 1, 50.0, orderRef=f"bench:floor:{i}:sl")):
                    leg.ocaGroup, leg.ocaType, leg.tif = f"bench-floor-{i}", 2, "GTC"
                    ib.placeOrder(put, leg)

            ib.execDetailsEvent += protect
            ib.placeOrder(put, LimitOrder("SELL", 1, 0.01, orderRef=f"bench:floor:{i}:sale"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len([
                    t for t in ib.openTrades() if t.order.orderRef.startswith(
                        f"bench:floor:{i}:")
                    # A stop rests PreSubmitted until triggered (IB's and ibsim's way).
                    and t.orderStatus.status in ("Submitted", "PreSubmitted")]) < 2:
                ib.waitOnUpdate(timeout=1)
            ib.execDetailsEvent -= protect
            ib.sleep(PACE * 4)
        got = state()
        out = []
        for i in range(n):
            sold = [e["time"] for e in got["executions"]
                    if e["order_ref"] == f"bench:floor:{i}:sale"]
            legs = [o["created"] for o in got["open_orders"]
                    if o["order_ref"].startswith(f"bench:floor:{i}:") and o.get("created")]
            if sold and len(legs) == 2:
                out.append(max(legs) - sold[0])
        ib.reqGlobalCancel()
        ib.sleep(0.2)
        return out
    finally:
        ib.disconnect()


FLOOR_EXPIRY = "20261204"  # the week after the engine's expiry (see bare_fill_to_pair)
GOAL_MS = 20.0  # issue 34's figure on its machine (1.5x its bare p99 of 13.5 ms)
GOAL_RATIO = 1.5  # the bar on any machine: p99 / the same run's bare p99


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.exits")
    ap.add_argument("--entries", type=int, default=100)
    ap.add_argument("--floor", type=int, default=20,
                    help="sales by a bare client that protects each itself (ibsim's floor)")
    args = ap.parse_args(argv)
    n = args.entries
    with workdir() as tmp, IbsimProcess(seed=5, now=NOW, tick_interval=0.02,
                                           tick_mode="change") as sim:  # IB's rhythm
        # Half the baseline before the engine's entries and half after: ibsim's own
        # cost per order grows a little with its book, so both ends are measured.
        base = baseline_round_trips(sim.port, 50)
        syncs = fsync_times(Path(tmp))
        stamps: list[Stamp] = []
        seen: set[int] = set()

        def after(_took: float) -> None:
            # Read while the new lot's exits are live (a later spot move may fill them).
            stamps.extend(protection_stamps(sim.get_state(), seen))
            time.sleep(ENTRY_PAUSE)  # pacing (see PACE), not a wait for a result

        # INFO lines in JSON (wall-clock stamps to the microsecond): the phases below.
        sell_by_hand(sim, Path(tmp), NOW, [600.0 + i for i in range(n)], interval=0.01,
                     after=after, extra={"logging": {"level": "INFO", "format": "json"}})
        base += baseline_round_trips(sim.port, 50)
        # After the entries: ibsim's book as full as for the engine's last ones.
        sim.post("/market", {"spot": 600.0, "walk_sigma": 0.0})
        floor = bare_fill_to_pair(sim.port, sim.get_state, args.floor)
        spent = phases(Path(tmp) / "engine.log", stamps)
    lat = [s.later_leg - s.fill for s in stamps]
    ms = 1000.0
    ratio = pct(lat, 99) / pct(base, 99)
    # As fast as ibsim's own order round trip: the figure is ibsim's, not the engine's.
    harness = limited_by(not close_to(pct(lat, 99), pct(base, 99), 0.2),
                         "as fast as ibsim's own order round trip")
    rows = [
        Row("baseline order round trip p50", pct(base, 50) * ms, "ms"),
        Row("baseline order round trip p99", pct(base, 99) * ms, "ms"),
        Row("fill -> both exits acked p50", pct(lat, 50) * ms, "ms"),
        Row("fill -> both exits acked p99", pct(lat, 99) * ms, "ms",
            f"<= {GOAL_MS:.0f} ms", pct(lat, 99) * ms <= GOAL_MS, limit=harness),
        Row("p99 / baseline p99", ratio, "x", f"<= {GOAL_RATIO}x", ratio <= GOAL_RATIO,
            limit=harness),
        Row("entries measured", len(lat), "count"),
        # Not the goal's baseline: what ibsim alone puts into the figure (its work on the
        # fill before it is sent, then on the first leg before the second is read).
        Row("bare client fill -> pair at ibsim p50", pct(floor, 50) * ms, "ms"),
        Row("bare client fill -> pair at ibsim p99", pct(floor, 99) * ms, "ms"),
        Row("p50 / bare client fill -> pair p50", pct(lat, 50) / pct(floor, 50), "x"),
        # One durable commit (lot and first pair together) lies on the path: its price
        # here, to scale the figure to a slower disk.
        Row("fsync of the book's disk p50", pct(syncs, 50) * ms, "ms"),
        Row("fsync of the book's disk p99", pct(syncs, 99) * ms, "ms"),
    ]
    for name, values in spent.items():  # where the time goes
        rows += [Row(f"  {name} p50", pct(values, 50) * ms, "ms"),
                 Row(f"  {name} p99", pct(values, 99) * ms, "ms")]
    report("exits", rows, ["times from ibsim's clock: execution time of the sale, creation "
                           "time of the later exit leg; phases also from the engine's log "
                           "(wall clock, same machine)",
                           f"entries {ENTRY_PAUSE}s apart and baseline orders {PACE}s apart:"
                           " under ib_insync's 45 requests/s throttle",
                           f"goal: p99 <= {GOAL_RATIO}x the bare round trip's p99 (issue "
                           f"34; its {GOAL_MS:.0f} ms was that on its machine)", PHASE_NOTE])


class Stamp:
    """One lot's protection on ibsim's clock: the sale's execution, its exit legs'
    creations (the earlier and the later)."""

    def __init__(self, lot: int, fill: float, first_leg: float, later_leg: float) -> None:
        self.lot, self.fill, self.first_leg, self.later_leg = lot, fill, first_leg, later_leg


# Where the time goes, per lot: the engine's log lines between ibsim's stamps.
PHASE_NAMES = (
    "fill -> executor knows",
    "knows -> intents durable",
    "durable -> 1st leg at ibsim",
    "1st leg -> 2nd leg at ibsim",
)
PHASE_NOTE = ("phases: fill -> executor knows = ibsim sends the fill, the Connection's loop "
              "reads it, one thread hop (the executor's 'sale filled' line); knows -> intents "
              "durable = the lot opened and both exit intents committed; durable -> 1st leg = "
              "the Connection, the wire, ibsim reading it; 1st -> 2nd leg = ibsim's own work "
              "on the first order (harness)")


def phases(log: Path, stamps: list[Stamp]) -> dict[str, list[float]]:
    """Per phase, its seconds in each lot: the executor's "sale filled" line (the first
    after the sale's execution) and its "lot N protected ... (B ms before this line)"
    line (the line minus B: when its intents were durable). An engine whose log lacks
    the offset gets the two middle phases as one."""
    lines = engine_log_lines(log)
    merged = "knows -> 1st leg at ibsim"
    out: dict[str, list[float]] = {name: [] for name in PHASE_NAMES}
    out[merged] = []
    for st in stamps:
        known = next((t for t, m in lines if t >= st.fill - 0.002
                      and m.startswith("sale filled:")), None)
        done = next(((t, m) for t, m in lines if m.startswith(f"lot {st.lot} protected:")),
                    None)
        if known is None or done is None:
            continue
        out[PHASE_NAMES[0]].append(known - st.fill)
        out[PHASE_NAMES[3]].append(st.later_leg - st.first_leg)
        out[merged].append(st.first_leg - known)
        if "ms after the intents were durable" in done[1]:
            # "... durable (B ms before this line)": the line may come well after the
            # ack (the book's mailbox stores the pair first); older engines said only
            # "acked A ms after", measured at the line.
            tail = done[1].rsplit("(", 1)[-1]
            back = (tail.split(" ms before")[0] if "ms before this line" in tail
                    else done[1].rsplit("acked ", 1)[1].split(" ms")[0])
            durable = done[0] - float(back) / 1000.0
            out[PHASE_NAMES[1]].append(durable - known)
            out[PHASE_NAMES[2]].append(st.first_leg - durable)
    return {k: v for k, v in out.items() if v}


def protection_stamps(state: dict[str, Any], seen: set[int]) -> list[Stamp]:
    """Read right after an entry: its sale (the newest of the engine's sale executions)
    and the first exit pair of its lot (the newest lot, the highest id; its pair with
    the earliest OCA serial), both at ibsim. Nothing else: an older lot's pair may have
    been cancelled and placed again by a later entry on the same contract, and a sale
    per contract would pair that second pair with the later sale (seen: ~2 samples in
    100 whose phases read 650 ms)."""
    sales = sorted((e["time"], e["con_id"]) for e in state["executions"]
                   if ":sale:" in e["order_ref"])
    if not sales:
        return []
    sold_at, con_id = sales[-1]
    legs: dict[tuple[int, str], list[float]] = {}
    for o in state["open_orders"]:
        if o["order_ref"].startswith("tb:lot") and o.get("created") \
                and o["con_id"] == con_id:
            lot = int(o["order_ref"].split(":")[1][3:])
            legs.setdefault((lot, o["oca_group"]), []).append(o["created"])
    if not legs:
        return []
    newest = max(lot for lot, _ in legs)
    if newest in seen or newest <= max(seen, default=0):
        return []  # each entry opens a lot above every earlier one: not this sale's
    first = min((oca for lot, oca in legs if lot == newest),
                key=lambda oca: int(oca.rsplit("-", 1)[1]))
    created = legs[(newest, first)]
    if len(created) != 2 or min(created) < sold_at:
        return []  # a leg filled already, or not this sale's pair: not measured
    seen.add(newest)
    return [Stamp(newest, sold_at, min(created), max(created))]


if __name__ == "__main__":
    main()
