"""How fast the dashboard serves: `/api/status` and `/api/positions` of the real Flask
app under waitress (a process) querying the real engine (a process) over ZeroMQ, with
1,000 lots (10 open), 10,000 fills and 3,000 orders in the book, 8 concurrent client
processes for 10 s each: req/s, p50/p99. Baseline: a raw ZeroMQ+msgpack echo of the
same payloads by 8 clients for the same time, plain and with CURVE (the engine's
ZeroMQ is CURVE-secured, issue 18: the CURVE echo is the fair baseline).

The engine runs without a gateway (its link stays down): a book seeded with lots the
broker never held would otherwise be reconciled away; the views read the book alike.

    python -m bench.dashboard [--seconds 10] [--clients 8]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgpack

from bench.common import (
    MEASURED,
    ROOT,
    Row,
    ZmqClient,
    close_to,
    curve_client,
    echo_server,
    engine_config,
    limited_by,
    pct,
    poll,
    report,
    start_engine,
    stop,
    workdir,
)
from ibsim.harness import free_port

PASSWORD = "bench-password"


def seed_book(path: Path, lots: int = 1000, fills: int = 10_000, open_lots: int = 10) -> None:
    """Through the book's own store API, as the engine would have written it."""
    from book.store import Store
    from trading.records import StoredFill

    rng = random.Random(1)
    store = Store(path)
    per_lot = fills // lots
    t0 = time.time() - lots * 86400
    for i in range(lots):
        con_id = 700_000 + i
        strike = 500.0 + i % 100
        ref = f"tb:2024-01-01:{i:04d}:sale:1"
        store.record_intent(ref, "sale", con_id, "SELL", "LMT", 1, lmt_price=1.0)
        lot_id = store.open_lot(
            trade_date="2024-01-01", slot="09:35", con_id=con_id, symbol="SPY",
            expiry="20240105", strike=strike, right="P", local_symbol=f"SPY P{strike:.0f}",
            multiplier=100, qty=1, entry_price=1.0 + rng.random(), entry_time=t0 + i * 86400,
            order_ref=ref, tp_price=0.4, sl_price=3.0, state="open")
        tp, sl = f"tb:lot{lot_id}:tp:1", f"tb:lot{lot_id}:sl:1"
        store.record_intent(tp, "tp", con_id, "BUY", "LMT", 1, lmt_price=0.4, lot_id=lot_id)
        store.record_intent(sl, "sl", con_id, "BUY", "STP", 1, aux_price=3.0, lot_id=lot_id)
        store.mark_order(tp, status="submitted")
        store.mark_order(sl, status="submitted")
        store.set_exits(lot_id, tp_order_ref=tp, sl_order_ref=sl, oca_group=f"g{lot_id}")
        for k in range(per_lot):
            store.add_fill(StoredFill(f"e{i}.{k}", ref, i, i, con_id, "SLD" if k == 0 else "BOT",
                                      1, 1.0, 0.65, t0 + i * 86400 + k, lot_id))
        if i >= open_lots:
            store.close_lot(lot_id, 0.4, t0 + i * 86400 + 3600, "take_profit", 59.35)
    store.close()


