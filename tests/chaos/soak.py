"""Seeded chaos soak: the whole stack on a fast clock over many simulated trading days,
with faults nobody planned in order, and the invariants checked throughout.

    python -m tests.chaos.soak --seed 7 --days 20        # or: make soak SEED=7 DAYS=20

The stack is real: ibsim, the engine, the dashboard and the alert listener under a
real supervisord started from supervisord.conf, a loopback webhook sink, the engine
on a clock the soak sets (`[clock] file`), ibsim's date kept in step over its
control API. Each simulated day:

1. chaos: 09:33 -> ~09:48 ET at 40x while faults drawn from the seed fire at
   random moments (outages ending in 1101 or 1102, socket drops, gateway restarts,
   logouts past the escalation time, rejected sales and exits, held fills, spot
   jumps through TP and SL, the webhook sink down, 2110 outages, data farm breaks,
   early assignment: the lot must close `assigned`, a closed lot always has a reason)
   and `kill -9` of the engine (PRAGMA integrity_check right after each kill).
   partial fills (quantity >= 2 in slices), stalls past the ack timeout and
   fill-on-cancel races are drawn too (WAITING_FAULTS lists any adversity the engine
   does not survive yet, with its engine issue, drawn only with `--with-waiting`).
   While the faults run, the money invariants (tests/chaos/invariants.py) are sampled
   twice a second (a simulated minute is 1.5 s): live exit quantity <= the short
   position, one exit pair per lot, no short naked longer than the repair interval + 5 s
   while the engine can act, one sale per slot, every fill stored once with its slice;
2. settle: every fault ended, the clock at 1x: the link must come back READY and
   every open lot must have live TP and SL at the broker within one repair
   interval (plus slack for the orders' round trips); the book's open lots must
   match the broker's positions contract by contract;
3. past the catch-up deadline (10:31) and past the close (16:01): the day's
   entries are final (a missed one needs an alert), expired options settle and
   the book still matches the broker;
4. IB's daily reset on the soak's clock (ibsim `--ib-schedule`): 1100 at 23:45 ET, then
   1102 (Friday: 1101 after an hour); the link must be READY again. Each Sunday the
   01:00 ET re-authentication logs the gateway out until the soak logs in.

At the end: every fill stored exactly once, realized P&L equal to the sum over
fills, every alert delivered once and in order after the sink came back. The
report prints the seed, the counts of faults, kills and checks, and every
violation with the command that replays it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ops.clock_source import write_clock_file
from tests.chaos.invariants import Sampler
from tests.support.stack import Stack
from tests.support.webhook_sink import WebhookSink
from tests.support.zmq_request import zmq_request
from trading.calendar import TradingCalendar

ET = ZoneInfo("America/New_York")
FIRST_DAY = date(2026, 11, 23)
ENTRY_TIMES = ["09:35", "09:45"]
CHAOS_SPEED = 40.0  # simulated seconds per real second during the chaos window
CHAOS_SECONDS = 22.0  # real seconds of chaos per day: 09:33 -> ~09:47:40 ET
REPAIR_INTERVAL = 2.0
# After an early assignment no spot jump for this long (real s): the engine's repair
# interval plus its round trips to see the assignment and cancel the exits.
ASSIGN_GRACE = REPAIR_INTERVAL + 3.0
# How long the soak's operator takes to answer a login_required alert (approve the 2FA):
# a gateway restart the Watchdog made after the day's faults ended waits for a login.
OPERATOR_LOGIN_AFTER = 5.0
SETTLE_SLACK = 8.0  # order round trips and exit retry backoff on top of the repair interval
NAKED_LIMIT = REPAIR_INTERVAL + 5.0  # issue 14: the longest a short may stay naked
FINAL_ENTRY_STATES = ("done", "failed", "missed", "skipped")

FAULT_KINDS = (
    "outage_1101",
    "outage_1102",
    "drop",
    "gateway_restart",
    "logout",
    "reject_sale",
    "reject_exits",
    "hold_fills",
    "spot_jump",
    "sink_down",
    "outage_2110",  # IB's other loss code (issue 13): restored by 1101/1102
    "farm_break",  # a data farm breaks (2103/2105/2157) and comes back
    "early_assignment",  # issue 16: the lot closes `assigned`, its exits are cancelled
    "partial_fills",  # issue 14: orders of quantity >= 2 fill in slices
    "stall",  # issue 14: the gateway acts but answers late (past the ack timeout)
    "fill_on_cancel",  # issue 14: a cancel or modify crosses a fill
)
# Relative weights: the slow ones (logout escalates to a gateway restart) rarer.
FAULT_WEIGHTS = (3, 3, 3, 2, 1, 2, 3, 2, 4, 2, 2, 2, 2, 3, 2, 3)
# ibsim's adversities the engine does not survive yet: listed, not drawn, until their
# engine issue lands (then move them into FAULT_KINDS). `--with-waiting` draws them too.
WAITING_FAULTS: dict[str, str] = {}
# Scheduled by the calendar, not drawn: IB's daily reset (every session night, on the
# soak's clock, ibsim's --ib-schedule) and the Sunday re-authentication (each weekend).
SCHEDULED_FAULTS = ("daily_reset", "sunday_reauth")


@dataclass(frozen=True)
class Fault:
    at: float  # real seconds into the day's chaos window
    kind: str
    seconds: float  # how long it lasts (real seconds), where that applies
    size: float = 0.0  # count of rejections, or the spot move


@dataclass
class Report:
    seed: int
    days: int
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    checks: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    entries: Counter[str] = field(default_factory=Counter)
    lots: Counter[str] = field(default_factory=Counter)
    alerts_delivered: int = 0
    alert_kinds: Counter[str] = field(default_factory=Counter)
    crash_alerts: int = 0
    seconds: float = 0.0
    quantity: int = 1
    samples: int = 0
    worst_naked: float = 0.0  # while the engine could act
    worst_naked_wall: float = 0.0  # counting outages, logouts and kills too

    waiting: dict[str, str] = field(default_factory=lambda: dict(WAITING_FAULTS))

    def violate(self, day: str, what: str) -> None:
        self.violations.append(f"{day}: {what}")

    def text(self) -> str:
        lines = [
            f"chaos soak  seed={self.seed}  days={self.days}  quantity={self.quantity}"
            f"  ({self.seconds:.0f} s)",
            f"faults: {sum(self.faults.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.faults.items())),
        ]
        if self.waiting:
            lines.append("faults waiting for their engine issue (not drawn): " + "; ".join(
                f"{k} -> {v}" for k, v in sorted(self.waiting.items())))
        if self.skipped:
            lines.append("faults not applied (gateway down at the time): "
                         + "  ".join(f"{k}={v}" for k, v in sorted(self.skipped.items())))
        lines += [
            f"kills: {self.kills} (kill -9 of the engine; integrity_check after each)",
            f"checks: {sum(self.checks.values())}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.checks.items())),
            "entries: " + "  ".join(f"{k}={v}" for k, v in sorted(self.entries.items())),
            "lots: " + "  ".join(f"{k}={v}" for k, v in sorted(self.lots.items())),
            f"alerts delivered: {self.alerts_delivered} (+{self.crash_alerts} process_crashed"
            " from the supervisord listener)",
            "alert kinds: " + "  ".join(f"{k}={v}" for k, v in sorted(self.alert_kinds.items())),
            f"invariant samples: {self.samples}; worst naked short: {self.worst_naked:.1f} s"
            f" while the engine could act (limit {NAKED_LIMIT:.0f} s),"
            f" {self.worst_naked_wall:.1f} s counting outages and kills",
        ]
        if self.violations:
            lines.append(f"VIOLATIONS: {len(self.violations)}")
            lines += [f"  - {v}" for v in self.violations]
            lines.append(f"replay: make soak SEED={self.seed} DAYS={self.days}"
                         f" QUANTITY={self.quantity}")
        else:
            lines.append("violations: none")
        return "\n".join(lines)

    def as_json(self) -> str:
        return json.dumps({
            "seed": self.seed, "days": self.days, "faults": dict(self.faults),
            "kills": self.kills, "checks": dict(self.checks), "violations": self.violations,
            "entries": dict(self.entries), "lots": dict(self.lots),
            "waiting": self.waiting, "skipped": dict(self.skipped),
            "alerts_delivered": self.alerts_delivered, "alert_kinds": dict(self.alert_kinds),
            "seconds": round(self.seconds, 1), "quantity": self.quantity,
            "samples": self.samples, "worst_naked": round(self.worst_naked, 1),
            "worst_naked_wall": round(self.worst_naked_wall, 1),
        }, sort_keys=True)


def plan_day(rng: random.Random, faults_per_day: int, kills_per_day: int,
             with_waiting: bool = False) -> list[Fault]:
    """The day's faults and kills at random moments of the chaos window."""
    plan: list[Fault] = []
    kinds, weights = FAULT_KINDS, FAULT_WEIGHTS
    if with_waiting:
        kinds, weights = kinds + tuple(WAITING_FAULTS), weights + (2,) * len(WAITING_FAULTS)
    for _ in range(faults_per_day):
        kind = rng.choices(kinds, weights)[0]
        at = rng.uniform(0.0, CHAOS_SECONDS - 3.0)
        if kind in ("stall", "farm_break"):
            # farm_break's size picks the farm: 0 market, 1 hmds, 2 secdef.
            plan.append(Fault(at, kind, rng.uniform(1.0, 6.0),
                              float(rng.randrange(3)) if kind == "farm_break" else 0.0))
        elif kind in ("partial_fills", "fill_on_cancel", "early_assignment"):
            plan.append(Fault(at, kind, 0.0, float(rng.randint(1, 3))))
        elif kind.startswith("outage"):
            plan.append(Fault(at, kind, rng.uniform(0.5, 4.0)))
        elif kind in ("reject_sale", "reject_exits"):
            plan.append(Fault(at, kind, 0.0, float(rng.randint(1, 4))))
        elif kind == "hold_fills":
            plan.append(Fault(at, kind, rng.uniform(1.0, 5.0)))
        elif kind == "sink_down":
            plan.append(Fault(at, kind, rng.uniform(1.0, 8.0)))
        elif kind == "spot_jump":
            move = rng.choice([rng.uniform(-0.08, -0.04), rng.uniform(0.03, 0.06)])
            plan.append(Fault(at, kind, 0.0, move))
        else:
            plan.append(Fault(at, kind, 0.0))
    for _ in range(kills_per_day):
        plan.append(Fault(rng.uniform(1.0, CHAOS_SECONDS - 2.0), "kill", 0.0))
    return sorted(plan, key=lambda f: f.at)


