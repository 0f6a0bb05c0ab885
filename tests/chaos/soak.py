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
   and `kill -9` of the engine (PRAGMA integrity_check right after each kill), on about
   half the days while a gateway restart it was asked for is under way (issue 33: at
   the request, with the gateway going down, or with the new one up; its own stream).
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
4. IB's daily reset on the soak's clock (ibsim `--ib-schedule`): 1100 at 00:15 ET, then
   1102 (Friday 23:00 to Saturday 03:00: 1101); the link must be READY again. Each Sunday the
   01:00 ET re-authentication logs the gateway out until the soak logs in.

A day that does not finish within `--day-budget` real seconds (600) is a violation
naming the seed, the day, the faults drawn and the last log lines of each program; the
soak then stops with its report instead of hanging.

At the end: every fill stored exactly once, realized P&L equal to the sum over
fills, every alert delivered once and in order after the sink came back. The
report prints the seed, the counts of faults, kills and checks, and every
violation with the command that replays it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from tests.chaos.checks import Checks
from tests.chaos.faults import Faults
from tests.chaos.plan import (
    CHAOS_SECONDS,
    CHAOS_SPEED,
    DAY_BUDGET,
    ENTRY_TIMES,
    ET,
    FAULT_KINDS,
    FAULT_WEIGHTS,
    FINAL_ENTRY_STATES,
    FIRST_DAY,
    REPAIR_INTERVAL,
    RESET_WHILE_SALE_FILLS,
    SCHEDULED_FAULTS,
    SETTLE_SLACK,
    WAITING_FAULTS,
    Fault,
    plan_day,
    plan_money_paths,
)
from tests.chaos.report import Report

# The names tests and tools import from here (the soak's entry point).
__all__ = ["FAULT_KINDS", "FAULT_WEIGHTS", "SCHEDULED_FAULTS", "WAITING_FAULTS", "Fault",
           "Report", "Soak", "main", "plan_day"]


