"""Scheduler: the daily entry on the exchange calendar, catch-up, repair, expiry.

The schedule runs on the injected clock (`[clock] start/speed`), so a whole week
can pass in minutes; repair intervals and waits stay in real time. Each entry
slot is claimed in the book before the sale, so a restart cannot sell twice; a
slot the link kept us from is retried as soon as the link is READY again, until
the catch-up deadline, after which the day's attempt is recorded as missed and
an alert says why.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pykka
from loguru import logger

from actors.context import EngineContext
from actors.messages import LinkChanged, PrepareEntry, RepairExits, RunEntry, SellShares
from actors.supervisor import SupervisedActor, start_ticker
from trading.calendar import ET, TradingCalendar
from trading.model import LinkState

# A due slot is asked for again this often (s) while it waits (link, quote, farm).
ENTRY_RETRY_SECONDS = 3.0


@dataclass(frozen=True)
class Tick:
    pass


def due_slots(
    calendar: TradingCalendar, now: datetime, entry_times: list[str]
) -> list[tuple[str, datetime]]:
    """The slots of `now`'s session whose time has come, as (HH:MM, slot time)."""
    day = now.astimezone(ET).date()
    if not calendar.is_session(day):
        return []
    slots = calendar.entry_slots(day, entry_times)
    return [(t.astimezone(ET).strftime("%H:%M"), t) for t in slots if t <= now]


