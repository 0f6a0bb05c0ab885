"""Issue 15 acceptance: link truth against ibsim (real sockets, unmodified ib_insync)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from ib_insync import IB

from actors.engine import Engine
from config.loader import load_config
from tests.engine.conftest import SESSION_NOW, RunningEngine, write_config
from tests.support.webhook_sink import WebhookSink
from tests.support.zmq_request import hold_for, wait_until
from trading.clock import ManualClock
from trading.model import LinkState

READY = LinkState.READY
ET = ZoneInfo("America/New_York")
# The figures (an outage seen within 20 ms, READY within 200 ms of a restore)
# are speed goals: `python -m bench.outage --flaps` measures and prints them. Here the
# bounds only say "at once" in a way a loaded 2-core CI machine still meets (each
# span includes ibsim's control round trip).
# Seen, not missed: the latency itself is bench.outage's figure (1100 -> DOWN p99 7 ms).
# Seen 1.55 s once with four test workers and a bench beside them, and 2.53 s (the
# first outage after the start) with six workers and a soak beside them: the bound is
# the wait outage() itself allows.
SEEN_WITHIN = 5.0
READY_WITHIN = 2.0
# The Watchdog as shipped (1 s doubling to 60 s), not the fast test profile.
SHIPPED_BACKOFF = {"watchdog": {"backoff_initial": 1.0, "backoff_max": 60.0}}


class LinkRecorder:
    """Samples the engine's link state (what `status` reports) every `every` seconds."""

    def __init__(self, engine: Engine, every: float = 0.002) -> None:
        self.engine, self.every = engine, every
        self.samples: list[tuple[float, LinkState]] = []
        # Each change of the link as (time, state, reason): what a failure message shows.
        self.changes: list[tuple[float, str, str]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._halt.is_set():
            link = self.engine.directory.link
            now, state = time.monotonic(), link.state if link else LinkState.DISCONNECTED
            self.samples.append((now, state))
            if link is not None and (not self.changes or self.changes[-1][2] != link.reason):
                self.changes.append((now, state.value, link.reason))
            self._halt.wait(self.every)

    def __enter__(self) -> LinkRecorder:
        self._thread.start()
        # Until the first sample there is no state to read: an outage started before it
        # would be "seen" at once by state()'s default.
        wait_until(lambda: self.samples, 5, 0.001, "the first link sample")
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(2)

    def state(self) -> LinkState:
        return self.samples[-1][1] if self.samples else LinkState.DISCONNECTED

    def first(self, pred: Any, after: float) -> float | None:
        return next((t for t, s in list(self.samples) if t >= after and pred(s)), None)


def outage(sim: Any, rec: LinkRecorder, code: int = 1100, seconds: float = 1.0,
           restore: int = 1102) -> tuple[float, float]:
    """One outage of `seconds` (ended by the control API, so its end time is exact)."""
    start = time.monotonic()
    sim.post("/fault/outage", {"seconds": 3600, "code": code, "restore_code": restore})
    wait_until(lambda: rec.state() != READY, 5, 0.001, f"{code} seen")
    time.sleep(max(0.0, start + seconds - time.monotonic()))  # the fault's length, not a sync
    end = time.monotonic()
    sim.post("/fault/outage_end", {})
    wait_until(lambda: rec.state() == READY, 15, 0.001, "READY after the restore")
    return start, end


def check_outages(rec: LinkRecorder, spans: list[tuple[float, float]]) -> None:
    late, slow, ready_inside = [], [], []
    for i, (start, end) in enumerate(spans):
        down = rec.first(lambda s: s != READY, start)
        if down is None or down - start > SEEN_WITHIN:
            late.append((i, None if down is None else round(down - start, 4)))
        # From the moment the engine saw the outage until its restore: never READY.
        seen = start + SEEN_WITHIN if down is None else down
        inside = [t for t, s in rec.samples if seen <= t < end and s == READY]
        if inside:
            ready_inside.append((i, round(inside[0] - start, 4)))
        up = rec.first(lambda s: s == READY, end)
        if up is None or up - end > READY_WITHIN:
            slow.append((i, None if up is None else round(up - end, 4)))
    changes = [(round(t - spans[0][0], 4), s, r) for t, s, r in rec.changes]
    assert not ready_inside, (f"READY during an outage (outage, s after start): {ready_inside}; "
                              f"changes (s after the first start, state, reason): {changes}")
    assert not late, f"outages not seen within {SEEN_WITHIN}s (outage, s): {late}"
    assert not slow, f"not READY within {READY_WITHIN}s of the restore (outage, s): {slow}"


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


def hooks(sink: WebhookSink) -> dict[str, Any]:
    return {"alerts": {"coalesce_window": 0.0, "retry_initial": 0.05, "retry_max": 0.5,
                       "webhooks": [{"url": sink.url, "format": "json"}]}}


def test_2110_is_a_loss_and_1102_restores(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    with LinkRecorder(eng.engine) as rec:
        spans = [outage(sim, rec, 2110, 0.5), outage(sim, rec, 2110, 0.5, restore=1101)]
    check_outages(rec, spans)
    assert "2110" in "".join(str(a["message"]) for a in eng.ask("alerts")["alerts"]
                             if a["kind"] == "link_down")


@pytest.mark.parametrize(("count", "code"), [
    pytest.param(10, 1100, marks=pytest.mark.slow(seconds=15, reason="ten 1 s outages")),
    pytest.param(30, 2110, marks=pytest.mark.slow(seconds=45, reason="thirty 1 s outages")),
])
def test_flapping_is_absorbed(sim: Any, start_engine: Any, count: int, code: int) -> None:
    eng: RunningEngine = start_engine(SHIPPED_BACKOFF)
    with LinkRecorder(eng.engine) as rec:
        spans = []
        for _ in range(count):
            spans.append(outage(sim, rec, code, 1.0))
            time.sleep(0.5)  # the gap between outages (the fault's shape, not a sync)
            assert eng.engine.exit_code is None and not eng.engine.stopped.is_set()
    check_outages(rec, spans)
    assert eng.engine.exit_code is None and not eng.engine.stopped.is_set()
    assert all(eng.engine.supervisor.proxy().children().get(timeout=10).values())
    # Restarts of Connection are spaced by the backoff (1, 2, 4 ... s), not one per flap.
    wd = eng.engine.directory.proxy("watchdog")
    assert wd.restarts.get(timeout=5) <= 6


def test_connect_during_an_outage_stays_connected_until_the_restore(
    sim: Any, start_engine: Any
) -> None:
    # No restart grace: the Watchdog's restarts come inside the outage (issue 34's
    # grace would otherwise let this one pass without them).
    eng = start_engine({"watchdog": {"restart_grace": 0.0}})
    conn = eng.engine.directory.proxy("connection")
    sim.post("/fault/outage", {"seconds": 3600, "code": 1100, "restore_code": 1102})
    wait_until(lambda: eng.engine.directory.link.state != READY, 5, 0.001, "down")
    gen = eng.engine.directory.link.generation
    conn.disconnect().get(timeout=10)  # a fresh connect, in the middle of the outage
    wait_until(lambda: (lk := eng.engine.directory.link).generation > gen
               and lk.state == LinkState.CONNECTED, 15, 0.002, "connected again")
    with LinkRecorder(eng.engine) as rec:
        # Watch for 4 s: the socket is up, the gateway has no link to IB, so no READY
        # (and the Watchdog's restarts in between reconnect into the same outage).
        def not_ready() -> None:
            assert rec.state() != READY, eng.engine.directory.link

        hold_for(4.0, not_ready, 0.01)
        assert any(s == LinkState.CONNECTED for _, s in rec.samples)
        end = time.monotonic()
        sim.post("/fault/outage_end", {})
        wait_until(lambda: rec.state() == READY, 10, 0.001, "READY after the restore")
    assert not [t for t, s in rec.samples if t < end and s == READY]


def test_client_id_in_use_is_retried_alerted_and_ready_once_free(
    sim: Any, tmp_path: Path, sink: WebhookSink
) -> None:
    squatter = IB()
    squatter.connect("127.0.0.1", sim.port, clientId=1, timeout=5)
    cfg = load_config(write_config(tmp_path / "engine.toml", sim, hooks(sink)), environ={})
    engine = Engine(cfg, clock=ManualClock(SESSION_NOW))
    engine.start()
    try:
        wait_until(lambda: engine.directory.client_id_refusals >= 2, 20, 0.02, "two 326 refusals")
        assert engine.directory.link.state != READY
        assert "326" in engine.directory.link.reason
        sink.wait_for(lambda s: [b for b in s.bodies("link_down") if "326" in b["message"]], 10)
        squatter.disconnect()
        wait_until(lambda: engine.directory.link.state == READY, 30, 0.02, "READY once free")
        assert engine.directory.client_id_refusals == 0
    finally:
        squatter.disconnect()
        engine.stop()


def test_deliberate_restarts_never_spend_the_crash_budget(sim: Any, start_engine: Any) -> None:
    eng = start_engine({"supervision": {"max_restarts": 2, "restart_window": 60.0}})
    sup = eng.engine.supervisor.proxy()
    for _ in range(8):  # the Watchdog's restarts on a flapping gateway
        assert sup.restart("connection").get(timeout=30)
    # Not a speed check: a fresh connect may meet 326 (ibsim has not yet dropped the
    # previous socket) and back off 1, 2, 4 ... s before the id is free.
    eng.wait_ready(60)
    assert eng.engine.exit_code is None and not eng.engine.stopped.is_set()


def test_status_reports_state_why_since_and_the_age_of_the_last_evidence(
    sim: Any, start_engine: Any
) -> None:
    eng = start_engine()
    d = eng.engine.directory
    wait_until(lambda: d.quotes.get(d.spy_con_id) is not None, 10, message="SPY quote")
    link = eng.ask("status")["link"]
    assert link["state"] == "READY" and link["last_message_age"] < 5
    assert link["last_quote_age"] is not None and link["farms_broken"] == []
    t0 = time.time()
    sim.post("/fault/outage", {"seconds": 3600, "code": 2110, "restore_code": 1102})
    wait_until(lambda: eng.ask("status")["link"]["state"] != "READY", 15, 0.005, "down")
    link = eng.ask("status")["link"]
    assert link["reason"].startswith("2110") and link["since"] >= t0 - 0.01
    # No quotes flow in an outage: the quote's age grows and the status shows it.
    wait_until(lambda: eng.ask("status")["link"]["last_quote_age"] > 1.0, 20, 0.05,
               "an ageing quote")
    sim.post("/fault/farm", {"farm": "market", "broken": True})
    wait_until(lambda: eng.ask("status")["link"]["farms_broken"] == ["market"], 15, 0.01,
               "the broken farm in status")


ESCALATE = {"watchdog": {"escalate_after": 1.0, "gateway_restart": "none"}}


def kinds(sink: WebhookSink, kind: str) -> list[dict[str, Any]]:
    return [b for b in sink.bodies(kind)]


def logout(sim: Any, eng: RunningEngine) -> None:
    sim.post("/fault/logout", {"seconds": 600})  # waiting for a 2FA login; sockets drop
    wait_until(lambda: eng.engine.directory.link.state != READY, 10, 0.01, "down")


def logged_out_at(
    sim: Any, start_engine: Any, sink: WebhookSink, now: datetime = SESSION_NOW
) -> RunningEngine:
    """An engine alerting to `sink` that escalates fast, started at `now`, then logged out."""
    eng: RunningEngine = start_engine({**hooks(sink), **ESCALATE}, now=now)
    logout(sim, eng)
    return eng


@pytest.mark.slow(seconds=11, reason="waits out escalate_after and the login reminders")
def test_logout_one_gateway_restart_then_login_required_and_no_loop(
    sim: Any, start_engine: Any, sink: WebhookSink
) -> None:
    eng = logged_out_at(sim, start_engine, sink)
    sink.wait_for(lambda s: s.bodies("gateway_restart"), 15)
    sink.wait_for(lambda s: s.bodies("login_required"), 15)

    def once_each() -> None:
        assert len(kinds(sink, "gateway_restart")) == 1
        # Reminders at 1, 2, 4 ... s apart (escalate_after doubling): no alert loop.
        assert len(kinds(sink, "login_required")) <= 3

    hold_for(5.0, once_each)  # five escalate_after periods: no second restart, no alert loop
    # The wait has an end to silence (issue 33): it is said again, spaced, each time
    # naming how long it has waited and what is known of the gateway.
    sink.wait_for(lambda s: len(s.bodies("login_required")) >= 3, 20)
    reports = kinds(sink, "login_required")[:3]
    waited = [r["details"]["waited_seconds"] for r in reports]
    assert waited[0] < waited[1] < waited[2], waited
    assert waited[2] - waited[1] > waited[1] - waited[0], waited  # spaced further apart
    for r in reports:
        assert "log in" in r["message"] and "restarted" in r["message"]
        assert "accepting the API port" in r["message"]
        assert "'none' method" in r["message"]  # the gateway's state: not visible here
    assert len(kinds(sink, "gateway_restart")) == 1
    sim.post("/fault/login", {})
    wait_until(lambda: eng.engine.directory.link.state == READY, 30, 0.02, "READY after login")


def test_no_gateway_restart_inside_ibs_reset_window(
    sim: Any, start_engine: Any, sink: WebhookSink
) -> None:
    # IB's daily reset window, 00:15-01:45 ET (its system status page): watchdog.quiet_windows.
    logged_out_at(sim, start_engine, sink, datetime(2026, 11, 25, 0, 30, tzinfo=ET))
    sink.wait_for(lambda s: s.bodies("link_down"), 10)
    hold_for(4.0, lambda: not kinds(sink, "gateway_restart") or pytest.fail("restarted"))
    assert not kinds(sink, "login_required")


def test_sunday_reauth_is_named_once_and_in_status(
    sim: Any, start_engine: Any, sink: WebhookSink
) -> None:
    eng = logged_out_at(sim, start_engine, sink, datetime(2026, 11, 29, 1, 5, tzinfo=ET))
    sink.wait_for(lambda s: s.bodies("login_required"), 10)
    assert "weekly re-authentication" in kinds(sink, "login_required")[0]["message"]
    assert eng.ask("status")["link"]["note"] == "weekly re-authentication"
    hold_for(3.0, lambda: (len(kinds(sink, "login_required")) == 1
         and not kinds(sink, "gateway_restart")) or pytest.fail("repeated"))


def open_sockets_to(port: int) -> set[str]:
    """This process's open TCP sockets to `port` (their local addresses), from /proc: the
    engine runs in this process, and a socket mid-handshake is invisible to ibsim's state."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/self/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
                    found.add(cols[1])
    return found


# Each step of a connect, held by an ibsim fault: (fault, its ending, the step).
CONNECT_STEPS = {
    "tcp_accepted": ("/fault/logout", {"seconds": 600}, "/fault/login", {}),
    "handshake_pending": ("/fault/stall", {"seconds": 600}, "/fault/stall", {"seconds": 0}),
    "api_start_pending": ("/fault/freeze", {"seconds": 600}, "/fault/freeze", {"seconds": 0}),
    "ready": ("", {}, "", {}),
}


@pytest.mark.parametrize("step", list(CONNECT_STEPS))
def test_a_stopped_connection_leaves_no_socket_at_any_step_of_its_connect(
    sim: Any, start_engine: Any, step: str
) -> None:
    """Issue 33: a Connection stopped mid-connect (the Watchdog's restart) closes what it
    opened, also when the gateway answers the handshake after the stop; the next one is
    READY with the same client id, never meeting 326 from our own old socket."""
    fault, body, end, end_body = CONNECT_STEPS[step]
    eng = start_engine({"watchdog": {"escalate_after": 600.0}})
    d, sup = eng.engine.directory, eng.engine.supervisor.proxy()

    def peers() -> set[str]:
        return open_sockets_to(sim.port)

    if fault:
        sim.post(fault, body)
        if step in ("handshake_pending", "api_start_pending"):
            # Connects into the fault at once (not after the heartbeat gives up, ~20 s).
            assert sup.restart("connection").get(timeout=30)
        wait_until(lambda: d.link.state == LinkState.CONNECTING and len(peers()) == 1, 30,
                   0.02, f"a connect held at {step}")
    old = peers()
    assert len(old) == 1, old
    assert sup.restart("connection").get(timeout=30)
    wait_until(lambda: not (old & peers()), 10, 0.02, "the stopped Connection's socket closed")
    if end:
        sim.post(end, end_body)  # the old handshake, if anything held it, completes now
    eng.wait_ready(30)
    hold_for(1.5, lambda: (not (old & peers()) and len(peers()) == 1)
         or pytest.fail(f"sockets to the gateway: {peers()} (old: {old})"))
    assert d.client_id_refusals == 0
