"""Issues 3 and 4 from outside, as an operator runs it: ibsim and
`python -m actors --config config/demo.toml` started by hand (ports and clock by
environment overrides), commands over ZeroMQ, the broker read with a separate client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from ib_insync import IB

from book.store import Store
from ibsim.harness import IbsimProcess, free_port
from tests.support.zmq_request import use_keys, wait_for_value, wait_until, zmq_request

ROOT = Path(__file__).resolve().parents[2]


def start_engine(tmp: Path, sim: Any, zmq_port: int, clock: str, speed: float = 1.0,
                 extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ, "PYTHONPATH": str(ROOT),
        "TRADING_BOT__GATEWAY__PORT": str(sim.port),
        "TRADING_BOT__ZMQ__ENDPOINT": f"tcp://127.0.0.1:{zmq_port}",
        "TRADING_BOT__STORAGE__PATH": str(tmp / "book.sqlite"),
        "TRADING_BOT__CLOCK__START": f'"{clock}"', "TRADING_BOT__CLOCK__SPEED": str(speed),
        "TRADING_BOT__WATCHDOG__GATEWAY_RESTART": "none",
        **(extra or {}),
    }
    use_keys(f"tcp://127.0.0.1:{zmq_port}", tmp / "zmq-keys")  # written by the engine
    log = open(tmp / "engine.log", "ab")  # noqa: SIM115 - the child writes it
    return subprocess.Popen([sys.executable, "-m", "actors", "--config", "config/demo.toml"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def ready(endpoint: str) -> bool:
    try:
        reply = zmq_request(endpoint, "status", timeout=1)
    except TimeoutError:
        return False
    return reply["ok"] and reply["data"]["link"]["state"] == "READY"


def broker_view(port: int) -> tuple[list[float], list[str], int]:
    ib = IB()
    ib.connect("127.0.0.1", port, clientId=99, timeout=5)
    try:
        positions = [p.position for p in ib.reqPositions() if p.contract.secType == "OPT"]
        exits = sorted(t.order.orderType for t in ib.reqAllOpenOrders())
        sales = sum(1 for f in ib.reqExecutions() if f.execution.side == "SLD")
        return positions, exits, sales
    finally:
        ib.disconnect()


def test_operator_enter_now_kill_restart_still_one_sale(tmp_path: Path) -> None:
    # 09:31: the market is open and the 09:35 schedule has not come (enter_now claims it).
    now = "2026-11-24T09:31:00-05:00"
    with IbsimProcess(seed=4, now=now) as sim:
        zmq_port = free_port()
        endpoint = f"tcp://127.0.0.1:{zmq_port}"
        engine = start_engine(tmp_path, sim, zmq_port, now)
        try:
            wait_until(lambda: ready(endpoint), 40, 0.1, "engine READY")
            reply = zmq_request(endpoint, "enter_now", sent_at=time.time())
            assert reply["ok"] and reply["data"]["accepted"], reply
            wait_until(lambda: broker_view(sim.port)[:2] == ([-1.0], ["LMT", "STP"]), 40, 0.2,
                       "one short put and its two exits at the broker")
            # demo.toml's trade is the seed's shape (issue 24): the month-end put nearest
            # 90 days out (2027-02-26: 94 days; 2027-01-29 is 66), about 10% below spot.
            (lot,) = Store(tmp_path / "book.sqlite").lots()
            assert lot.expiry == "20270226"
            assert 0.085 < 1 - lot.strike / 600.0 < 0.115
            engine.send_signal(signal.SIGKILL)
            engine.wait(10)
            engine = start_engine(tmp_path, sim, zmq_port, now)
            wait_until(lambda: ready(endpoint), 40, 0.1, "engine READY again")
            again = zmq_request(endpoint, "enter_now", sent_at=time.time())["data"]
            assert not again["accepted"]  # the day's entry is done
            assert broker_view(sim.port) == ([-1.0], ["LMT", "STP"], 1)
        finally:
            engine.terminate()
            engine.wait(20)


@pytest.mark.slow(seconds=105, reason="a simulated week on a fast clock, one real engine process")
def test_fast_clock_week_from_outside_sells_once_per_session(tmp_path: Path) -> None:
    # ibsim's clock stays put while the engine's runs fast: put it inside the session
    # (IB's default is regular hours only: an order at 09:20 would rest with 399). The
    # engine starts at 04:00: at 3600x the link has 5.5 s to be READY before Monday's
    # 09:35 (from 09:20 it had 1 s, and a loaded machine missed Monday's entry).
    with IbsimProcess(seed=8, now="2026-11-23T10:00:00-05:00") as sim:
        engine = start_engine(tmp_path, sim, free_port(), "2026-11-23T04:00:00-05:00", 3600,
                              {"TRADING_BOT__RISK__MAX_OPEN_LOTS": "10"})
        try:
            store = Store(tmp_path / "book.sqlite")
            wait_for_value(lambda: [e.trade_date for e in store.entries()
                                    if e.state == "done"],
                           lambda days: "2026-11-27" in days, 150,
                           "entries through Friday")
            time.sleep(2)  # on purpose: two more simulated hours pass without a new sale
            days = [e.trade_date for e in store.entries()]
            assert days == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27"]
            assert broker_view(sim.port)[2] == 4
        finally:
            engine.terminate()
            engine.wait(20)
