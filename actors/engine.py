"""The engine process: config, the actor tree under the Supervisor, the ZeroMQ service.

`python -m actors --config PATH` runs it until SIGTERM/SIGINT (exit 0) or until
the Supervisor's restart budget is spent (exit 1, so supervisord notices).
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pykka
from loguru import logger

from actors.connection import Connection
from actors.context import EngineContext
from actors.directory import ActorDirectory
from actors.market_data import MarketData
from actors.messages import RepairExits
from actors.order_executor import OrderExecutor
from actors.position_book import PositionBook
from actors.scheduler import Scheduler
from actors.supervisor import ChildSpec, Supervisor
from actors.watchdog import Watchdog
from config.loader import _HHMM, Config, cli_config, schedule_warnings
from ops import ast_guard
from ops.clock_source import clock_from_config
from ops.gc_pauses import freeze_startup_objects
from ops.logs import setup_logging
from trading.calendar import TradingCalendar
from trading.clock import Clock
from wire.protocol import COMMAND_OPS, ENGINE_READ_OPS, READ_OPS


class Engine:
    """Owns the actor tree and the outside-facing services of one engine process."""

    def __init__(self, cfg: Config, clock: Clock | None = None) -> None:
        from alerts.dispatcher import AlertDispatcher

        self.cfg = cfg
        self.clock = clock or clock_from_config(cfg.clock)
        self.started_at = time.time()
        self.directory = ActorDirectory()
        Path(cfg.storage.path).parent.mkdir(parents=True, exist_ok=True)
        self.alerts = AlertDispatcher(cfg)
        self.calendar = TradingCalendar()
        self.exit_code: int | None = None
        self.stopped = threading.Event()
        self.zmq: Any = None
        self.supervisor: pykka.ActorRef[Any] | None = None

    def child_specs(self) -> list[ChildSpec]:
        ctx = EngineContext(self.cfg, self.directory, self.clock, self.alerts, self.calendar,
                            self.started_at)
        # The book starts first: it must be subscribed before Connection publishes fills.
        return [
            ChildSpec("position_book", lambda: PositionBook.start(ctx)),
            ChildSpec("connection", lambda: Connection.start(ctx)),
            ChildSpec("market_data", lambda: MarketData.start(ctx)),
            ChildSpec("order_executor", lambda: OrderExecutor.start(ctx)),
            ChildSpec("scheduler", lambda: Scheduler.start(ctx)),
            ChildSpec("watchdog", lambda: Watchdog.start(ctx)),
        ]

    def start(self) -> None:
        from wire.keys import ensure_keys, keys_dir, server_keys
        from wire.server import ZmqService

        curve = None
        if self.cfg.zmq.curve:
            directory = keys_dir(self.cfg)
            if ensure_keys(directory):
                logger.info("wrote ZeroMQ CURVE keys to {}", directory)
            curve = server_keys(directory)
        self.alerts.start()
        self.supervisor = Supervisor.start(
            self.child_specs(), self.directory, self.cfg.supervision, self._give_up
        )
        self.directory.set("supervisor", self.supervisor)
        # The first ask returns after the Supervisor's on_start has started every child.
        self.supervisor.proxy().children().get(timeout=120)
        self.zmq = ZmqService(
            endpoint=self.cfg.zmq.endpoint,
            handler=self.handle,
            known_ops=set(READ_OPS) | set(ENGINE_READ_OPS) | set(COMMAND_OPS),
            command_ops=set(COMMAND_OPS),
            max_message_bytes=self.cfg.zmq.max_message_bytes,
            command_max_age=self.cfg.zmq.command_max_age,
            curve=curve,
        )
        self.zmq.start()
        mode = self.cfg.gateway.mode
        logger.info(
            "engine started ({} mode, gateway {}:{}, zmq {}, curve {})",
            mode,
            self.cfg.gateway.host,
            self.cfg.gateway.port,
            self.cfg.zmq.endpoint,
            "on" if curve else "off",
        )
        for warning in schedule_warnings(self.cfg):
            logger.warning(warning)
        self.alerts.raise_alert("engine_started", f"engine started in {mode} mode", severity="info")

    def _give_up(self, reason: str) -> None:
        self.alerts.raise_alert(
            "process_crashed", f"engine giving up: {reason}", severity="critical"
        )
        self.exit_code = 1
        self.stopped.set()

    def stop(self) -> None:
        if self.zmq is not None:
            self.zmq.stop()
        if self.supervisor is not None:
            try:
                self.supervisor.stop(timeout=20)
            except (pykka.Timeout, pykka.ActorDeadError):
                pass
        pykka.ActorRegistry.stop_all(timeout=5)
        self.alerts.stop()

    # ---- ZeroMQ ops --------------------------------------------------------------------

    def handle(self, op: str, args: dict[str, Any]) -> Any:
        from wire.server import OpError

        d = self.directory
        try:
            if op == "alerts":
                limit = args.get("limit", 50)
                if not isinstance(limit, int) or not 1 <= limit <= 1000:
                    raise OpError("bad_args", "limit must be an integer 1..1000")
                return {"alerts": self.alerts.recent(limit)}
            if op == "market_data":
                since = args.get("samples_since")
                if since is not None and (isinstance(since, bool)
                                          or not isinstance(since, int | float)):
                    raise OpError("bad_args", "samples_since must be a time (epoch seconds)")
                md = d.proxy("market_data")
                stats = md.stats().get(timeout=5)
                reply = {**stats, "lines": d.proxy("connection").lines().get(timeout=5)}
                if since is not None:  # bench.ticks: the count samples of a ramp step
                    reply["samples"] = [list(s) for s in
                                        md.count_samples(float(since)).get(timeout=5)]
                return reply
            if op in READ_OPS:
                views = d.views
                if views is not None:  # on this worker's thread (bench.dashboard)
                    return views(op, args)
                return d.proxy("position_book").query(op, args).get(timeout=5)
            if op == "enter_now":
                slot = args.get("slot")
                if slot is not None and self.cfg.schedule.entry_times == []:
                    if not isinstance(slot, str) or not _HHMM.match(slot):
                        raise OpError("bad_args", "slot must be HH:MM (ET)")
                elif slot is not None and slot not in self.cfg.schedule.entry_times:
                    raise OpError(
                        "bad_args", f"slot must be one of {self.cfg.schedule.entry_times}"
                    )
                wait = 10.0
                return d.proxy("order_executor").enter_now(slot, time.time() + wait).get(
                    timeout=wait)
            if op in ("pause", "resume"):
                return d.proxy("position_book").set_paused(op == "pause").get(timeout=5)
            if op == "kill_switch":
                on = args.get("on")
                if not isinstance(on, bool):
                    raise OpError("bad_args", "kill_switch needs {\"on\": true|false}")
                return d.proxy("position_book").set_kill_switch(on).get(timeout=5)
            if op == "repair_exits":
                try:
                    return d.proxy("order_executor").repair_exits("operator").get(timeout=10)
                except pykka.Timeout:
                    d.tell("order_executor", RepairExits("operator"))
                    return {"repaired": 0, "queued": True}
            if op == "restart_gateway":
                watchdog = d.ref("watchdog")
                if watchdog is not None:
                    return watchdog.proxy().restart_gateway("operator").get(timeout=30)
                from ops.gateway_restart import restart_gateway

                method = self.cfg.watchdog.gateway_restart
                message = restart_gateway(method, self.cfg)
                return {"started": method != "none", "method": method, "message": message}
        except pykka.ActorDeadError as exc:
            raise OpError("unavailable", f"engine part not running: {exc}") from None
        except pykka.Timeout:
            raise OpError("timeout", f"{op} did not finish in time") from None
        raise OpError("unknown_op", f"unknown op {op!r}")


def main(argv: list[str] | None = None) -> int:
    ast_guard.install()  # threads log tracebacks concurrently (CPython 3.11 workaround)
    cfg = cli_config("python -m actors", argv, __doc__)
    setup_logging("engine", cfg.logging.dir or None, cfg.logging.level, cfg.logging.format)
    engine = Engine(cfg)
    signalled: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        # A flag only. The handler runs on the main thread between two bytecodes, maybe
        # inside `engine.stopped.wait()` with the Event's lock held: `stopped.set()`
        # there waited for that lock forever (a SIGTERM that never stopped the engine,
        # found under load in the suite), and a log line could do the same with the
        # logger's. The loop below reads the flag.
        signalled.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        engine.start()
    except Exception as exc:
        logger.exception("engine failed to start: {}", exc)
        engine.stop()
        return 1
    logger.info("{} start-up objects frozen (left out of later collections)",
                freeze_startup_objects())
    # Woken twice a second: a SIGTERM delivered to another thread (ib-loop, zmq) only sets
    # CPython's pending flag, and a main thread blocked in a wait without timeout never
    # runs the handler (seen: `supervisorctl stop` / a test's terminate() waited forever).
    while not signalled and not engine.stopped.wait(0.5):
        pass
    if signalled:
        logger.info("signal {}: stopping", signal.Signals(signalled[0]).name)
        engine.exit_code = 0 if engine.exit_code is None else engine.exit_code
    engine.stop()
    logger.info("engine stopped (exit {})", engine.exit_code or 0)
    return engine.exit_code or 0