def http_worker(port: int, path: str, seconds: float, cookie: str, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat: list[float] = []
    errors = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        resp = conn.getresponse()
        body = resp.read()
        lat.append(time.perf_counter() - t)
        if resp.status != 200 or not body:
            errors += 1
    out.put((lat, errors))


def zmq_worker(endpoint: str, op: str, seconds: float, keys: str, out: Any) -> None:
    from bench.common import ZmqClient

    client = ZmqClient(endpoint, timeout=10, keys_dir=Path(keys))
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        client.ask(op)
        lat.append(time.perf_counter() - t)
    client.close()
    out.put((lat, 0))


def echo_worker(endpoint: str, payload: bytes, seconds: float, keys: str, out: Any) -> None:
    import zmq

    s = zmq.Context().socket(zmq.REQ)
    if keys:
        curve_client(s, Path(keys))
    s.connect(endpoint)
    lat: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        s.send(payload)
        s.recv()
        lat.append(time.perf_counter() - t)
    s.close(0)
    out.put((lat, 0))


def run_clients(target: Any, args: tuple[Any, ...], clients: int) -> tuple[list[float], int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    lat: list[float] = []
    errors = 0
    for _ in procs:
        part, err = q.get(timeout=120)
        lat += part
        errors += err
    for p in procs:
        p.join(10)
    return lat, errors


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.dashboard")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args(argv)
    rows: list[Row] = []
    with workdir() as tmp:
        seed_book(Path(tmp) / "book.sqlite")
        zmq_ep = f"tcp://127.0.0.1:{free_port()}"
        web_port = free_port()
        cfg = engine_config(Path(tmp), free_port(), zmq_ep, {
            "web": {"port": web_port, "threads": 8},
            "risk": {"max_open_lots": 10_000},
        })
        engine = start_engine(cfg)
        log = open(Path(tmp) / "web.log", "ab")  # noqa: SIM115 - the child writes it
        web = subprocess.Popen([sys.executable, "-m", "web", "--config", str(cfg)], cwd=ROOT,
                               stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT),
                                    "TRADING_BOT_WEB_PASSWORD": PASSWORD})
        echo_ep = f"tcp://127.0.0.1:{free_port()}"
        stop_echo = echo_server(echo_ep)
        curve_ep, echo_keys = f"tcp://127.0.0.1:{free_port()}", Path(tmp) / "echo-keys"
        stop_curve_echo = echo_server(curve_ep, echo_keys)
        engine_keys = str(Path(tmp) / "zmq-keys")
        client = ZmqClient(zmq_ep, timeout=5)
        try:
            poll(lambda: _answers(client), 60, 0.05)
            poll(lambda: _http_ok(web_port), 60, 0.05)
            sizes = {op: len(msgpack.packb({"id": "x", "ok": True, "data": client.ask(op)}))
                     for op in ("status", "positions")}
            for op in ("status", "positions"):
                lat, errors = run_clients(http_worker,
                                          (web_port, f"/api/{op}", args.seconds, ""),
                                          args.clients)
                base, _ = run_clients(echo_worker,
                                      (echo_ep, b"x" * sizes[op], args.seconds, ""),
                                      args.clients)
                cbase, _ = run_clients(echo_worker, (curve_ep, b"x" * sizes[op], args.seconds,
                                                     str(echo_keys)), args.clients)
                rps, base_rps = len(lat) / args.seconds, len(base) / args.seconds
                ms = 1000.0
                rows += [
                    Row(f"{op}: req/s", rps, "req/s", ">= 1000", rps >= 1000,
                        limit=limited_by(not close_to(rps, base_rps, 0.1),
                                         "as fast as the raw echo (the load generator)")),
                    Row(f"{op}: p50", pct(lat, 50) * ms, "ms"),
                    Row(f"{op}: p99", pct(lat, 99) * ms, "ms", "<= 20 ms", pct(lat, 99) <= 0.02,
                        limit=MEASURED),
                    Row(f"{op}: errors", errors, "count", "0", errors == 0, limit=MEASURED),
                    Row(f"{op}: raw echo req/s ({sizes[op]} B)", base_rps, "req/s"),
                    Row(f"{op}: raw echo p50", pct(base, 50) * ms, "ms"),
                    Row(f"{op}: raw echo p99", pct(base, 99) * ms, "ms"),
                    Row(f"{op}: CURVE echo req/s", len(cbase) / args.seconds, "req/s"),
                    Row(f"{op}: CURVE echo p50", pct(cbase, 50) * ms, "ms"),
                    Row(f"{op}: CURVE echo p99", pct(cbase, 99) * ms, "ms"),
                ]
                if op == "status":
                    zlat, _ = run_clients(zmq_worker,
                                          (zmq_ep, "status", args.seconds, engine_keys),
                                          args.clients)
                    rows.append(Row("status over zmq+CURVE (no HTTP) p50", pct(zlat, 50) * ms,
                                    "ms"))
                    rows.append(Row("status over zmq+CURVE (no HTTP) p99", pct(zlat, 99) * ms,
                                    "ms"))
                    ratio = pct(zlat, 50) / pct(cbase, 50)
                    rows.append(Row("zmq status p50 / CURVE echo p50", ratio, "x", "<= 5x",
                                    ratio <= 5, limit=MEASURED))
                    curve_cost = pct(cbase, 50) / pct(base, 50)
                    rows.append(Row("CURVE echo p50 / raw echo p50", curve_cost, "x"))
        finally:
            client.close()
            stop_curve_echo()
            stop_echo()
            stop(web)
            stop(engine)
    report("dashboard", rows, [f"{args.clients} client processes x {args.seconds:.0f} s per "
                               "endpoint; keep-alive HTTP; 1,000 lots (10 open), 10,000 fills"])


def _answers(client: ZmqClient) -> bool:
    try:
        client.ask("status")
        return True
    except TimeoutError:
        return False


def _http_ok(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/healthz")
        return c.getresponse().status == 200
    except OSError:
        return False


if __name__ == "__main__":
    main()
