"""Issue 9 guards against ibsim: account check, kill switch, daily loss limit, and
orders outside sane bounds refused before they reach the broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.engine import Engine
from config.loader import load_config
from ibsim.harness import IbsimThread
from tests.engine.conftest import SESSION_NOW, RunningEngine, write_config
from tests.engine.test_lifecycle import assert_protected_at_broker, broker_orders, enter_and_wait
from tests.support.zmq_request import wait_for_value, wait_until, zmq_request
from trading.clock import ManualClock
from trading.model import ContractInfo, OrderRequest
from trading.risk import OrderRefused

TWO_SLOTS = {"schedule": {"entry_times": ["15:00", "15:30"]}}


def alert_kinds(eng: RunningEngine) -> list[str]:
    return [a["kind"] for a in eng.ask("alerts")["alerts"]]


def command(eng: RunningEngine, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    import time

    reply = zmq_request(eng.endpoint, op, args, sent_at=time.time())
    assert reply["ok"], reply
    return reply["data"]


@pytest.mark.parametrize(
    ("account", "mode", "words"),
    [
        ("U7654321", "paper", "config says paper but account U7654321 is a live account"),
        ("DU1234567", "live", "config says live but account DU1234567 is a paper account"),
    ],
)
def test_account_of_the_wrong_kind_refuses_every_entry(
    tmp_path: Path, account: str, mode: str, words: str
) -> None:
    with IbsimThread(seed=3, account=account, now=SESSION_NOW.isoformat()) as sim:
        cfg = load_config(
            write_config(tmp_path / "e.toml", sim, {"gateway": {"mode": mode}}), environ={}
        )
        engine = Engine(cfg, clock=ManualClock(SESSION_NOW))
        engine.start()
        try:
            eng = RunningEngine(engine, engine.clock)  # type: ignore[arg-type]
            eng.wait_ready()
            reply = command(eng, "enter_now")
            assert not reply["accepted"] and words in reply["reason"], reply
            assert sim.get_state()["open_orders"] == []
            assert sim.get_state()["executions"] == []
        finally:
            engine.stop()


def test_kill_switch_stops_entries_and_cancels_no_exit(sim: Any, start_engine: Any) -> None:
    eng = start_engine(TWO_SLOTS)
    lot = enter_and_wait(eng, 0)
    exits_before = {o["order_id"] for o in broker_orders(sim)}
    assert command(eng, "kill_switch", {"on": True}) == {"kill_switch": True}
    assert eng.ask("status")["kill_switch"] is True
    reply = command(eng, "enter_now")
    assert not reply["accepted"] and "kill switch" in reply["reason"]
    # The exits are the same live orders; the kill switch touched none of them.
    assert {o["order_id"] for o in broker_orders(sim)} == exits_before
    assert_protected_at_broker(sim, eng.book().lot(lot.id).get(timeout=5))
    # Repairs still run while it is on: exits cancelled by hand come back.
    sim.post("/order/cancel", {"order_ref_prefix": f"tb:lot{lot.id}:"})
    wait_until(lambda: not broker_orders(sim), 10, message="exits cancelled by hand")
    assert command(eng, "repair_exits")["repaired"] == 1
    assert_protected_at_broker(sim, eng.book().lot(lot.id).get(timeout=5))
    assert "kill_switch" in alert_kinds(eng)
    bad = zmq_request(eng.endpoint, "kill_switch", {"on": "yes"}, sent_at=__import__("time").time())
    assert not bad["ok"] and bad["error"]["code"] == "bad_args"
    assert eng.ask("status")["kill_switch"] is True  # the refused command changed nothing
    command(eng, "kill_switch", {"on": False})
    assert command(eng, "enter_now")["accepted"]


def test_daily_loss_limit_alerts_and_stops_entries(sim: Any, start_engine: Any) -> None:
    eng = start_engine({**TWO_SLOTS, "risk": {"daily_loss_limit": 1.0}})
    lot = enter_and_wait(eng, 0)
    sim.post("/market", {"spot": 480.0})  # deep in the money: the stop loss fills
    closed = wait_for_value(lambda: eng.book().lot(lot.id).get(timeout=5),
                            lambda x: x.state == "closed", 30, "lot closed by its stop")
    assert closed.close_reason == "stop_loss" and closed.realized_pnl < -1.0
    wait_until(lambda: "daily_loss_limit" in alert_kinds(eng), 10,
               message="daily_loss_limit alert")
    sim.post("/market", {"spot": 600.0})
    reply = command(eng, "enter_now")
    assert not reply["accepted"] and "daily loss limit" in reply["reason"], reply
    assert alert_kinds(eng).count("daily_loss_limit") == 1


def test_sale_too_far_from_spot_is_refused_before_the_broker(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine({"risk": {"max_strike_distance": 0.001}})
    assert command(eng, "enter_now")["accepted"]
    entry = wait_for_value(lambda: eng.book().entries().get(timeout=5),
                           lambda es: es and es[0].state == "failed", 30, "entry failed")
    assert "max_strike_distance" in entry[0].reason
    state = sim.get_state()
    assert state["open_orders"] == [] and state["executions"] == []
    assert "order_rejected" in alert_kinds(eng)


def test_connection_refuses_out_of_bounds_orders_itself(sim: Any, start_engine: Any) -> None:
    eng = start_engine({"risk": {"max_order_quantity": 2}})
    conn = eng.engine.directory.proxy("connection")
    spy = conn.qualify_stock("SPY", "SMART").get(timeout=10)
    expiry, strike = "20261127", 590.0
    put = conn.qualify_options("SPY", expiry, [strike], "P").get(timeout=10)[0]
    assert isinstance(put, ContractInfo) and spy.con_id
    bad = [
        OrderRequest("tb:x:0935:sale:1", put, "SELL", "LMT", 1, lmt_price=0.0, spot=600.0),
        OrderRequest("tb:x:0935:sale:2", put, "SELL", "LMT", 3, lmt_price=1.0, spot=600.0),
        OrderRequest("tb:x:0935:sale:3", put, "SELL", "LMT", 1, lmt_price=1.0, spot=900.0),
        OrderRequest("tb:lot1:sl:1", put, "BUY", "STP", 1, aux_price=-2.0),
    ]
    for req in bad:
        with pytest.raises(OrderRefused):
            conn.place_order(req).get(timeout=10)
    assert sim.get_state()["open_orders"] == []
