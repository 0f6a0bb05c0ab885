"""The chaos soak's harness: the real stack on the soak's clock, what the soak reads of
it (the book, the broker, the link), waiting on a condition, and the operator on call."""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ops.clock_source import write_clock_file
from tests.chaos.invariants import Sampler
from tests.chaos.plan import (
    DAY_BUDGET,
    ENTRY_TIMES,
    ET,
    NAKED_LIMIT,
    OPERATOR_LOGIN_AFTER,
    OTHER_ACCOUNT,
    OUR_ACCOUNT,
    REPAIR_INTERVAL,
)
from tests.chaos.report import Report
from tests.support.stack import Stack
from tests.support.webhook_sink import WebhookSink
from tests.support.zmq_request import zmq_request
from trading.calendar import TradingCalendar


class Harness:
    """The stack under the soak, and the soak's own state: its clock, its seeded draws,
    the report, the fault endings due, the money invariants' sampler."""

    def __init__(self, seed: int, days: int, workdir: Path, faults_per_day: int = 9,
                 kills_per_day: int = 1, log: Callable[[str], None] | None = None,
                 with_waiting: bool = False, quantity: int = 1) -> None:
        self.seed, self.days, self.workdir = seed, days, workdir
        self.with_waiting = with_waiting
        self.rng = random.Random(seed)
        # The kill during a gateway restart (issue 33) on its own stream: the seed's other
        # faults stay the ones it always drew.
        self.extra_rng = random.Random(f"{seed}:kill_in_gateway_restart")
        # Issue 32's scenarios (a second account's trades, the reset while a sale
        # fills) on a stream of their own too.
        self.money_rng = random.Random(f"{seed}:money_paths")
        self.away_ref = ""  # the sale filled while the engine was away, that day
        # Every such sale: its execution is never reported to the engine (the reset).
        self.away_refs: list[str] = []
        self.away_pending = False  # fills held: waiting for a sale of ours to rest
        self.away_hold_at = 0.0  # when the hold was last posted (monotonic)
        self.day_budget = DAY_BUDGET
        self.day_plan: list[Any] = []
        self.faults_per_day, self.kills_per_day = faults_per_day, kills_per_day
        self.quantity = quantity
        self.report = Report(seed, days, quantity=quantity)
        if with_waiting:
            self.report.waiting = {}  # drawn like the others
        self.log = log or (lambda line: print(line, flush=True))
        self.calendar = TradingCalendar()
        self.clock_path = workdir / "clock.json"
        self.sim_at = datetime(2026, 11, 23, 9, 0, tzinfo=ET)
        self.speed = 0.0
        self.wall = time.time()
        self.endings: list[tuple[float, str, Callable[[], None]]] = []
        self.assigned_at = -1e9  # when the last early assignment was posted (monotonic)
        self.missed_days: list[str] = []
        self.kill_times: list[float] = []  # wall time of each kill -9 of the engine
        self.sink = WebhookSink()
        self.sink_port = self.sink.port
        self.logins_answered = 0  # login_required alerts the operator has acted on
        self.set_clock(self.sim_at, 0.0)
        self.stack = Stack(workdir, self.sink.url, self.sim_at.isoformat(), {
            # The login manages two accounts (IBSIM_ACCOUNTS): the engine trades ours.
            "gateway": {"request_timeout": 4.0, "account": OUR_ACCOUNT},
            "clock": {"file": str(self.clock_path)},
            "schedule": {"entry_times": ENTRY_TIMES, "repair_interval": REPAIR_INTERVAL,
                         "tick_seconds": 0.05},
            # The nearest expiry a day out (weekly rule), so that lots expire in the soak.
            "strategy": {"expiry_rule": "nearest_dte", "strike_selection": "delta",
                         "target_dte": 1, "limit_walk_interval": 0.1, "order_ack_timeout": 3.0,
                         "exit_retry_backoff": 0.2, "sale_attempts": 2,
                         "quantity": quantity},
            "risk": {"max_open_lots": 20, "max_contracts_per_day": 2 * quantity,
                     "max_short_notional": 10_000_000.0},
            "watchdog": {"gateway_restart": "supervisor", "market_data_silence": 0.0,
                         "escalate_after": 3.0, "backoff_initial": 0.2, "backoff_max": 1.0,
                         "probe_interval": 1.0},
            "alerts": {"retry_initial": 0.1, "retry_max": 0.5, "coalesce_window": 2.0},
            "zmq": {"command_max_age": 30.0},
        }, env={"IBSIM_IB_SCHEDULE": "1",  # IB's daily reset and Sunday re-auth, on our clock
                "IBSIM_ACCOUNTS": f"{OUR_ACCOUNT},{OTHER_ACCOUNT}",
                # The margin check (risk.max_margin_use) scales with the quantity: an
                # account sized for it, else most entries at quantity 3 are skipped.
                "IBSIM_CASH": str(100_000 * max(1, quantity))})
        self.sampler = Sampler(self.broker, lambda: self.rows("SELECT * FROM fills"),
                               lambda: self.link_state() == "READY", quantity, NAKED_LIMIT,
                               lambda what: self.report.violate(self.day, what),
                               account=OUR_ACCOUNT)
        self.day = "start"
        self.last_link = "not asked yet"

    # ---- the clock ----------------------------------------------------------------------

    def set_clock(self, at: datetime, speed: float) -> None:
        self.sim_at, self.speed, self.wall = at, speed, time.time()
        write_clock_file(self.clock_path, at, speed)

    def sim_now(self) -> datetime:
        return self.sim_at + timedelta(seconds=(time.time() - self.wall) * self.speed)

    def sync_gateway_clock(self) -> None:
        try:
            self.stack.ibsim_post("/clock", {"now": self.sim_now().isoformat()})
        except OSError:
            pass  # the gateway is restarting: the next call sets it

    # ---- views ---------------------------------------------------------------------------

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.stack.db_path), timeout=10.0)
        conn.row_factory = sqlite3.Row
        return conn

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            with self.db() as conn:
                return [dict(r) for r in conn.execute(sql, args).fetchall()]
        except sqlite3.OperationalError:
            return []  # the engine has not created the table yet

    def broker(self) -> dict[str, Any] | None:
        try:
            return self.stack.ibsim_state()  # type: ignore[no-any-return]
        except OSError:
            return None

    def link_state(self) -> str:
        try:
            reply = zmq_request(self.stack.zmq, "status", timeout=1.0)
        except (TimeoutError, OSError):
            self.last_link = "engine unreachable over ZeroMQ"
            return "UNREACHABLE"
        if not reply.get("ok"):
            self.last_link = f"status error: {reply.get('error')}"
            return "ERROR"
        link = reply["data"]["link"]
        self.last_link = f"{link['state']} ({link.get('reason', '')})"
        return str(link["state"])

    def not_ready(self, what: str) -> str:
        """A violation's text with what the engine last said (a state and why, or that it
        did not answer) and what supervisord says of the engine."""
        try:
            programs = "; ".join(" ".join(ln.split()[:4]) for ln in
                                 self.stack.ctl("status").splitlines() if ln.strip())
        except Exception as exc:  # a diagnostic: never the soak's end
            programs = f"supervisorctl failed: {exc}"
        return f"{what}: last status {self.last_link}; supervisord: {programs}"

    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Poll `predicate` (keeping ibsim's date in step) until truthy or `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self.sync_gateway_clock()
            self.operator()
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    def operator(self) -> None:
        """The person on call: each new login_required alert is answered by a login (the
        2FA approved) a few seconds later; due fault endings run too."""
        asked = len(self.sink.bodies("login_required"))
        if asked > self.logins_answered:
            self.logins_answered = asked
            self.endings.append((time.monotonic() + OPERATOR_LOGIN_AFTER, "operator_login",
                                 self.operator_login))
        now = time.monotonic()
        for item in [e for e in self.endings if e[0] <= now]:
            self.endings.remove(item)
            item[2]()

    def operator_login(self) -> None:
        """Log in at the gateway; a gateway restarting just then is tried again soon."""
        if not self.post("operator_login", "/fault/login", {}):
            self.endings.append((time.monotonic() + 1.0, "operator_login", self.operator_login))

    # ---- ibsim's control API and the book's integrity -----------------------------------------

    def post(self, kind: str, path: str, body: dict[str, Any]) -> bool:
        try:
            self.stack.ibsim_post(path, body)
            return True
        except OSError:
            self.report.skipped[kind] += 1
            return False

    def _quiet_post(self, path: str, body: dict[str, Any]) -> bool:
        try:
            self.stack.ibsim_post(path, body)
            return True
        except OSError:
            return False

    def check_integrity(self, when: str) -> None:
        self.report.checks["integrity"] += 1
        with self.db() as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            self.report.violate(when, f"PRAGMA integrity_check: {result}")

    def last_log_lines(self, lines: int = 12) -> str:
        """The last lines of each program's log (supervisord's too), for a report."""
        out = []
        for path in sorted((self.stack.root / "run").glob("*.log")):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError as exc:
                tail = [f"(unreadable: {exc})"]
            out.append(f"    == {path.name} ==\n" + "\n".join(f"    {ln}" for ln in tail))
        return "\n".join(out) or "    (no logs)"
