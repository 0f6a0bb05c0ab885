"""Issue 3 acceptance: `kill -9` of a real engine process at the worst moments.

Each case kills the engine subprocess at one point of the sale, restarts it, and
checks that the book and the broker (ibsim) agree on exactly one protected lot
and that the gateway saw exactly one sale.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from book.store import Store
from tests.engine.conftest import SESSION_NOW, engine_subprocess, write_config
from tests.support.zmq_request import use_keys, wait_for_value, wait_until, zmq_request
from wire.protocol import COMMAND_OPS


def _sales(sim: Any) -> list[dict[str, Any]]:
    return [e for e in sim.get_state()["executions"] if e["side"] in ("SLD", "SELL")]


def _live(sim: Any, role: str) -> list[dict[str, Any]]:
    return [o for o in sim.get_state()["open_orders"] if f":{role}:" in o["order_ref"]]


def _ask(endpoint: str, op: str) -> Any:
    """A read, asked again until the engine answers; a command, sent once and waited
    for (enter_now asked again after a slow answer would meet the entry it had started
    and come back 'busy': seen on a loaded machine)."""
    if op in COMMAND_OPS:
        reply = zmq_request(endpoint, op, timeout=30.0)
        assert reply.get("ok"), reply
        return reply["data"]

    def ok() -> Any:
        try:
            reply = zmq_request(endpoint, op, timeout=2.0)
        except TimeoutError:
            return None
        return reply if reply.get("ok") else None

    return wait_until(ok, 30, message=f"engine answers {op}")["data"]


def _start(cfg: Path) -> Any:
    return engine_subprocess(cfg, {"TRADING_BOT__CLOCK__START": f'"{SESSION_NOW.isoformat()}"'})


def _start_ready(tmp_path: Path, sim: Any) -> tuple[Path, str, Any]:
    """An engine subprocess with a slow walk, once its link is READY."""
    cfg = write_config(tmp_path / "engine.toml", sim, {"strategy": {"limit_walk_interval": 2.0}})
    endpoint = f"tcp://127.0.0.1:{_port(cfg)}"
    proc = _start(cfg)
    try:
        wait_until(
            lambda: _ask(endpoint, "status")["link"]["state"] == "READY", 30, message="READY"
        )
    except BaseException:
        proc.kill()
        raise
    return cfg, endpoint, proc


def _kill(proc: Any) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.parametrize("moment", ["sale_sent", "sale_filled", "exits_sent"])
def test_kill_9_then_restart_ends_with_one_protected_lot(
    tmp_path: Path, sim: Any, moment: str
) -> None:
    cfg, endpoint, proc = _start_ready(tmp_path, sim)
    try:
        if moment in ("sale_sent", "sale_filled"):
            sim.post("/fault/hold_fills", {"seconds": 60})
        assert _ask(endpoint, "enter_now")["accepted"]
        wait_until(lambda: _live(sim, "sale") or _sales(sim), 20, message="sale at the broker")
        if moment == "sale_filled":
            sim.post("/fault/slow_orders", {"seconds": 5.0})  # exits will wait for their ack
            sim.post("/fault/hold_fills", {"seconds": 0})
            wait_until(lambda: _sales(sim), 20, message="sale filled")
        elif moment == "exits_sent":
            wait_until(lambda: _live(sim, "tp") and _live(sim, "sl"), 20, message="exits sent")
        _kill(proc)
        sim.post("/fault/hold_fills", {"seconds": 0})
        sim.post("/fault/slow_orders", {"seconds": 0})
        proc = _start(cfg)
        lots = wait_for_value(
            lambda: _ask(endpoint, "positions")["lots"],
            lambda lots: len(lots) == 1 and lots[0]["protected"],
            40,
            "one protected lot",
        )
        lot = lots[0]
        tps, sls = _live(sim, "tp"), _live(sim, "sl")
        assert len(tps) == 1 and len(sls) == 1, (tps, sls)
        assert tps[0]["oca_group"] == sls[0]["oca_group"]
        assert len(_sales(sim)) == 1
        positions = [p for p in sim.get_state()["positions"] if p["con_id"] == tps[0]["con_id"]]
        assert [p["position"] for p in positions] == [-1]
        assert lot["qty"] == 1
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
    store = Store(tmp_path / "book.sqlite")
    assert store.integrity_check() == "ok"
    assert len(store.lots()) == 1
    assert sum(1 for e in store.entries() if e.state == "done") == 1


def _port(cfg: Path) -> int:
    """The engine's ZeroMQ port; its requests use the keys the engine writes."""
    from config.loader import load_config
    from wire.keys import keys_dir

    conf = load_config(cfg, environ={})
    use_keys(conf.zmq.endpoint, keys_dir(conf))
    return int(conf.zmq.endpoint.rsplit(":", 1)[1])


def test_entry_killed_before_its_sale_runs_again_after_restart(
    tmp_path: Path, start_engine: Any, sim: Any
) -> None:
    """Found by the chaos soak (seed 2): a kill between claiming the slot and sending
    the sale left the entry 'started' for ever, so the day never sold. Now the
    restarted engine sees no live sale and no fill, frees the slot with an alert,
    and the catch-up sells once."""
    Store(tmp_path / "book.sqlite").start_entry("2026-11-24", "09:35")  # the dead run's claim
    eng = start_engine({"schedule": {"entry_times": ["09:35"], "repair_interval": 1.0}},
                       now=SESSION_NOW)  # 10:00: before the 10:30 catch-up deadline
    entry = wait_for_value(lambda: eng.book().entry("2026-11-24", "09:35").get(timeout=5),
                           lambda e: e.state == "done", 30, "the interrupted entry done")
    assert entry.lot_id
    assert len(_sales(sim)) == 1
    kinds = [a["kind"] for a in eng.ask("alerts")["alerts"]]
    assert "entry_interrupted" in kinds


def test_path_7_a_leftover_sale_is_not_resumed_past_the_kill_switch(
    tmp_path: Path, sim: Any
) -> None:
    """Money paths item 7: the engine is killed while its sale rests unfilled; it comes
    back with the kill switch on. The old code re-priced the leftover sale at the bid
    anyway; now it is cancelled, with an alert, and nothing is sold."""
    cfg, endpoint, proc = _start_ready(tmp_path, sim)
    try:
        sim.post("/fault/hold_fills", {"seconds": 60})
        assert _ask(endpoint, "enter_now")["accepted"]
        wait_until(lambda: _live(sim, "sale"), 20, message="sale resting at the broker")
        _kill(proc)
        proc = engine_subprocess(cfg, {
            "TRADING_BOT__CLOCK__START": f'"{SESSION_NOW.isoformat()}"',
            "TRADING_BOT__RISK__KILL_SWITCH": "true",
        })
        wait_until(lambda: not _live(sim, "sale"), 40, message="leftover sale cancelled")
        sim.post("/fault/hold_fills", {"seconds": 0})
        alerts = wait_for_value(lambda: _ask(endpoint, "alerts")["alerts"],
                                lambda a: any("left resting" in x["message"] for x in a), 20,
                                "the alert")
        assert any(x["kind"] == "risk_limit" for x in alerts)
        assert _sales(sim) == []
        assert _ask(endpoint, "positions")["lots"] == []
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)
