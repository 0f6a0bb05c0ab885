"""The chaos soak's plan: its timing, the fault kinds it draws (with their weights) and
`plan_day`, a seeded day's faults and kills at random moments of the chaos window."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

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
    "early_assignment",  # issue 16: the lot closes `assigned` (issue 32: shares late too)
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
# Issue 33: `kill -9` of the engine during a gateway restart it was asked for, at one of
# its steps (size): 0 the moment the request is sent, 1 once supervisord shows the
# gateway going down, 2 once the new gateway runs (the engine still watching it). Drawn
# on its own seeded stream (see plan_day), on about half the days.
KILL_IN_GATEWAY_RESTART = "kill_in_gateway_restart"
KILL_IN_GATEWAY_RESTART_ODDS = 0.5
GATEWAY_RESTART_STEPS = ("request_sent", "gateway_down", "gateway_back")
# A simulated day longer than this (real seconds) is a violation: the soak reports it
# (seed, day, faults drawn, the programs' last log lines) and stops, never hangs.
DAY_BUDGET = 600.0


@dataclass(frozen=True)
class Fault:
    at: float  # real seconds into the day's chaos window
    kind: str
    seconds: float  # how long it lasts (real seconds), where that applies
    size: float = 0.0  # count of rejections, or the spot move



def plan_day(rng: random.Random, faults_per_day: int, kills_per_day: int,
             with_waiting: bool = False, extra: random.Random | None = None) -> list[Fault]:
    """The day's faults and kills at random moments of the chaos window. `extra` draws
    the kill during a gateway restart: its own stream, so that a seed's other faults are
    the ones it always drew."""
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
    if extra is not None and extra.random() < KILL_IN_GATEWAY_RESTART_ODDS:
        plan.append(Fault(extra.uniform(1.0, CHAOS_SECONDS - 6.0), KILL_IN_GATEWAY_RESTART,
                          0.0, float(extra.randrange(len(GATEWAY_RESTART_STEPS)))))
    return sorted(plan, key=lambda f: f.at)


# Issue 32's scenarios, drawn on their own seeded stream (plan_money_paths) so that a
# seed's other faults are the ones it always drew.
# The login manages two accounts (ibsim IBSIM_ACCOUNTS); the engine trades the first.
OUR_ACCOUNT, OTHER_ACCOUNT = "DU1234567", "DU7654321"
# The other account trades (a hand order, filled at once) the put we hold: size > 0 a
# sale of that many, < 0 a buy. Nothing of it may touch our lots, exits or checks.
OTHER_ACCOUNT_TRADE = "other_account_trade"
# "Reset while a sale fills": fills are held before the day's first slot; once a sale
# of ours rests the engine is stopped, the sale fills and the clock moves past IB's
# daily reset (ibsim /scenario/filled_while_away), then the engine starts again: the
# sale must be our lot with exits (not an outside sale, not "nothing was sold").
RESET_WHILE_SALE_FILLS = "reset_while_sale_fills"
RESET_WHILE_SALE_FILLS_ODDS = 0.3
HOLD_FILLS_AT = 2.0  # real s into the chaos window: before the 09:35 slot (at ~3 s)


def plan_money_paths(rng: random.Random) -> list[Fault]:
    """The day's other-account trades (none to two) and, on some days, the reset while
    a sale fills (at HOLD_FILLS_AT, when its fills are held)."""
    plan = []
    for _ in range(rng.randint(0, 2)):
        qty = float(rng.randint(1, 2))
        plan.append(Fault(rng.uniform(4.0, CHAOS_SECONDS - 1.0), OTHER_ACCOUNT_TRADE, 0.0,
                          qty if rng.random() < 0.5 else -qty))
    if rng.random() < RESET_WHILE_SALE_FILLS_ODDS:
        plan.append(Fault(HOLD_FILLS_AT, RESET_WHILE_SALE_FILLS, 0.0))
    return sorted(plan, key=lambda f: f.at)
