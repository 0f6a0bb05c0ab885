"""The engine's memory over a long day: RSS of the engine process (a real one, on
ibsim) at start, then after each half of 10,000 trades' worth of fills and 1 M
market-data messages, arriving together as they would.

A trade's worth is its two fills: the sale (SELL, which opens a lot) and its take
profit (BUY, which closes it), each through the engine's live path (ib_insync's
openOrder/orderStatus/execDetails/commissionReport -> Connection -> PositionBook ->
SQLite, stored once by execution id). They are market orders that ibsim binds to the
engine's client (`POST /order/external`), because placing 10,000 entries through
the engine would take hours under IB's 45 requests/s pacing; the bench records
their intents in the book first, as the executor would. Meanwhile 10 real lots
stream SPY and their puts at a 1 ms tick interval.
Baseline: the RSS at start, same run. Goals: <= 150 MB; growth <= 5 % in the
second half (what a leak would show: the first half includes warm-up).

    python -m bench.memory [--trades 10000] [--messages 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import (
    MEASURED,
    Row,
    ZmqClient,
    engine_config,
    engine_ready,
    open_streaming_lots,
    poll,
    report,
    rss_mb,
    start_engine,
    stop,
    streaming_profile,
    workdir,
)
from ibsim.harness import IbsimProcess, free_port
from ibsim.market import expirations, option_con_id

NOW = "2026-11-24T11:00:00-05:00"
TRADE_DATE = "2026-11-24"
LOTS = 10
BATCH = 100  # trades per control request (200 orders)


def trade_refs(trades: int, con_ids: list[int]) -> list[tuple[str, str, int]]:
    """(sale_ref, tp_ref, con_id) per trade; lot ids: the 10 streaming lots first, then
    one per trade, in order."""
    return [(f"tb:{TRADE_DATE}:m{i}:sale:1", f"tb:lot{LOTS + i}:tp:1",
             con_ids[i % len(con_ids)]) for i in range(1, trades + 1)]


def record_intents(book: Path, batch: list[tuple[str, str, int]]) -> None:
    """The batch's sale and take-profit intents, written before they are sent (as the
    executor does), in one transaction: set-up, not a figure."""
    now = time.time()
    rows = []
    for sale, tp, con_id in batch:
        lot_id = int(tp.split(":")[1][3:])
        rows.append((sale, None, TRADE_DATE, "sale", con_id, "SELL", "MKT", 1, now, now))
        rows.append((tp, lot_id, TRADE_DATE, "tp", con_id, "BUY", "MKT", 1, now, now))
    with sqlite3.connect(book, timeout=30) as c:
        c.executemany(
            "INSERT INTO orders(order_ref, lot_id, trade_date, role, con_id, action,"
            " order_type, qty, status, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,'intent',?,?)", rows)


def stored_fills(book: Path) -> int:
    with sqlite3.connect(f"file:{book}?mode=ro", uri=True, timeout=10) as c:
        return int(c.execute("SELECT COUNT(*) FROM fills").fetchone()[0])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.memory")
    ap.add_argument("--trades", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--tick-interval", type=float, default=0.001)
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    now = datetime.fromisoformat(NOW)
    # Puts a month out (bid > 0): never the streaming lots' lines (a week out).
    expiry = next(e for e in expirations(now)
                  if datetime.strptime(e, "%Y%m%d").date() >= now.date() + timedelta(days=25))
    con_ids = [option_con_id(expiry, float(k), "P") for k in range(540, 590)]
    with workdir() as tmp, IbsimProcess(seed=4, now=NOW, tick_interval=0.05,
                                           tick_mode="interval") as sim:  # a steady load
        book = Path(tmp) / "book.sqlite"
        trades = trade_refs(args.trades, con_ids)
        zmq_ep = f"tcp://127.0.0.1:{free_port()}"
        slots = [f"12:{i:02d}" for i in range(LOTS)]
        cfg = engine_config(Path(tmp), sim.port, zmq_ep, streaming_profile(NOW, slots))
        engine = start_engine(cfg)
        client = ZmqClient(zmq_ep, timeout=10)
        rss: dict[str, float] = {}
        try:
            poll(lambda: engine_ready(client), 60, 0.05)
            time.sleep(1.0)  # settle: the first reconcile and subscriptions
            rss["start"] = rss_mb(engine.pid)
            open_streaming_lots(sim, client, slots, args.tick_interval)
            rss["lots open"] = rss_mb(engine.pid)
            msgs0 = client.ask("market_data")["messages_received"]
            fills0 = stored_fills(book)
            half = len(trades) // 2
            for name, lo, hi, msg_goal in (("first half", 0, half, args.messages // 2),
                                           ("second half", half, len(trades), args.messages)):
                for k in range(lo, hi, BATCH):
                    batch = trades[k:min(k + BATCH, hi)]
                    orders = [o for sale, tp, con_id in batch for o in (
                        {"order_ref": sale, "con_id": con_id, "action": "SELL"},
                        {"order_ref": tp, "con_id": con_id, "action": "BUY"})]
                    record_intents(book, batch)
                    sim.post("/order/external", {"client_id": 1, "orders": orders})
                    # At most two batches in flight: the engine's pace, not ibsim's.
                    poll(lambda k=k: stored_fills(book) - fills0 >= 2 * (k - BATCH), 120, 0.05)
                poll(lambda hi=hi: stored_fills(book) - fills0 >= 2 * hi, 120, 0.05)
                poll(lambda g=msg_goal: client.ask("market_data")["messages_received"] - msgs0
                     >= g, 120, 0.1)
                rss[name] = rss_mb(engine.pid)
            stats = client.ask("market_data")
            messages = stats["messages_received"] - msgs0
            fills = stored_fills(book) - fills0
        finally:
            client.close()
            stop(engine)
    growth = (rss["second half"] - rss["first half"]) / rss["first half"] * 100
    peak = max(rss.values())
    rows = [Row(f"RSS {k}", v, "MB") for k, v in rss.items()]
    rows[0].figure = "RSS at start (baseline)"
    rows += [
        Row("RSS peak", peak, "MB", "<= 150 MB", peak <= 150, limit=MEASURED),
        Row("growth in the second half", growth, "%", "<= 5%", growth <= 5, limit=MEASURED),
        Row("end / start", rss["second half"] / rss["start"], "x"),
        Row("fills stored", fills, "count"),
        Row("market-data messages", messages, "count"),
        Row("run time", time.perf_counter() - t_start, "s"),
    ]
    report("memory", rows, [
        f"{args.trades} trades' fills (sale + take profit) bound to the engine's client by "
        f"ibsim, with their intents recorded first; market data from {LOTS} real lots and SPY at "
        f"a {args.tick_interval * 1000:.0f} ms tick interval",
    ])


if __name__ == "__main__":
    main()
