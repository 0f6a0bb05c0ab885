"""Issue 21: the paper/live guard trusts the gateway (managedAccounts()), not the config.

ibsim over real sockets. A spy on ibsim's placeOrder handler (the real handler still
runs) counts every order frame that reaches the gateway, so "no order reached ibsim"
holds even for an order ibsim itself would have refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ibsim.server as ibsim_server
from actors.engine import Engine
from config.loader import load_config
from ibsim.harness import IbsimThread
from tests.engine.conftest import SESSION_NOW, RunningEngine, write_config
from tests.engine.test_lifecycle import enter_and_wait
from tests.support.zmq_request import wait_for_value, wait_until
from trading.clock import ManualClock
from trading.model import ContractInfo, LinkState, OrderRequest
from trading.risk import OrderRefused

TWO_SLOTS = {"schedule": {"entry_times": ["15:00", "15:30"]}}
Frames = list[tuple[str, int, str]]  # per placeOrder frame, see `order_frames`
Launch = Callable[[Any, dict[str, dict[str, Any]]], RunningEngine]


@pytest.fixture
def order_frames(monkeypatch: pytest.MonkeyPatch) -> Frames:
    """(gateway's account, order id, the order's account field) per placeOrder frame."""
    seen: Frames = []
    real = ibsim_server.HANDLERS[3]

    async def spy(gw: Any, s: Any, f: list[str]) -> None:
        seen.append((gw.broker.account, int(f[1]), f[23] if len(f) > 23 else ""))
        await real(gw, s, f)

    monkeypatch.setitem(ibsim_server.HANDLERS, 3, spy)
    return seen


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Starts an engine on a gateway with config `overrides`, READY; all stopped after."""
    started: list[Engine] = []

    def start(sim: Any, overrides: dict[str, dict[str, Any]]) -> RunningEngine:
        cfg = load_config(write_config(tmp_path / "engine.toml", sim, overrides), environ={})
        engine = Engine(cfg, clock=ManualClock(SESSION_NOW))
        engine.start()
        started.append(engine)
        eng = RunningEngine(engine, engine.clock)  # type: ignore[arg-type]
        eng.wait_ready()
        return eng

    yield start
    for e in started:
        e.stop()


def alerts(eng: RunningEngine, kind: str) -> list[str]:
    return [a["message"] for a in eng.ask("alerts")["alerts"] if a["kind"] == kind]


def gateway(account: str, seed: int = 3, port: int = 0) -> IbsimThread:
    """An ibsim logged in to `account`, at the tests' session time (not started yet)."""
    return IbsimThread(seed=seed, account=account, now=SESSION_NOW.isoformat(), port=port)


def assert_no_orders(sim: Any) -> None:
    """Nothing resting and nothing executed at the gateway."""
    state = sim.get_state()
    assert state["open_orders"] == [] and state["executions"] == []


@pytest.mark.parametrize(
    ("gateway_account", "mode", "configured"),
    [
        pytest.param("U7654321", "paper", "DU1234567", id="paper-config-live-gateway"),
        pytest.param("DU1234567", "live", "U7654321", id="live-config-paper-gateway"),
    ],
)
def test_configured_account_the_gateway_does_not_manage_refuses_everything(
    launch: Launch, order_frames: Frames, gateway_account: str, mode: str, configured: str
) -> None:
    with gateway(gateway_account) as sim:
        eng = launch(sim, {"gateway": {"mode": mode, "account": configured}})
        reply = eng.ask("enter_now")
        assert not reply["accepted"], reply
        assert configured in reply["reason"] and gateway_account in reply["reason"], reply
        # The alert names both accounts (the connect's, and the refusal's).
        msgs = wait_until(lambda: alerts(eng, "risk_limit"), 10, message="risk_limit alert")
        assert any(configured in m and gateway_account in m for m in msgs), msgs
        assert any("refused" in m for m in msgs), msgs
        # The status says what the gateway reports, and why nothing is traded.
        st = eng.ask("status")
        assert st["account"] == gateway_account and st["managed_accounts"] == [gateway_account]
        assert st["configured_account"] == configured and st["mode"] == mode
        assert configured in st["account_reason"] and st["ready_to_trade"] is False
        assert st["link"]["state"] == "READY"  # the link is up; the account is what is wrong
        # Connection refuses any order (exits and repairs too), not just entries.
        conn = eng.engine.directory.proxy("connection")
        put = conn.qualify_options("SPY", "20261127", [590.0], "P").get(timeout=10)[0]
        assert isinstance(put, ContractInfo)
        with pytest.raises(OrderRefused, match="account check failed"):
            conn.place_order(
                OrderRequest("tb:lot1:tp:1", put, "BUY", "LMT", 1, lmt_price=1.0)
            ).get(timeout=10)
        assert order_frames == []
        assert_no_orders(sim)


def test_every_order_carries_the_verified_account(launch: Launch, order_frames: Frames) -> None:
    with gateway("DU1234567") as sim:
        eng = launch(sim, {})  # no account configured: the gateway's
        enter_and_wait(eng, 0)
        assert len(order_frames) >= 3  # the sale, take-profit and stop-loss
        assert {acct for _, _, acct in order_frames} == {"DU1234567"}
        assert eng.ask("status")["account_reason"] == ""


@pytest.mark.parametrize(
    ("configured", "first", "second"),
    [("DU1234567", "DU1234567", "DU7654321"), ("", "DU1234567", "U7654321")],
)
def test_gateway_restarted_on_another_account_refuses_the_next_entry(
    launch: Launch, order_frames: Frames, configured: str, first: str, second: str
) -> None:
    sim = gateway(first).start()
    port = sim.port
    try:
        eng = launch(sim, {**TWO_SLOTS, "gateway": {"account": configured}})
        enter_and_wait(eng, 0)
        generation = eng.book().link_status().get(timeout=5).generation
    finally:
        sim.stop()
    # The same address, another login: a different gateway.
    with gateway(second, seed=4, port=port) as sim2:
        link = wait_for_value(
            lambda: eng.book().link_status().get(timeout=5),
            lambda ln: ln.state == LinkState.READY and ln.generation > generation,
            20,
            "READY on the restarted gateway",
        )
        assert link.accounts == (second,) and link.account == "" and link.account_problem
        before = len(order_frames)
        reply = eng.ask("enter_now")
        assert not reply["accepted"] and second in reply["reason"], reply
        if configured:
            assert configured in reply["reason"]
        msgs = wait_until(
            lambda: [m for m in alerts(eng, "risk_limit") if second in m], 10,
            message="risk_limit alert for the new gateway",
        )
        assert msgs
        assert eng.ask("status")["account"] == second
        assert [f for f in order_frames[before:] if f[0] == second] == []
        assert_no_orders(sim2)