class Soak:
    def __init__(self, seed: int, days: int, workdir: Path, faults_per_day: int = 9,
                 kills_per_day: int = 1, log: Callable[[str], None] | None = None,
                 with_waiting: bool = False, quantity: int = 1) -> None:
        self.seed, self.days, self.workdir = seed, days, workdir
        self.with_waiting = with_waiting
        self.rng = random.Random(seed)
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
        self.sink = WebhookSink()
        self.sink_port = self.sink.port
        self.logins_answered = 0  # login_required alerts the operator has acted on
        self.set_clock(self.sim_at, 0.0)
        self.stack = Stack(workdir, self.sink.url, self.sim_at.isoformat(), {
            "gateway": {"request_timeout": 4.0},
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
        }, env={"IBSIM_IB_SCHEDULE": "1"})  # IB's daily reset and Sunday re-auth, on our clock
        self.sampler = Sampler(self.broker, lambda: self.rows("SELECT * FROM fills"),
                               lambda: self.link_state() == "READY", quantity, NAKED_LIMIT,
                               lambda what: self.report.violate(self.day, what))
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
                                 lambda: self.post("operator_login", "/fault/login", {})
                                 and None))
        now = time.monotonic()
        for item in [e for e in self.endings if e[0] <= now]:
            self.endings.remove(item)
            item[2]()

    # ---- faults ---------------------------------------------------------------------------

    def post(self, kind: str, path: str, body: dict[str, Any]) -> bool:
        try:
            self.stack.ibsim_post(path, body)
            return True
        except OSError:
            self.report.skipped[kind] += 1
            return False

    def apply(self, fault: Fault, t0: float) -> None:
        k, s = fault.kind, fault.seconds
        ok = True
        if k == "kill":
            self.kill_engine()
            return
        if k == "outage_2110":
            restore = self.rng.choice([1101, 1102])
            ok = self.post(k, "/fault/outage", {"seconds": s, "code": 2110,
                                                "restore_code": restore})
        elif k.startswith("outage"):
            ok = self.post(k, "/fault/outage", {"seconds": s, "restore_code": int(k[-4:])})
        elif k == "farm_break":
            farm = ("market", "hmds", "secdef")[int(fault.size)]
            ok = self.post(k, "/fault/farm", {"farm": farm, "broken": True})
            self.endings.append((time.monotonic() + s, "farm_ok", lambda f=farm: self.post(
                "farm_ok", "/fault/farm", {"farm": f, "broken": False}) and None))
        elif k == "stall":
            ok = self.post(k, "/fault/stall", {"seconds": s})
        elif k == "partial_fills":
            # Slices of 1 contract when the quantity allows (3 -> 1, 1, 1).
            ok = self.post(k, "/fault/partial_fills", {"count": int(fault.size),
                                                       "slices": max(2, self.quantity)})
        elif k == "fill_on_cancel":
            ok = self.post(k, "/fault/fill_on_cancel", {
                "count": int(fault.size), "code": self.rng.choice([10148, 161])})
        elif k == "early_assignment":
            state = self.broker()
            shorts = [p for p in (state or {}).get("positions", [])
                      if p["sec_type"] == "OPT" and p["position"] < 0]
            ok = bool(shorts) and self.post(k, "/assign", {"con_id": shorts[0]["con_id"],
                                                           "qty": 1})
            if ok:
                # IB assigns overnight, hours before an exit could fill; drawn intraday,
                # a spot jump 100 ms later fills a TP the engine had no time to cancel
                # (seed 2 did). The engine gets its repair interval, as the issue says.
                self.assigned_at = time.monotonic()
                self.sampler.assigned[shorts[0]["con_id"]] = self.assigned_at
        elif k == "drop":
            ok = self.post(k, "/fault/drop", {})
        elif k == "gateway_restart":
            ok = self.post(k, "/restart", {"seconds": 1})
        elif k == "logout":
            # Logged out (waiting for 2FA) with the socket dropped: the link stays down
            # past escalate_after and the Watchdog restarts the gateway program.
            ok = self.post(k, "/fault/logout", {"seconds": 600}) and self.post(
                k, "/fault/drop", {})
            self.endings.append((time.monotonic() + 30.0, "login", lambda: self.post(
                "login", "/fault/login", {}) and None))
        elif k == "reject_sale":
            ok = self.post(k, "/fault/reject", {"count": int(fault.size), "action": "SELL"})
        elif k == "reject_exits":
            ok = self.post(k, "/fault/reject", {"count": int(fault.size), "action": "BUY"})
        elif k == "hold_fills":
            ok = self.post(k, "/fault/hold_fills", {"seconds": s})
        elif k == "spot_jump" and time.monotonic() - self.assigned_at < ASSIGN_GRACE:
            self.report.skipped["spot_jump_after_assignment"] += 1
            return
        elif k == "spot_jump":
            state = self.broker()
            ok = state is not None and self.post(
                k, "/market", {"spot": round(state["spot"] * (1 + fault.size), 2)})
        elif k == "sink_down":
            self.sink.stop()
            self.endings.append((time.monotonic() + s, "sink_up", self.sink_up))
        if ok:
            self.report.faults[k] += 1

    def sink_up(self) -> None:
        if self.sink._server is None:
            self.sink.port = self.sink_port
            self.sink.start()

    def end_all_faults(self) -> None:
        for _, _, end in self.endings:
            end()
        self.endings.clear()
        self.sink_up()
        for path, body in (("/fault/outage_end", {}), ("/fault/login", {}),
                           ("/fault/hold_fills", {"seconds": 0}), ("/fault/reject", {"count": 0}),
                           ("/fault/stall", {"seconds": 0}),
                           ("/fault/partial_fills", {"count": 0}),
                           ("/fault/fill_on_cancel", {"count": 0}),
                           *(("/fault/farm", {"farm": f, "broken": False})
                             for f in ("market", "hmds", "secdef"))):
            self.wait(lambda p=path, b=body: self._quiet_post(p, b), 60)

    def _quiet_post(self, path: str, body: dict[str, Any]) -> bool:
        try:
            self.stack.ibsim_post(path, body)
            return True
        except OSError:
            return False

    def kill_engine(self) -> None:
        try:
            pid = self.stack.pid("engine")
        except ValueError:
            self.report.skipped["kill"] += 1  # between a kill and supervisord's restart
            return
        os.kill(pid, signal.SIGKILL)
        self.report.kills += 1
        self.check_integrity(f"after kill {self.report.kills}")

    # ---- checks ---------------------------------------------------------------------------

    def check_integrity(self, when: str) -> None:
        self.report.checks["integrity"] += 1
        with self.db() as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            self.report.violate(when, f"PRAGMA integrity_check: {result}")

    def open_lots(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM lots WHERE state != 'closed' ORDER BY id")

    def unprotected(self) -> list[str]:
        """Open lots without a live TP and SL of theirs (one OCA group) at the broker."""
        state = self.broker()
        if state is None:
            return ["the gateway is not answering"]
        live = {o["order_ref"]: o for o in state["open_orders"]}
        problems = []
        for lot in self.open_lots():
            tp, sl = live.get(lot["tp_order_ref"] or ""), live.get(lot["sl_order_ref"] or "")
            if lot["state"] != "open" or tp is None or sl is None:
                problems.append(f"lot {lot['id']} state={lot['state']} tp={tp is not None} "
                                f"sl={sl is not None}")
            elif tp["oca_group"] != sl["oca_group"] or tp["order_type"] != "LMT" \
                    or sl["order_type"] != "STP":
                problems.append(f"lot {lot['id']}: exits are not one TP LMT + SL STP pair")
        return problems

    def mismatch(self) -> list[str]:
        """Book's open lots vs the broker's option positions, contract by contract."""
        state = self.broker()
        if state is None:
            return ["the gateway is not answering"]
        broker = {p["con_id"]: -p["position"] for p in state["positions"]
                  if p["sec_type"] == "OPT"}
        book: Counter[int] = Counter()
        for lot in self.open_lots():
            book[lot["con_id"]] += lot["qty"]
        return [f"con_id {c}: book {book.get(c, 0)} short, broker {broker.get(c, 0)} short"
                for c in sorted(set(book) | set(broker)) if book.get(c, 0) != broker.get(c, 0)]

    def check(self, day: str, name: str, problems: Callable[[], list[str]],
              timeout: float) -> None:
        self.report.checks[name] += 1
        found = self.wait(lambda: not problems(), timeout)
        if not found:
            left = problems()
            if left:
                self.report.violate(day, f"{name} after {timeout:.0f} s: {'; '.join(left)}")

    # ---- one day ----------------------------------------------------------------------------

    def run_day(self, day: date) -> None:
        d = day.isoformat()
        plan = plan_day(self.rng, self.faults_per_day, self.kills_per_day, self.with_waiting)
        self.log(f"[{d}] chaos: " + ", ".join(f"{f.kind}@{f.at:.1f}s" for f in plan))
        self.post("spot", "/market", {"spot": 600.0})
        self.set_clock(datetime(day.year, day.month, day.day, 9, 33, tzinfo=ET), CHAOS_SPEED)
        t0 = time.monotonic()
        pending = list(plan)
        self.day = d
        self.sampler.start()
        while time.monotonic() - t0 < CHAOS_SECONDS:
            now = time.monotonic()
            while pending and now - t0 >= pending[0].at:
                self.apply(pending.pop(0), t0)
            self.operator()
            self.sync_gateway_clock()
            time.sleep(0.05)  # the scenario's pace, not a wait for a result
        deadline = datetime(day.year, day.month, day.day, 10, 31, tzinfo=ET)
        # Some days an outage outlasts the catch-up deadline: what is not sold is missed.
        if self.rng.random() < 0.25 and self.post(
            "outage_past_deadline", "/fault/outage", {"seconds": 600, "restore_code": 1102}
        ):
            self.report.faults["outage_past_deadline"] += 1
            self.set_clock(deadline, 1.0)
            self.wait(lambda: len(self.rows(
                "SELECT 1 FROM entry_attempts WHERE trade_date = ? AND state IN"
                " ('done', 'missed')", (d,))) == len(ENTRY_TIMES), 15)
        # Settle: faults over, time at 1x. The link must come back and the lots be whole.
        self.set_clock(max(self.sim_now(), self.sim_at), 1.0)
        self.end_all_faults()
        # The settle is sampled too (its repairs are what ends a naked short), then stop.
        self.wait(lambda: self.link_state() == "READY", 90)
        self.wait(lambda: not self.unprotected(), REPAIR_INTERVAL + SETTLE_SLACK)
        self.sampler.stop()
        self.report.samples = self.sampler.samples
        self.report.worst_naked = self.sampler.worst_naked
        self.report.worst_naked_wall = self.sampler.worst_naked_wall
        self.report.checks["money_invariants"] += 1
        self.report.checks["ready"] += 1
        if not self.wait(lambda: self.link_state() == "READY", 90):
            self.report.violate(d, self.not_ready("link not READY 90 s after the faults ended"))
        self.wait(lambda: not self.rows(
            "SELECT 1 FROM entry_attempts WHERE trade_date = ? AND state = 'started'", (d,)), 60)
        self.check(d, "protected", self.unprotected, REPAIR_INTERVAL + SETTLE_SLACK)
        self.check(d, "book_matches_broker", self.mismatch, 20)
        # Past the catch-up deadline: the day's entries are final.
        if self.sim_now() < deadline:
            self.set_clock(deadline, 1.0)
        self.report.checks["entries_final"] += 1
        final = self.wait(lambda: (rows := self.rows(
            "SELECT * FROM entry_attempts WHERE trade_date = ?", (d,))) and len(rows) == len(
            ENTRY_TIMES) and all(r["state"] in FINAL_ENTRY_STATES for r in rows) and rows, 30)
        if not final:
            states = [(r["slot"], r["state"]) for r in self.rows(
                "SELECT * FROM entry_attempts WHERE trade_date = ?", (d,))]
            self.report.violate(d, f"entries not final after the catch-up deadline: {states}")
        else:
            for r in final:
                self.report.entries[r["state"]] += 1
                if r["state"] == "missed":
                    self.missed_days.append(d)
        # After the close: expiries settle at the broker and in the book.
        self.set_clock(datetime(day.year, day.month, day.day, 16, 1, tzinfo=ET), 1.0)
        self.check(d, "book_matches_broker_after_expiry", self.mismatch, 30)
        self.check(d, "protected_after_close", self.unprotected, REPAIR_INTERVAL + SETTLE_SLACK)
        self.nightly_reset(day)
        self.log(f"[{d}] done in {time.monotonic() - t0:.0f} s; violations so far: "
                 f"{len(self.report.violations)}")

    def nightly_reset(self, day: date) -> None:
        """IB's daily reset on the soak's clock (ibsim --ib-schedule): 1100 at 23:45 ET,
        1102 three minutes later (Friday: 1101 at 00:45); the link must be READY after."""
        d = day.isoformat()
        self.set_clock(datetime(day.year, day.month, day.day, 23, 46, tzinfo=ET), 1.0)
        self.sync_gateway_clock()
        state = self.broker()
        if state is None or not state["faults"]["outage"]:
            self.report.skipped["daily_reset"] += 1
            return
        self.report.faults["daily_reset"] += 1
        self.wait(lambda: self.link_state() != "READY", 5)  # the engine hears the 1100
        end = datetime(day.year, day.month, day.day, 23, 49, tzinfo=ET)
        if day.weekday() == 4:  # the weekend reset: an hour, ends in 1101
            end = datetime(day.year, day.month, day.day, 0, 46, tzinfo=ET) + timedelta(days=1)
        self.set_clock(end, 1.0)
        self.report.checks["ready_after_reset"] += 1
        if not self.wait(lambda: self.link_state() == "READY", 60):
            self.report.violate(d, self.not_ready("link not READY 60 s after IB's daily reset"))

    def sunday_reauth(self, sunday: date) -> None:
        """The weekly re-authentication at 01:00 ET Sunday: ibsim logs out; the operator
        logs in a little later; the link must come back READY."""
        d = sunday.isoformat()
        self.set_clock(datetime(sunday.year, sunday.month, sunday.day, 1, 5, tzinfo=ET), 1.0)
        self.sync_gateway_clock()
        state = self.broker()
        if state is None or not state["faults"]["logged_out"]:
            self.report.skipped["sunday_reauth"] += 1
            return
        self.report.faults["sunday_reauth"] += 1
        self.wait(lambda: self.link_state() != "READY", 10)
        self.wait(lambda: self._quiet_post("/fault/login", {}), 30)
        self.report.checks["ready_after_reauth"] += 1
        if not self.wait(lambda: self.link_state() == "READY", 90):
            self.report.violate(d, self.not_ready("link not READY 90 s after the Sunday login"))

    # ---- the end ------------------------------------------------------------------------------

    def final_checks(self) -> None:
        end = "end"
        self.check_integrity("end")
        # Entries: never more than the slots per day (the broker's sales, by their refs).
        state = self.broker() or {"executions": []}
        sales: Counter[str] = Counter()
        for e in state["executions"]:
            if e["order_ref"].startswith("tb:") and ":sale:" in e["order_ref"] \
                    and e["side"] in ("SLD", "SELL"):
                sales[e["order_ref"].split(":")[1]] += e["qty"]
        self.report.checks["entries_per_day"] += 1
        for day, qty in sorted(sales.items()):
            if qty > len(ENTRY_TIMES) * self.quantity:
                self.report.violate(day, f"{qty} sold, more than {len(ENTRY_TIMES)} slots of "
                                         f"{self.quantity}")
        # Fills: every execution of ours stored once; nothing stored the broker never did.
        self.report.checks["fills_once"] += 1
        ours = {e["exec_id"] for e in state["executions"] if e["order_ref"].startswith("tb:")}
        stored = Counter(r["exec_id"] for r in self.rows("SELECT exec_id FROM fills"))
        dup = [x for x, n in stored.items() if n > 1]
        if dup:
            self.report.violate(end, f"fills stored more than once: {dup}")
        if len(state["executions"]) < 500:  # the control API shows the last 500
            missing, extra = ours - set(stored), set(stored) - ours
            if missing:
                self.report.violate(end, f"broker executions missing from the book: {missing}")
            if extra:
                self.report.violate(end, f"book fills the broker never made: {extra}")
        # Realized P&L = the sum over the fills, per sale: a lot and the pieces its exit
        # slices closed (same slot, contract and entry time) together, once all closed.
        self.report.checks["pnl_from_fills"] += 1
        families: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for lot in self.rows("SELECT * FROM lots"):
            if lot["state"] == "closed":
                self.report.lots[lot["close_reason"] or "closed"] += 1
                if not lot["close_reason"]:  # closed iff gone at the broker, with a reason
                    self.report.violate(end, f"lot {lot['id']} closed without a reason")
            key = (lot["trade_date"], lot["slot"], lot["con_id"], lot["entry_time"])
            families.setdefault(key, []).append(lot)
        for lots in families.values():
            if any(lot["state"] != "closed" or lot["close_reason"] not in (
                    "take_profit", "stop_loss", "expired") for lot in lots):
                continue
            fills = [f for lot in lots
                     for f in self.rows("SELECT * FROM fills WHERE lot_id = ?", (lot["id"],))]
            mult = lots[0]["multiplier"] or 100
            cash = sum((f["price"] if f["side"] == "SLD" else -f["price"]) * f["qty"] * mult
                       for f in fills)
            expected = round(cash - sum(f["commission"] or 0.0 for f in fills), 2)
            realized = sum(lot["realized_pnl"] or 0.0 for lot in lots)
            if abs(expected - realized) > 0.011 * len(lots):
                self.report.violate(end, f"lots {[lot['id'] for lot in lots]} realized "
                                         f"{realized:.2f} but their fills say {expected}")
        self.report.lots["open"] = len(self.open_lots())
        # Alerts: all delivered, each once, in order.
        self.report.checks["alerts_delivered"] += 1
        delivered = self.wait(lambda: not self.rows(
            "SELECT 1 FROM alert_outbox WHERE delivered_at IS NULL LIMIT 1"), 60)
        if not delivered:
            self.report.violate(end, "alerts still undelivered 60 s after the sink came back")
        bodies = self.sink.bodies()
        ids = [b["id"] for b in bodies if b.get("id")]
        self.report.crash_alerts = sum(1 for b in bodies if b.get("kind") == "process_crashed")
        self.report.alerts_delivered = len(ids)
        self.report.alert_kinds = Counter(b.get("kind", "?") for b in bodies if b.get("id"))
        stored_ids = [r["id"] for r in self.rows("SELECT id FROM alerts ORDER BY id")]
        dups = sorted(x for x, n in Counter(ids).items() if n > 1)
        if dups:
            self.report.violate(end, f"alerts delivered more than once: {dups}")
        if ids != sorted(ids):
            self.report.violate(end, "alerts delivered out of order")
        if set(stored_ids) - set(ids):
            lost = sorted(set(stored_ids) - set(ids))
            self.report.violate(end, f"alerts never delivered: {lost}")
        self.report.checks["missed_alerted"] += 1
        texts = [b.get("message", "") for b in bodies if b.get("kind") == "entry_missed"]
        for day in self.missed_days:
            if not any(day in t for t in texts):
                self.report.violate(day, "entry missed without an entry_missed alert")

    def progress(self, day: date, done: int, started: float) -> None:
        """One line per simulated day (issue 19): day, faults so far, violations, ETA."""
        spent = time.monotonic() - started
        eta = spent / done * (self.days - done)
        self.log(f"soak day {done}/{self.days} ({day.isoformat()}): faults so far "
                 f"{sum(self.report.faults.values())}, violations {len(self.report.violations)}"
                 f", ETA {eta:.0f} s")

    def run(self) -> Report:
        started = time.monotonic()
        self.stack.start()
        try:
            if not self.wait(lambda: self.link_state() == "READY", 90):
                self.report.violate("start", "the engine never became READY")
                return self.report
            day, done = FIRST_DAY, 0
            while done < self.days:
                if day.weekday() == 6 and done:
                    self.sunday_reauth(day)
                if self.calendar.is_session(day):
                    self.run_day(day)
                    done += 1
                    self.progress(day, done, started)
                day += timedelta(days=1)
            self.final_checks()
        finally:
            self.report.seconds = time.monotonic() - started
            self.stack.stop()
            self.sink.stop()
        return self.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--faults-per-day", type=int, default=9)
    parser.add_argument("--kills-per-day", type=int, default=1)
    parser.add_argument("--quantity", type=int, default=1,
                        help="the strategy's quantity (contracts per sale)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, book)")
    parser.add_argument("--with-waiting", action="store_true",
                        help="also draw the faults waiting for their engine issue")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"soak-{args.seed}-"))
    report = Soak(args.seed, args.days, workdir, args.faults_per_day, args.kills_per_day,
                  with_waiting=args.with_waiting, quantity=args.quantity).run()
    print(report.text())
    print("SOAK_JSON " + report.as_json())
    print(f"work dir: {workdir}" if args.keep else "")
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
