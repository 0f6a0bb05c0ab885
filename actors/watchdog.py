"""Watchdog: link health. Sees a broken link, says so at once, and repairs it.

Signals: error 1100 (the gateway lost IB while our socket stays open), the
socket closed, a heartbeat probe unanswered `probe_failures` times, market
data silent in market hours. On any of them the link is already shown as not
READY (Connection publishes the state the moment the signal arrives); the
Watchdog alerts, restarts the Connection actor through the Supervisor with
exponential backoff until READY, and escalates to a gateway restart (the
configured method) when the link stays down past `escalate_after`. Recovery
raises an alert with the outage's length.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loguru import logger

from actors.context import EngineContext
from actors.messages import LinkChanged
from actors.supervisor import SupervisedActor, start_ticker
from ops.backoff import backoff_delay
from trading.calendar import ET
from trading.ib_hours import in_quiet_window, weekly_reauth
from trading.model import LinkState, LinkStatus

TICK_SECONDS = 0.2
WEEKLY_REAUTH = "weekly re-authentication"
# The escalation's memory in the book's settings (kv): a gateway restart asks for a
# login (2FA) whatever process asked for it, so an engine started again (a crash, kill -9,
# supervisord) must not restart the gateway once more while a login is awaited, nor spend
# the day's restarts anew.
ESCALATION_KEY = "watchdog_escalation"
# How often the gateway program's state is read (supervisord) while the link is down.
GATEWAY_CHECK_SECONDS = 2.0
# A program seen EXITED or FATAL this long is not one supervisord is restarting itself
# (autorestart acts within its next loop, about a second); STOPPED is acted on at once.
NOT_RUNNING_GRACE = 2.5
# The wait for a login is reported at escalate_after, then at doubling intervals up to
# this (or escalate_after when that is longer): an end to silence, not a 2FA loop.
WAIT_REPORT_MAX = 3600.0


@dataclass(frozen=True)
class _Tick:
    pass


class Watchdog(SupervisedActor):
    name = "watchdog"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self._halt = threading.Event()
        self.link = LinkStatus(LinkState.DISCONNECTED, time.time(), "engine starting")
        self.down_since: float | None = None
        self.down_reason = ""
        # Deliberate Connection restarts since the link was last stable (READY for
        # `stable_after`): they are spaced 1 s, 2 s, 4 s ... up to `backoff_max` apart,
        # across outages, so a flapping gateway costs a few restarts, not one per flap.
        self.restarts = 0
        self.last_restart_at = -1e9
        self.ready_since: float | None = None
        self.next_restart_at = 0.0
        self.id_in_use_alerted = False
        # Bounded escalation: gateway restarts per ET day, and after one that did not
        # bring READY, a single login_required alert and a wait (no 2FA loop).
        self.gateway_day = ""
        self.gateway_restarts = 0
        self.awaiting_login = False
        self.login_alerted = False
        # The wait after a gateway restart (epoch s): since when, reports made, next one.
        self.login_wait_since = 0.0
        self.wait_reports = 0
        self.next_wait_report = 0.0
        self.budget_alerted = ""
        # The gateway program's state as last read (None: the method cannot tell), and
        # since when (monotonic) it has been seen not running.
        self.gateway_seen: str | None = None
        self.not_running_since: float | None = None
        self.next_gateway_check = 0.0
        # A gateway restart asked for and not yet reported (saved before the call): an
        # engine killed during it finds this set when it starts again, and says so.
        self.restart_pending = False
        self.interrupted_restart = False
        # When the pending restart was asked for (saved with it): its own report, if the
        # engine got to send it before the kill, is not sent twice.
        self.pending_restart_at = 0.0
        self.weekly_noted = ""
        self.escalated_at: float | None = None
        # When this Watchdog last asked for a gateway restart (epoch s): a READY the
        # Connection set before it is the old gateway's, not a sign the restart helped.
        self.gateway_restart_at = 0.0
        self.probe_failures = 0
        self.next_probe_at = time.monotonic() + self.cfg.watchdog.probe_interval
        self.ever_ready = False

    def on_start(self) -> None:
        self.log = logger.bind(actor=self.name)
        self.directory.subscribe(LinkChanged, self.name)
        if self.directory.link is not None:  # set by Connection before each publish
            self.link = self.directory.link
            self.ever_ready = self.link.state == LinkState.READY
        self._load_escalation()
        start_ticker(self.actor_ref, _Tick, TICK_SECONDS, self._halt, "watchdog-tick")

    def _load_escalation(self) -> None:
        try:
            saved = self.directory.proxy("position_book").get_kv(ESCALATION_KEY).get(timeout=5)
        except Exception as exc:
            self.log.warning("escalation state unreadable ({}): starting afresh", exc)
            return
        if not isinstance(saved, dict):
            return
        try:
            day, restarts = str(saved.get("day") or ""), int(saved.get("restarts") or 0)
        except (TypeError, ValueError):
            self.log.warning("escalation state malformed ({}): starting afresh", saved)
            return
        self.gateway_day, self.gateway_restarts = day, restarts
        self.awaiting_login = bool(saved.get("awaiting_login", False))
        self.login_alerted = bool(saved.get("login_alerted", False))
        try:
            self.login_wait_since = float(saved.get("wait_since") or time.time())
            self.wait_reports = int(saved.get("wait_reports") or int(self.login_alerted))
            self.next_wait_report = float(saved.get("next_report_at") or 0.0)
        except (TypeError, ValueError):
            self.login_wait_since, self.wait_reports = time.time(), int(self.login_alerted)
        self.interrupted_restart = bool(saved.get("restart_pending", False))
        try:
            self.pending_restart_at = float(saved.get("restart_at") or 0.0)
        except (TypeError, ValueError):
            self.pending_restart_at = 0.0
        if self.link.state == LinkState.READY:
            # READY already (published before we subscribed): the login came.
            self._login_seen()
        elif self.awaiting_login:
            # Counted from now: a fresh escalate_after before the next escalation. The
            # gateway's state is read at the first tick: a restart cut short (the old
            # two-step one, or an operator's stop) may have left it stopped (issue 33).
            self.escalated_at = time.monotonic()
            self.next_gateway_check = 0.0
            self.next_wait_report = max(self.next_wait_report,
                                        time.time() + self.cfg.watchdog.escalate_after)
            self.log.warning("a gateway restart is still awaiting a login (2FA) since {:.0f}s "
                             "ago: no other restart until the link is READY or an operator "
                             "asks (unless the gateway is found stopped)",
                             time.time() - self.login_wait_since)

    def _login_seen(self) -> None:
        """The link is READY after any gateway restart we asked for: no login awaited."""
        if self.awaiting_login or self.login_alerted:
            self.awaiting_login = self.login_alerted = False
            self.wait_reports = 0
            self._save_escalation()

    def _begin_wait(self) -> None:
        """A gateway restart was asked for: from now a login may be awaited."""
        self.awaiting_login, self.login_alerted = True, False
        self.login_wait_since, self.wait_reports = time.time(), 0
        self.next_wait_report = time.time() + self.cfg.watchdog.escalate_after

    def _save_escalation(self) -> None:
        state = {"day": self.gateway_day, "restarts": self.gateway_restarts,
                 "awaiting_login": self.awaiting_login, "login_alerted": self.login_alerted,
                 "wait_since": self.login_wait_since, "wait_reports": self.wait_reports,
                 "next_report_at": self.next_wait_report,
                 "restart_pending": self.restart_pending,
                 "restart_at": self.gateway_restart_at}
        try:
            self.directory.proxy("position_book").set_kv(ESCALATION_KEY, state).get(timeout=5)
        except Exception as exc:
            self.log.error("escalation state not saved ({}): {}", exc, state)

    def on_stop(self) -> None:
        self._halt.set()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, LinkChanged):
            self._on_link(message)
        elif isinstance(message, _Tick):
            self._tick()
        return None

    # ---- state changes -----------------------------------------------------------------

    def _on_link(self, message: LinkChanged) -> None:
        self.link = message.status
        now = time.monotonic()
        if message.status.state == LinkState.READY:
            if self.down_since is not None:
                outage = now - self.down_since
                self.log.info("link restored after {:.1f}s ({})", outage, message.status.reason)
                self.alerts.raise_alert(
                    "link_restored",
                    f"link READY again after {outage:.1f}s down ({self.down_reason}); "
                    f"restored by: {message.status.reason}",
                    severity="info",
                    details={"outage_seconds": round(outage, 3)},
                )
            self.down_since = None
            self.ready_since = now
            self.directory.link_note = ""
            if message.status.updated_at < self.gateway_restart_at:
                # READY from before the gateway restart we asked for (queued while the
                # restart ran): the restart will end it, so the login is still awaited.
                self.log.info("READY from before the gateway restart: still awaiting login")
            else:
                self.escalated_at = None
                self._login_seen()
            self.probe_failures = 0
            self.ever_ready = True
            self.next_probe_at = now + self.cfg.watchdog.probe_interval
            return
        self.ready_since = None
        self._check_client_id(message.status)
        if message.previous == LinkState.READY or (self.down_since is None and self.ever_ready):
            self._mark_down(message.status.reason or message.status.state.value)

    def _check_client_id(self, status: LinkStatus) -> None:
        """326 at connect: Connection retries with backoff; from the second refusal in a
        row, one alert (usually the gateway has not yet noticed our old, dead socket)."""
        tries = self.directory.client_id_refusals
        if tries < 2:
            self.id_in_use_alerted = tries > 0 and self.id_in_use_alerted
            return
        if not self.id_in_use_alerted:
            self.id_in_use_alerted = True
            self.alerts.raise_alert(
                "link_down",
                f"client id {self.cfg.gateway.client_id} in use at the gateway (326), "
                f"{tries} tries so far; retrying with backoff. Likely cause: our own old "
                f"socket the gateway has not yet noticed is gone (clears by itself within "
                f"a minute or so), or another program connected with the same client id. "
                f"What to do: if it persists, find the API client holding id "
                f"{self.cfg.gateway.client_id} in the gateway's API connections and close "
                f"it, or restart the gateway (dashboard login button); never give two "
                f"programs the same gateway.client_id",
                severity="error",
            )

    def _schedule_restart(self) -> None:
        """The earliest moment for the next deliberate Connection restart: never within
        `restart_grace` of the loss (a short blip is restored on the live socket, and a
        restart in its middle only delays READY), then backed off as before."""
        w = self.cfg.watchdog
        assert self.down_since is not None
        self.next_restart_at = max(
            self.down_since + max(w.restart_grace, w.backoff_initial),
            self.last_restart_at + backoff_delay(self.restarts + 1, w.backoff_initial,
                                                 w.backoff_max),
        )

    def _mark_down(self, reason: str) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        self.down_reason = reason
        self._schedule_restart()
        self.log.error("link DOWN: {}", reason)
        self.alerts.raise_alert(
            "link_down", f"link to IB Gateway down: {reason}", severity="critical"
        )
        self._note_weekly_reauth()

    def _note_weekly_reauth(self) -> None:
        """The Sunday 01:00 ET session expiry is expected: say so once, by name."""
        et = self.clock.now().astimezone(ET)
        if not weekly_reauth(et):
            return
        self.directory.link_note = WEEKLY_REAUTH
        if self.weekly_noted != et.date().isoformat():
            self.weekly_noted = et.date().isoformat()
            self.alerts.raise_alert(
                "login_required",
                "weekly re-authentication: IB ends the session Sunday 01:00 ET; log in "
                "(2FA) to the gateway, then press the dashboard's login button",
                severity="warning",
            )

    # ---- periodic checks ---------------------------------------------------------------

    def _tick(self) -> None:
        if self.interrupted_restart:
            self.interrupted_restart = False
            self._finish_interrupted_restart()
        current = self.directory.link
        if (
            current is not None
            and current.updated_at > self.link.updated_at
            and (current.state != self.link.state)
        ):  # a change we did not hear of (published before we subscribed)
            self._on_link(LinkChanged(current, self.link.state))
        now = time.monotonic()
        if self.link.state == LinkState.READY:
            if self.link.updated_at >= self.gateway_restart_at:
                self._login_seen()
            w = self.cfg.watchdog
            if self.restarts and self.ready_since is not None \
                    and now - self.ready_since >= w.stable_after:
                self.log.info("link stable for {:.0f}s: restart backoff reset", w.stable_after)
                self.restarts = 0
            self._probe(now)
            self._check_market_data(now)
            return
        if self.down_since is None:
            if not self.ever_ready:
                # Never up since start: escalate on the same clock as an outage.
                self.down_since, self.down_reason = now, self.link.reason or "not connected"
                self._schedule_restart()
            return
        w = self.cfg.watchdog
        # A closed socket is retried by Connection itself; 1100 and dead probes need a
        # fresh Connection actor.
        socket_up = self.link.state == LinkState.CONNECTED
        if socket_up and now >= self.next_restart_at:
            self._restart_connection(f"link not READY: {self.link.reason}")
        if now >= self.next_gateway_check:
            self.next_gateway_check = now + GATEWAY_CHECK_SECONDS
            self._check_gateway(now)
        if self.awaiting_login:
            # No other restart while a login is awaited; the wait is reported, spaced.
            if time.time() >= self.next_wait_report:
                self._report_wait()
        elif now - self.down_since >= w.escalate_after and (
            self.escalated_at is None or now - self.escalated_at >= w.escalate_after
        ):
            self.escalated_at = now
            self._escalate(now - self.down_since)

    # ---- the gateway program's state ------------------------------------------------------

    def _refused_for(self) -> float:
        """How long every connect has been refused at the TCP level (0: not refused)."""
        since = self.directory.gateway_refused_since
        return time.time() - since if since else 0.0

    def _check_gateway(self, now: float) -> None:
        """Read the gateway program's state (supervisord); one not running is started
        (within the day's budget) rather than waited on for a login."""
        from ops.gateway_restart import NOT_RUNNING, GatewayRestartError, gateway_state

        try:
            state = gateway_state(self.cfg.watchdog.gateway_restart, self.cfg, timeout=5.0)
        except GatewayRestartError as exc:
            if self.gateway_seen != "unknown":
                self.log.warning("gateway state unreadable: {}", exc)
            self.gateway_seen = "unknown"
            return
        self.gateway_seen = state
        if state not in NOT_RUNNING:
            self.not_running_since = None
            return
        if self.not_running_since is None:
            self.not_running_since = now
        if state != "STOPPED" and now - self.not_running_since < NOT_RUNNING_GRACE:
            return  # EXITED after our signal: supervisord is starting it itself
        if time.time() - self.gateway_restart_at < NOT_RUNNING_GRACE:
            return
        self._start_stopped_gateway(state)

    def _restart_reported_since(self, asked_at: float) -> bool:
        """A gateway_restart alert stored at or after `asked_at` (epoch s)."""
        if asked_at <= 0:
            return False
        try:
            recent = self.alerts.recent(50)
        except Exception as exc:  # unreadable: better a second alert than none
            self.log.warning("alerts not read: {}", exc)
            return False
        for alert in recent:
            raw = alert.get("time")
            try:
                # The store keeps epoch seconds (a REAL); an ISO text is read too. Parsed
                # as ISO only, every stored report was skipped: a second alert followed
                # each kill between the report and the pending mark's clearing (CI).
                at = float(raw) if isinstance(raw, (int, float)) else \
                    datetime.fromisoformat(str(raw)).timestamp()
            except (TypeError, ValueError):
                continue
            if alert.get("kind") == "gateway_restart" and at >= asked_at:
                return True
        return False

    def _finish_interrupted_restart(self) -> None:
        """The engine before this one was stopped (kill -9, a crash) during a gateway
        restart it asked for: say what became of it, in one alert; a gateway left not
        running is started (the restart already counted in the day's budget)."""
        from ops.gateway_restart import NOT_RUNNING, GatewayRestartError, gateway_state

        method, program = self.cfg.watchdog.gateway_restart, self.cfg.gateway.program
        ago = time.time() - self.login_wait_since
        try:
            state = gateway_state(method, self.cfg, timeout=5.0)
        except GatewayRestartError as exc:
            state = f"unknown ({exc})"
        self.gateway_seen = state
        self.next_gateway_check = time.monotonic() + GATEWAY_CHECK_SECONDS
        if state in NOT_RUNNING:
            self.restart_gateway(
                "watchdog", why=f"the engine was stopped during the gateway restart it began "
                f"{ago:.0f}s ago and the gateway program {program} was left {state}: "
                f"starting it")
            return
        self.restart_pending = False
        self._save_escalation()
        if self._restart_reported_since(self.pending_restart_at):
            # The engine was killed after its own report and before it cleared the pending
            # mark (two writes): that report said what became of the restart.
            self.log.info("the interrupted gateway restart was reported before the stop")
            return
        seen = f"the gateway program {program} is {state}" if state else \
            f"the '{method}' method shows no state; the link will tell"
        self.log.warning("a gateway restart was interrupted by the engine's stop: {}", seen)
        self.alerts.raise_alert(
            "gateway_restart",
            f"the engine was stopped during the gateway restart it began {ago:.0f}s ago: "
            f"{seen} (the restart is one call its keeper completes alone)",
            severity="warning",
        )

    def _spend_gateway_restart(self, day: str, spent: str) -> bool:
        """One of the ET day's `max_gateway_restarts`, counted and saved before the restart
        (a crash during it still remembers); with none left, `spent` is alerted once a
        day, whatever the cause, and False returned."""
        if day != self.gateway_day:
            self.gateway_day, self.gateway_restarts = day, 0
        if self.gateway_restarts >= self.cfg.watchdog.max_gateway_restarts:
            if self.budget_alerted != day:
                self.budget_alerted = day
                self.log.error("{}", spent)
                self.alerts.raise_alert("gateway_restart", spent, severity="error")
            return False
        self.gateway_restarts += 1
        self._begin_wait()
        self._save_escalation()
        return True

    def _start_stopped_gateway(self, state: str) -> None:
        w, program = self.cfg.watchdog, self.cfg.gateway.program
        day = self.clock.now().astimezone(ET).date().isoformat()
        if not self._spend_gateway_restart(
                day, f"the gateway program {program} is {state} and the day's "
                f"{w.max_gateway_restarts} gateway restarts are spent: not starting it; "
                f"waiting for an operator (supervisorctl start {program})"):
            return
        down = time.monotonic() - self.down_since if self.down_since is not None else 0.0
        result = self.restart_gateway(
            "watchdog", why=f"the gateway program {program} was {state}, link down {down:.0f}s")
        self.not_running_since = None
        if not result["started"]:
            self.awaiting_login = False
            self._save_escalation()

    def _report_wait(self) -> None:
        """The wait after a gateway restart, said again at spaced intervals: how long,
        the gateway's state, and the cause: a refused API port is not a login wait."""
        w, gw = self.cfg.watchdog, self.cfg.gateway
        now = time.time()
        refused = self._refused_for()
        if 0 < refused < w.escalate_after:
            # Refused, but not yet for long: its own report once escalate_after is up.
            self.next_wait_report = now + (w.escalate_after - refused)
            return
        from ops.gateway_restart import NOT_RUNNING

        if self.gateway_seen in NOT_RUNNING:
            self.next_wait_report = now + GATEWAY_CHECK_SECONDS  # _check_gateway acts
            return
        waited = now - self.login_wait_since
        self.wait_reports += 1
        interval = min(max(WAIT_REPORT_MAX, w.escalate_after),
                       w.escalate_after * 2 ** self.wait_reports)
        self.next_wait_report = now + interval
        method = w.gateway_restart
        state = (f"gateway program {gw.program} {self.gateway_seen}" if self.gateway_seen
                 else f"gateway state not visible to the '{method}' method")
        if refused:
            self.alerts.raise_alert(
                "link_down",
                f"the gateway refuses connections at {gw.host}:{gw.port} for {refused:.0f}s "
                f"({state}): it is not running or its API port is closed, not waiting for "
                f"a login; {waited:.0f}s since the gateway restart; next report in "
                f"{interval:.0f}s",
                severity="critical",
                details={"waited_seconds": round(waited), "refused_seconds": round(refused),
                         "gateway_state": self.gateway_seen or "unknown"},
            )
            if self.gateway_seen is None and method != "none":
                # Unseen (Docker): the restart did not bring it up; the budget may try again.
                self.awaiting_login = False
                self.escalated_at = None
            self._save_escalation()
            return
        self.login_alerted = True
        self._save_escalation()
        self.alerts.raise_alert(
            "login_required",
            f"the gateway was restarted {waited:.0f}s ago and the link is still not READY "
            f"({state}, accepting the API port): log in (2FA), then press the dashboard's "
            f"login button; no further restart until then; next reminder in {interval:.0f}s",
            severity="error",
            details={"waited_seconds": round(waited),
                     "gateway_state": self.gateway_seen or "unknown"},
        )

    def _escalate(self, down_for: float) -> None:
        """A gateway restart, bounded: at most `max_gateway_restarts` per ET day, never in
        IB's reset windows or the weekly re-authentication, never twice without a login."""
        w = self.cfg.watchdog
        et = self.clock.now().astimezone(ET)
        if self.awaiting_login:
            return  # reported by _report_wait, spaced
        if weekly_reauth(et):
            self._note_weekly_reauth()
            return  # a restart would only ask for the same login again
        if in_quiet_window(et, w.quiet_windows):
            self.log.info("link down {:.0f}s inside IB's reset window: no gateway restart",
                          down_for)
            return
        if not self._spend_gateway_restart(
                et.date().isoformat(), f"link down {down_for:.0f}s; the day's "
                f"{w.max_gateway_restarts} gateway restarts are spent: waiting for an operator"):
            return
        # From here a READY is the old gateway's (the restart will end it) ...
        self.gateway_restart_at = time.time()
        current = self.directory.link
        if current is not None and current.state == LinkState.READY:
            # ... unless it came before the restart is sent: nothing to repair then.
            self.gateway_restarts -= 1
            self.awaiting_login = False
            self._save_escalation()
            return
        refused = self._refused_for()
        why = (f"link down for {down_for:.0f}s, the API port refusing connections for "
               f"{refused:.0f}s" if refused else None)
        result = self.restart_gateway("watchdog", down_for=down_for, why=why)
        if not result["started"] and result["method"] != "none":
            self.awaiting_login = False  # it failed: the next escalation may try again
            self._save_escalation()

    def _restart_connection(self, why: str) -> None:
        current = self.directory.link
        if current is not None and current.state == LinkState.READY \
                and current.updated_at > self.link.updated_at:
            return  # restored (1101/1102) since this tick was queued: nothing to repair
        self.restarts += 1
        self.last_restart_at = time.monotonic()
        if self.down_since is not None:
            self._schedule_restart()
        self.log.warning("restarting Connection (#{}): {}", self.restarts, why)
        try:
            self.directory.proxy("supervisor").restart("connection").get(timeout=20)
        except Exception as exc:
            self.log.error("Connection restart failed: {}", exc)

    def _probe(self, now: float) -> None:
        w = self.cfg.watchdog
        if now < self.next_probe_at:
            return
        self.next_probe_at = now + w.probe_interval
        conn = self.directory.ref("connection")
        if conn is None:
            return
        try:
            conn.proxy().current_time(min(5.0, w.probe_interval)).get(
                timeout=min(5.0, w.probe_interval) + 2
            )
            self.probe_failures = 0
            self.directory.link_verified_at = time.time()
        except Exception as exc:
            self.probe_failures += 1
            self.log.warning(
                "heartbeat probe failed ({}/{}): {}", self.probe_failures, w.probe_failures, exc
            )
            if self.probe_failures >= w.probe_failures:
                self.probe_failures = 0
                self._mark_down(f"heartbeat unanswered {w.probe_failures} times")
                self._restart_connection("heartbeat failed")

    def _check_market_data(self, now: float) -> None:
        silence = self.cfg.watchdog.market_data_silence
        if silence <= 0:
            return
        md = self.directory.ref("market_data")
        if md is None or self.down_since is not None:
            return
        try:
            from trading.calendar import TradingCalendar

            if not TradingCalendar().is_market_open(self.clock.now()):
                return
            stats = md.proxy().stats().get(timeout=2)
        except Exception:
            return
        last = stats.get("last_tick_at") or 0.0
        if last and time.time() - last > silence and time.time() - self.link.since > silence:
            self._mark_down(f"market data silent for {time.time() - last:.0f}s")
            self._restart_connection("market data silent")

    # ---- gateway restart (escalation and the dashboard's login button) ------------------

    def restart_gateway(
        self, by: str = "operator", down_for: float | None = None, why: str | None = None
    ) -> dict[str, Any]:
        from ops.gateway_restart import restart_gateway

        method = self.cfg.watchdog.gateway_restart
        if why is None:
            why = (f"link down for {down_for:.0f}s" if down_for is not None
                   else f"requested by {by}")
        self.gateway_restart_at = time.time()  # a READY older than this predates the restart
        self.restart_pending = True
        self._save_escalation()
        try:
            message = restart_gateway(method, self.cfg)
            ok = method != "none"
        except Exception as exc:
            message, ok = f"gateway restart failed: {exc}", False
        self.log.warning("gateway restart via {} ({}): {}", method, why, message)
        self.alerts.raise_alert(
            "gateway_restart",
            f"gateway restart via {method} ({why}): {message}",
            severity="warning" if ok else "error",
        )
        self.restart_pending = False
        self._save_escalation()
        if by != "watchdog":
            # The operator's login: escalation may try again if this one does not help.
            self.awaiting_login = self.login_alerted = False
            self.escalated_at = time.monotonic()
            self._save_escalation()
        return {"started": ok, "method": method, "message": message}
