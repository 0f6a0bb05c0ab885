"""The root actor: starts the children in order and restarts a dead one.

Pykka has no supervision of its own (a stopped actor cannot be restarted), so
this is OTP's one-for-one strategy by hand: a child that stops unexpectedly is
started anew after a backoff; more than `max_restarts` within `restart_window`
seconds and the Supervisor gives up, so the engine exits non-zero and
supervisord (the process supervisor) takes over. Only crashes count: a
deliberate `restart(name)` (the Watchdog's, on a gateway outage) does not.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
from loguru import logger

from actors.context import EngineContext
from actors.directory import ActorDirectory
from actors.messages import CheckChildren, ChildFailed
from config.loader import SupervisionConfig
from ops.backoff import backoff_delay


@dataclass(frozen=True)
class ChildSpec:
    name: str
    start: Callable[[], pykka.ActorRef[Any]]


@dataclass(frozen=True)
class Ping:
    """Answered (with None) once the actor's on_start has run."""


@dataclass(frozen=True)
class _RestartChild:
    name: str


class Supervisor(pykka.ThreadingActor):
    def __init__(
        self,
        specs: list[ChildSpec],
        directory: ActorDirectory,
        cfg: SupervisionConfig,
        on_give_up: Callable[[str], None],
        check_interval: float = 0.25,
    ) -> None:
        super().__init__()
        self._specs = {s.name: s for s in specs}
        self._order = [s.name for s in specs]
        self._directory = directory
        self._cfg = cfg
        self._on_give_up = on_give_up
        self._check_interval = check_interval
        self._restarts: dict[str, deque[float]] = {s.name: deque() for s in specs}
        self._pending: set[str] = set()
        self._stopping = False
        self._given_up = False
        self._ticker_stop = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------

    def on_start(self) -> None:
        for name in self._order:
            self._start_child(name)
        start_ticker(self.actor_ref, CheckChildren, self._check_interval, self._ticker_stop,
                     "supervisor-check")

    def on_stop(self) -> None:
        self._stopping = True
        self._ticker_stop.set()
        for name in reversed(self._order):
            ref = self._directory.ref(name)
            if ref is not None:
                try:
                    ref.stop(timeout=10)
                except pykka.Timeout:
                    logger.warning("child {} did not stop in time", name)
                except pykka.ActorDeadError:
                    pass
            self._directory.set(name, None)

    # ---- messages --------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            logger.error("child {} failed: {}", message.name, message.error)
            self._schedule_restart(message.name)
        elif isinstance(message, CheckChildren):
            for name in self._order:
                if name not in self._pending and self._directory.ref(name) is None:
                    self._schedule_restart(name)
        elif isinstance(message, _RestartChild):
            self._pending.discard(message.name)
            if self._directory.ref(message.name) is None and not self._stopping:
                self._start_child(message.name)
        return None

    def restart(self, name: str) -> bool:
        """Stop and start `name` now (the Watchdog's call). A deliberate restart, not a
        crash: it does not spend the crash budget (a flapping gateway must never make
        the engine give up; the Watchdog spaces its restarts with its own backoff)."""
        if name not in self._specs:
            raise KeyError(name)
        if self._given_up or self._stopping:
            return False
        ref = self._directory.ref(name)
        self._directory.set(name, None)
        if ref is not None:
            try:
                ref.stop(timeout=10)
            except (pykka.Timeout, pykka.ActorDeadError):
                pass
        self._pending.discard(name)
        self._start_child(name)
        return True

    def children(self) -> dict[str, bool]:
        return {name: self._directory.ref(name) is not None for name in self._order}

    # ---- internals -------------------------------------------------------------------

    def _start_child(self, name: str) -> None:
        try:
            ref = self._specs[name].start()
            # Known at once: what is told while on_start runs waits in its inbox (pykka
            # runs on_start first), where it was dropped before. A link READY between the
            # child's look at the link in on_start and its registration was lost, and
            # MarketData never asked for SPY's quotes (seen in CI: a gateway that answered
            # within 6 ms of the connect).
            self._directory.set(name, ref)
            # Wait for on_start (subscriptions) before the next child can publish to it.
            ref.ask(Ping(), timeout=60)
        except Exception as exc:  # on_start failures surface here
            logger.exception("starting {} failed", name)
            self._directory.set(name, None)
            self._schedule_restart(name, str(exc))
            return
        logger.info("started {}", name)

    def _count_restart(self, name: str) -> bool:
        now = time.monotonic()
        window = self._restarts[name]
        window.append(now)
        while window and now - window[0] > self._cfg.restart_window:
            window.popleft()
        if len(window) > self._cfg.max_restarts:
            if not self._given_up:
                self._given_up = True
                reason = f"{name} restarted {len(window)} times in {self._cfg.restart_window:.0f}s"
                logger.critical("restart budget exhausted: {}", reason)
                self._on_give_up(reason)
            return False
        return True

    def _schedule_restart(self, name: str, why: str = "") -> None:
        if self._stopping or name in self._pending or self._given_up:
            return
        if not self._count_restart(name):
            return
        attempts = len(self._restarts[name])
        delay = backoff_delay(attempts, self._cfg.backoff_initial, self._cfg.backoff_max)
        logger.warning("restarting {} in {:.1f}s (attempt {}) {}", name, delay, attempts, why)
        self._pending.add(name)
        timer = threading.Timer(delay, self._tell_restart, args=(name,))
        timer.daemon = True
        timer.start()

    def _tell_restart(self, name: str) -> None:
        try:
            self.actor_ref.tell(_RestartChild(name))
        except pykka.ActorDeadError:
            pass


def start_ticker(ref: pykka.ActorRef[Any], make: Callable[[], object], interval: float,
                 halt: threading.Event, name: str) -> threading.Thread:
    """Tell `make()` to the actor every `interval` seconds until `halt` is set; skips a
    beat while the actor is still busy with the last one (no pile-up in the inbox)."""

    def run() -> None:
        while not halt.wait(interval):
            try:
                if ref.actor_inbox.empty():
                    ref.tell(make())
            except pykka.ActorDeadError:
                return

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


class SupervisedActor(pykka.ThreadingActor):
    """Base for children: reports a crash to the Supervisor by name."""

    name = "actor"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.directory = ctx.directory
        self.clock = ctx.clock
        self.alerts = ctx.alerts

    def on_receive(self, message: Any) -> Any:
        return None  # Ping and anything unknown: nothing to do

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        logger.opt(exception=(exception_type, exception_value, traceback)).error(
            "{} crashed", self.name
        )
        self.directory.tell("supervisor", ChildFailed(self.name, repr(exception_value)))