class Scheduler(SupervisedActor):
    name = "scheduler"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.calendar = ctx.calendar
        self._halt = threading.Event()
        self._requested: dict[tuple[str, str], float] = {}
        self._last_repair = time.monotonic()
        self.link_state = LinkState.DISCONNECTED
        self.ticks = 0
        self._prepared: set[tuple[str, str]] = set()  # slots whose preparation was asked
        self._armed: set[tuple[str, str]] = set()  # slots with a timer at their instant
        self._speed = 1.0

    def on_start(self) -> None:
        self.log = logger.bind(actor=self.name)
        self.directory.subscribe(LinkChanged, self.name)
        self._sync_link()
        # At high clock speeds a real second is hours: tick often enough to see each slot.
        speed = self.cfg.clock.speed if self.cfg.clock.start else 1.0
        self.tick_seconds = max(0.01, min(self.cfg.schedule.tick_seconds, 30.0 / speed))
        self._speed = speed
        start_ticker(self.actor_ref, Tick, self.tick_seconds, self._halt, "scheduler-tick")

    def on_stop(self) -> None:
        self._halt.set()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Tick):
            self.tick()
        elif isinstance(message, LinkChanged):
            self.link_state = message.status.state
            if self.link_state == LinkState.READY:
                self.tick()  # catch-up runs right after READY, not at the next tick
        return None

    def _book(self) -> Any:
        return self.directory.proxy("position_book")

    def _sync_link(self) -> None:
        """Take the link state Connection last set (a change published before we
        subscribed, or while we were restarting, is not lost)."""
        if self.directory.link is not None:
            self.link_state = self.directory.link.state

    def tick_count(self) -> int:
        return self.ticks

    def tick(self) -> None:
        self.ticks += 1
        self._sync_link()
        now = self.clock.now()
        try:
            self._prepare(now)
            self._entries(now)
            self._expiry(now)
            self._snapshot(now)
        except Exception as exc:  # a dead peer is restarted by the Supervisor; try next tick
            self.log.warning("scheduler tick failed: {}", exc)
        if time.monotonic() - self._last_repair >= self.cfg.schedule.repair_interval:
            self._last_repair = time.monotonic()
            self.directory.tell("order_executor", RepairExits("scheduled"))

    def _prepare(self, now: datetime) -> None:
        """Within `prepare_lead` of a slot: have the executor prepare it (once), and arm a
        timer for the slot's own instant, so the entry starts at its second rather than at
        the next tick (up to `tick_seconds` late)."""
        lead = self.cfg.schedule.prepare_lead
        day = now.astimezone(ET).date()
        if not self.calendar.is_session(day):
            return
        for at in self.calendar.entry_slots(day, self.cfg.schedule.entry_times):
            ahead = (at - now).total_seconds()
            if ahead <= 0:
                continue
            slot = at.astimezone(ET).strftime("%H:%M")
            key = (day.isoformat(), slot)
            if lead > 0 and ahead <= lead and key not in self._prepared:
                self._prepared.add(key)
                self.directory.tell("order_executor", PrepareEntry(*key))
            wall = ahead / self._speed
            if wall <= self.tick_seconds and key not in self._armed:
                self._armed.add(key)
                timer = threading.Timer(wall, self._tick_now)
                timer.daemon = True
                timer.start()

    def _tick_now(self) -> None:
        if not self._halt.is_set():
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.tell(Tick())

    def _entries(self, now: datetime) -> None:
        book = self._book()
        day = now.astimezone(ET).date()
        for slot, _at in due_slots(self.calendar, now, self.cfg.schedule.entry_times):
            trade_date = day.isoformat()
            entry = book.entry(trade_date, slot).get(timeout=5)
            if entry is not None and entry.state != "interrupted":
                continue
            deadline = self.calendar.catch_up_deadline(day, self.cfg.schedule.catch_up_until)
            if now > deadline:
                self._miss(trade_date, slot, deadline)
                continue
            if self.link_state != LinkState.READY:
                continue  # catch-up: wait for READY (LinkChanged triggers a tick)
            key = (trade_date, slot)
            if time.monotonic() - self._requested.get(key, -1e9) < ENTRY_RETRY_SECONDS:
                continue  # asked already; the executor claims the slot when it runs
            self._requested[key] = time.monotonic()
            self.log.info("entry {} {} due at {:%H:%M} ET", trade_date, slot, now.astimezone(ET))
            self.directory.tell("order_executor", RunEntry(trade_date, slot))

    def _miss(self, trade_date: str, slot: str, deadline: datetime) -> None:
        book = self._book()
        before = book.entry(trade_date, slot).get(timeout=5)
        if not (
            book.start_entry(trade_date, slot).get(timeout=5)
            or book.reclaim_entry(trade_date, slot).get(timeout=5)
        ):
            return
        link = book.link_status().get(timeout=5)
        waited = (before.reason if before else None) or ""
        if waited.startswith("waiting: ") and link.state == LinkState.READY:
            reason = (f"{waited[9:]} until the catch-up deadline "
                      f"{deadline.astimezone(ET):%H:%M} ET")
        else:
            reason = (
                f"link not READY until the catch-up deadline {deadline.astimezone(ET):%H:%M} ET "
                f"({link.state.value}: {link.reason})"
            )
        book.finish_entry(trade_date, slot, "missed", reason).get(timeout=5)
        self.log.error("entry {} {} missed: {}", trade_date, slot, reason)
        self.alerts.raise_alert(
            "entry_missed", f"entry {trade_date} {slot} missed: {reason}", severity="error"
        )

    def _expiry(self, now: datetime) -> None:
        book = self._book()
        book.settle_expired(now.astimezone(ET).isoformat()).get(timeout=10)
        # Assigned shares to sell (strategy.on_assignment = "close_shares"), in a session.
        if self.link_state != LinkState.READY or not self.calendar.is_market_open(now):
            return
        for lot_id in book.due_share_sales(now.timestamp()).get(timeout=10):
            key = ("shares", str(lot_id))
            if time.monotonic() - self._requested.get(key, -1e9) < ENTRY_RETRY_SECONDS:
                continue
            self._requested[key] = time.monotonic()
            self.directory.tell("order_executor", SellShares(lot_id))

    def _snapshot(self, now: datetime) -> None:
        et = now.astimezone(ET)
        day = et.date()
        if (
            not self.calendar.is_session(day)
            or et.strftime("%H:%M") < self.cfg.schedule.snapshot_time
        ):
            return
        book = self._book()
        key = f"snapshot:{day.isoformat()}"
        if book.get_kv(key).get(timeout=5):
            return
        book.snapshot().get(timeout=10)
        book.set_kv(key, True).get(timeout=5)
        self.log.info("end-of-day snapshot for {}", day)