class Soak(Faults, Checks):
    """The whole soak: the stack (Harness), its faults (Faults), its checks (Checks), run
    day by day with IB's nightly reset and the Sunday re-authentication."""

    # ---- one day ----------------------------------------------------------------------------

    def run_day(self, day: date) -> None:
        d = day.isoformat()
        plan = plan_day(self.rng, self.faults_per_day, self.kills_per_day, self.with_waiting,
                        self.extra_rng)
        plan = sorted(plan + plan_money_paths(self.money_rng), key=lambda f: f.at)
        self.day_plan = plan
        self.away_ref, self.away_pending = "", False
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
            if self.away_pending and self.reset_while_sale_fills(d):
                break  # the clock is past tonight's reset: the day's chaos is over
            self.operator()
            self.sync_gateway_clock()
            time.sleep(0.05)  # the scenario's pace, not a wait for a result
        if self.away_pending:  # no sale of ours rested in the window
            self.away_pending = False
            self.report.skipped[RESET_WHILE_SALE_FILLS] += 1
            self.log(f"[{d}] {RESET_WHILE_SALE_FILLS}: no sale of ours rested in the window")
            self._quiet_post("/fault/hold_fills", {"seconds": 0})
        away = bool(self.away_ref)
        deadline = datetime(day.year, day.month, day.day, 10, 31, tzinfo=ET)
        # Some days an outage outlasts the catch-up deadline: what is not sold is missed.
        # (Drawn every day, so the seed's stream stays as it was; not past the reset.)
        if self.rng.random() < 0.25 and not away and self.post(
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
        self.expect_ready(d, "ready", 90, "link not READY 90 s after the faults ended")
        self.wait(lambda: not self.rows(
            "SELECT 1 FROM entry_attempts WHERE trade_date = ? AND state = 'started'", (d,)), 60)
        self.check(d, "protected", self.unprotected, REPAIR_INTERVAL + SETTLE_SLACK)
        self.check(d, "book_matches_broker", self.mismatch, 20)
        if away:
            # The sale that filled while the engine was away across the reset is our
            # lot (the protected check above saw its exits; the sampler its naked time).
            self.check(d, "sale_filled_while_away_is_a_lot", self.away_not_a_lot, 20)
        # Past the catch-up deadline: the day's entries are final.
        if self.sim_now() < deadline:
            self.set_clock(deadline, 1.0)
        self.report.checks["entries_final"] += 1
        # Past the reset the day's later slots never started (the engine was away).
        slots = 1 if away else len(ENTRY_TIMES)
        final = self.wait(lambda: (rows := self.rows(
            "SELECT * FROM entry_attempts WHERE trade_date = ?", (d,))) and len(rows) >= slots
            and all(r["state"] in FINAL_ENTRY_STATES for r in rows) and rows, 30)
        if not final:
            states = [(r["slot"], r["state"]) for r in self.rows(
                "SELECT * FROM entry_attempts WHERE trade_date = ?", (d,))]
            self.report.violate(d, f"entries not final after the catch-up deadline: {states}")
        else:
            for r in final:
                self.report.entries[r["state"]] += 1
                if r["state"] == "missed":
                    self.missed_days.append(d)
        if not away:  # (past the reset already: the close and the reset are behind)
            # After the close: expiries settle at the broker and in the book.
            self.set_clock(datetime(day.year, day.month, day.day, 16, 1, tzinfo=ET), 1.0)
            self.check(d, "book_matches_broker_after_expiry", self.mismatch, 30)
            self.check(d, "protected_after_close", self.unprotected,
                       REPAIR_INTERVAL + SETTLE_SLACK)
            self.nightly_reset(day)
        self.log(f"[{d}] done in {time.monotonic() - t0:.0f} s; violations so far: "
                 f"{len(self.report.violations)}")

    def run_day_within_budget(self, day: date) -> bool:
        """run_day on a worker thread, given `day_budget` real seconds: a day that does
        not finish is a violation naming the seed, the day, the faults drawn and the last
        log lines of each program, and the soak stops there with its report (the stack
        is shut down under the stuck day). True when the day finished."""
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.run_day(day)
            except BaseException as exc:  # reported by the caller, never lost
                failure.append(exc)

        worker = threading.Thread(target=work, name=f"soak-day-{day}", daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(self.day_budget)
        if worker.is_alive():
            faults = ", ".join(f"{f.kind}@{f.at:.1f}s" for f in self.day_plan) or "none"
            self.report.violate(day.isoformat(), (
                f"the day did not finish within its budget of {self.day_budget:.0f} s "
                f"(seed {self.seed}, day {day.isoformat()}, still running after "
                f"{time.monotonic() - started:.0f} s; last link status {self.last_link}); "
                f"faults drawn: {faults}; last log lines:\n{self.last_log_lines()}"))
            self.log(f"[{day.isoformat()}] over its budget: the soak stops with its report")
            return False
        if failure:
            raise failure[0]
        return True

    def nightly_reset(self, day: date) -> None:
        """IB's reset after this day, on the soak's clock (ibsim --ib-schedule, IB's
        published windows): 1100 at 00:15 ET, 1102 three minutes later; Friday the
        weekend reset, 23:00 to Saturday 03:00 ET, ends in 1101; READY again after."""
        next_day = day + timedelta(days=1)
        at = datetime(next_day.year, next_day.month, next_day.day, 0, 16, tzinfo=ET)
        end = datetime(next_day.year, next_day.month, next_day.day, 0, 19, tzinfo=ET)
        if day.weekday() == 4:  # the weekend reset
            at = datetime(day.year, day.month, day.day, 23, 1, tzinfo=ET)
            end = datetime(next_day.year, next_day.month, next_day.day, 3, 1, tzinfo=ET)
        if not self.scheduled_fault("daily_reset", "outage", at):
            return
        self.wait(lambda: self.link_state() != "READY", 5)  # the engine hears the 1100
        self.set_clock(end, 1.0)
        self.expect_ready(day.isoformat(), "ready_after_reset", 60,
                          "link not READY 60 s after IB's daily reset")

    def sunday_reauth(self, sunday: date) -> None:
        """The weekly re-authentication at 01:00 ET Sunday: ibsim logs out; the operator
        logs in a little later; the link must come back READY."""
        at = datetime(sunday.year, sunday.month, sunday.day, 1, 5, tzinfo=ET)
        if not self.scheduled_fault("sunday_reauth", "logged_out", at):
            return
        self.wait(lambda: self.link_state() != "READY", 10)
        self.wait(lambda: self._quiet_post("/fault/login", {}), 30)
        self.expect_ready(sunday.isoformat(), "ready_after_reauth", 90,
                          "link not READY 90 s after the Sunday login")

    def scheduled_fault(self, kind: str, flag: str, at: datetime) -> bool:
        """Move both clocks to `at`, inside one of ibsim's scheduled faults: whether the
        gateway shows it (its `flag` among the faults), counted as a fault or as skipped."""
        self.set_clock(at, 1.0)
        self.sync_gateway_clock()
        state = self.broker()
        if state is None or not state["faults"][flag]:
            self.report.skipped[kind] += 1
            return False
        self.report.faults[kind] += 1
        return True

    def expect_ready(self, day: str, check: str, timeout: float, what: str) -> None:
        """The check `check`: the link READY within `timeout` s, else a violation `what`."""
        self.report.checks[check] += 1
        if not self.wait(lambda: self.link_state() == "READY", timeout):
            self.report.violate(day, self.not_ready(what))

    # ---- the run ------------------------------------------------------------------------------

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
                    if not self.run_day_within_budget(day):
                        return self.report  # a hung day: its report, not the rest
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
    parser.add_argument("--day-budget", type=float, default=DAY_BUDGET,
                        help="real seconds a simulated day may take before it is reported "
                             "as a violation and the soak stops")
    parser.add_argument("--with-waiting", action="store_true",
                        help="also draw the faults waiting for their engine issue")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix=f"soak-{args.seed}-"))
    soak = Soak(args.seed, args.days, workdir, args.faults_per_day, args.kills_per_day,
                  with_waiting=args.with_waiting, quantity=args.quantity)
    soak.day_budget = args.day_budget
    report = soak.run()
    print(report.text())
    print("SOAK_JSON " + report.as_json())
    print(f"work dir: {workdir}" if args.keep else "")
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
