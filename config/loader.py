"""Typed configuration: one dataclass tree from TOML plus environment overrides.

Order of precedence (last wins): the dataclass defaults (mirrored, commented, in
`config/default.toml`), the file given by `--config PATH` or `TRADING_BOT_CONFIG`,
then `TRADING_BOT__SECTION__KEY` environment variables whose values parse as TOML
(a value that is not valid TOML is taken as a plain string, so
`TRADING_BOT__GATEWAY__HOST=127.0.0.1` works). Everything is validated at start;
a bad key or value raises `ConfigError` naming it, e.g. `gateway.port`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRADING_BOT__"
ENV_CONFIG_PATH = "TRADING_BOT_CONFIG"

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 1
    account: str = ""
    mode: str = "paper"
    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    market_data_type: int = 1
    # The gateway's own supervisord program (demo: ibsim) or Docker container.
    program: str = "ibsim"
    container: str = "ib-gateway"


@dataclass(frozen=True)
class StorageConfig:
    path: str = "var/trading-bot.sqlite"


@dataclass(frozen=True)
class ZmqConfig:
    endpoint: str = "tcp://127.0.0.1:5557"
    max_message_bytes: int = 65536
    request_timeout: float = 1.5
    retries: int = 2
    # Commands older than this are dropped (a request queued while the engine was down).
    command_max_age: float = 10.0
    # CURVE keys (server and client pairs); empty: `zmq-keys/` beside the SQLite file.
    keys_dir: str = ""
    # false only for an ipc socket its owner alone can reach; refused on tcp in live mode.
    curve: bool = True


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    login_required_for_reads: bool = False
    stale_after: float = 15.0
    refresh_seconds: float = 2.0
    threads: int = 8
    # A login lasts this long; a new TRADING_BOT_WEB_PASSWORD ends every session at once.
    session_hours: float = 12.0


@dataclass(frozen=True)
class ScheduleConfig:
    entry_times: list[str] = field(default_factory=lambda: ["09:35"])
    catch_up_until: str = "10:30"
    repair_interval: float = 60.0
    tick_seconds: float = 1.0
    snapshot_time: str = "16:05"
    # Seconds before a slot when the entry is prepared (contracts looked up, candidate
    # quote lines opened); 0 = no preparation.
    prepare_lead: float = 60.0


@dataclass(frozen=True)
class StrategyConfig:
    symbol: str = "SPY"
    exchange: str = "BATS"
    quantity: int = 1
    # The seed's shape: a month-end put about 90 days out, about 10% below spot (README).
    expiry_rule: str = "month_end"
    target_dte: int = 90
    strike_selection: str = "otm_distance"
    target_delta: float = 0.20
    otm_distance: float = 0.10
    take_profit_ratio: float = 0.4
    stop_loss_ratio: float = 3.0
    limit_walk_step: float = 0.25
    limit_walk_interval: float = 2.0
    sale_attempts: int = 5
    exit_attempts: int = 3
    exit_retry_backoff: float = 0.5
    order_ack_timeout: float = 5.0
    # How long exit legs without an ack are looked for at the broker (then cancelled by
    # id and looked for again) before the lot is left to the repair job.
    exit_unknown_wait: float = 10.0
    # Seconds since a quote's last tick beyond which no sale or strike choice is priced
    # on it (the entry waits for a fresh one until its deadline).
    max_quote_age: float = 2.0
    # A put sold outside the engine (by hand): false = alert only; true = import it as
    # an unprotected lot and place its exits.
    adopt_outside_positions: bool = False
    # After an assignment (issue 16): "alert" leaves the shares to the operator;
    # "close_shares" sells them at the next session's open, limit walked like the sale.
    on_assignment: str = "alert"


@dataclass(frozen=True)
class RiskConfig:
    max_open_lots: int = 5
    max_contracts_per_day: int = 1
    max_short_notional: float = 300000.0
    daily_loss_limit: float = 0.0
    max_order_quantity: int = 10
    max_strike_distance: float = 0.3
    # A sale is refused when the broker's whatIf puts the initial margin after it above
    # this share of net liquidation.
    max_margin_use: float = 0.5
    kill_switch: bool = False


@dataclass(frozen=True)
class WatchdogConfig:
    probe_interval: float = 10.0
    probe_failures: int = 2
    market_data_silence: float = 60.0
    escalate_after: float = 300.0
    gateway_restart: str = "none"
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # READY this long (s) puts the Connection-restart backoff back to backoff_initial.
    stable_after: float = 300.0
    # Gateway restarts (escalation) per ET day at most; none inside IB's reset windows
    # ("DAYS HH:MM-HH:MM" in ET, DAYS a day or a range, e.g. "Sun-Thu"; a window may
    # cross midnight and belongs to the day it starts on).
    max_gateway_restarts: int = 3
    quiet_windows: list[str] = field(
        default_factory=lambda: ["Sun-Thu 23:45-00:45", "Fri 23:00-03:00"]
    )
    supervisor_url: str = "unix:///tmp/trading-bot-supervisor.sock"
    docker_socket: str = "/var/run/docker.sock"


@dataclass(frozen=True)
class WebhookConfig:
    url: str = ""
    format: str = "json"


@dataclass(frozen=True)
class AlertsConfig:
    webhooks: list[WebhookConfig] = field(default_factory=list)
    timeout: float = 5.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    coalesce_window: float = 60.0


@dataclass(frozen=True)
class ClockConfig:
    start: str = ""
    speed: float = 1.0
    file: str = ""  # simulated time written by another process (the chaos soak)


@dataclass(frozen=True)
class LoggingConfig:
    dir: str = ""
    level: str = "INFO"
    format: str = "text"  # "json": one JSON object per line, for log shippers


@dataclass(frozen=True)
class IbsimConfig:
    """The simulated gateway under supervisord (`python -m ops.ibsim_launcher`): it
    listens on `gateway.port`; off in the paper and live profiles."""

    enabled: bool = False
    control_port: int = 4010
    state_file: str = ""  # empty: ibsim-state.json beside the SQLite file
    now: str = ""  # simulated start (ISO with offset); empty: clock.start, else real time


@dataclass(frozen=True)
class SupervisionConfig:
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0


@dataclass(frozen=True)
class Config:
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    web: WebConfig = field(default_factory=WebConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    supervision: SupervisionConfig = field(default_factory=SupervisionConfig)
    ibsim: IbsimConfig = field(default_factory=IbsimConfig)


_CHOICES: dict[str, tuple[str, ...]] = {
    "gateway.mode": ("paper", "live"),
    "strategy.expiry_rule": ("nearest_dte", "month_end"),
    "strategy.strike_selection": ("delta", "otm_distance"),
    "watchdog.gateway_restart": ("supervisor", "docker", "none"),
    "alerts.webhooks.format": ("json", "slack", "discord", "ntfy"),
    "logging.format": ("text", "json"),
    "logging.level": ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check `value` against the annotated type `tp`; name `key` on mismatch."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    if origin is types.UnionType:
        raise ConfigError(f"{key}: unsupported type")  # not used in the tree
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in names:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(names))})")
        kwargs[name] = _coerce(key, hints[name], value)
    return cls(**kwargs)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_env_value(raw: str) -> Any:
    """An override's value as TOML (`4004`, `["09:35"]`, `true`); else the raw string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: typing.Mapping[str, str]) -> dict[str, Any]:
    """`TRADING_BOT__SECTION__KEY=value` variables as a nested dict."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{name}: expected {ENV_PREFIX}SECTION__KEY")
        section, key = parts
        out.setdefault(section, {})[key] = parse_env_value(raw)
    return out


def _validate(cfg: Config) -> None:
    def fail(key: str, why: str) -> None:
        raise ConfigError(f"{key}: {why}")

    for key, allowed in _CHOICES.items():
        parts = key.split(".")
        if parts[:2] == ["alerts", "webhooks"]:
            for i, hook in enumerate(cfg.alerts.webhooks):
                if hook.format not in allowed:
                    fail(f"alerts.webhooks[{i}].format", f"must be one of {', '.join(allowed)}")
                if not re.match(r"^https?://", hook.url):
                    fail(f"alerts.webhooks[{i}].url", "must start with http:// or https://")
            continue
        value = getattr(getattr(cfg, parts[0]), parts[1])
        if value not in allowed:
            fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")
    for key, port in (("gateway.port", cfg.gateway.port), ("web.port", cfg.web.port),
                      ("ibsim.control_port", cfg.ibsim.control_port)):
        if not 1 <= port <= 65535:
            fail(key, f"must be a TCP port (1-65535), got {port}")
    if cfg.gateway.client_id < 0:
        fail("gateway.client_id", "must be >= 0")
    if cfg.gateway.market_data_type not in (1, 2, 3, 4):
        fail("gateway.market_data_type", "must be 1 (live), 2, 3 (delayed) or 4")
    if not cfg.storage.path:
        fail("storage.path", "must not be empty")
    if not re.match(r"^(tcp://[^:]+:\d+|ipc://.+)$", cfg.zmq.endpoint):
        fail("zmq.endpoint", f"expected tcp://HOST:PORT or ipc://PATH, got {cfg.zmq.endpoint!r}")
    if not cfg.zmq.curve and cfg.zmq.endpoint.startswith("tcp://") and cfg.gateway.mode == "live":
        # Any local process could send orders over an unauthenticated tcp socket.
        fail("zmq.curve", "false is refused on a tcp endpoint in live mode (use ipc://)")
    # An empty schedule is allowed: no scheduled entry, entries by hand only (a warning
    # at start and on the dashboard, see schedule_warnings).
    for i, t in enumerate(cfg.schedule.entry_times):
        if not _HHMM.match(t):
            fail(f"schedule.entry_times[{i}]", f"expected HH:MM (ET), got {t!r}")
    for key in ("catch_up_until", "snapshot_time"):
        if not _HHMM.match(getattr(cfg.schedule, key)):
            fail(f"schedule.{key}", f"expected HH:MM (ET), got {getattr(cfg.schedule, key)!r}")
    s = cfg.strategy
    if s.quantity < 1:
        fail("strategy.quantity", "must be >= 1")
    if cfg.schedule.prepare_lead < 0:
        fail("schedule.prepare_lead", "must be >= 0 seconds (0 = no preparation)")
    if s.target_dte < 0:
        fail("strategy.target_dte", "must be >= 0")
    if not 0 < s.target_delta < 1:
        fail("strategy.target_delta", "must be between 0 and 1 (absolute put delta)")
    if not 0 < s.otm_distance < 1:
        fail("strategy.otm_distance", f"must be between 0 and 1 (share of spot), got "
             f"{s.otm_distance}")
    if s.strike_selection == "otm_distance" and s.otm_distance > cfg.risk.max_strike_distance:
        # Every sale would be refused by the order guard: say so at start instead.
        fail("strategy.otm_distance", f"{s.otm_distance} is beyond risk.max_strike_distance "
             f"{cfg.risk.max_strike_distance}")
    if not 0 < s.take_profit_ratio < 1:
        fail("strategy.take_profit_ratio", "must be between 0 and 1 (share of the fill price)")
    if s.stop_loss_ratio <= 1:
        fail("strategy.stop_loss_ratio", "must be > 1 (multiple of the fill price)")
    if not 0 < s.limit_walk_step <= 1:
        fail("strategy.limit_walk_step", "must be in (0, 1] (share of mid-to-bid per step)")
    if s.on_assignment not in ("alert", "close_shares"):
        fail("strategy.on_assignment", f"{s.on_assignment!r}: must be \"alert\" or "
             "\"close_shares\"")
    for key in ("sale_attempts", "exit_attempts"):
        if getattr(s, key) < 1:
            fail(f"strategy.{key}", "must be >= 1")
    if not s.max_quote_age > 0:
        fail("strategy.max_quote_age", f"must be > 0 seconds, got {s.max_quote_age}")
    if not 0 < cfg.risk.max_margin_use <= 1:
        fail("risk.max_margin_use", "must be in (0, 1] (share of net liquidation), got "
             f"{cfg.risk.max_margin_use}")
    if cfg.web.session_hours <= 0:
        fail("web.session_hours", "must be > 0")
    if cfg.risk.max_order_quantity < 1:
        fail("risk.max_order_quantity", "must be >= 1")
    if cfg.clock.speed <= 0:
        fail("clock.speed", f"must be > 0, got {cfg.clock.speed}")
    if cfg.clock.start:
        from datetime import datetime

        try:
            start = datetime.fromisoformat(cfg.clock.start)
        except ValueError:
            fail("clock.start", f"expected an ISO time with offset, got {cfg.clock.start!r}")
        else:
            if start.tzinfo is None:
                fail("clock.start", "needs a UTC offset, e.g. 2026-11-25T09:20:00-05:00")
    if cfg.clock.file and cfg.clock.start:
        fail("clock.file", "set clock.start or clock.file, not both")
    if (cfg.clock.file or cfg.clock.start) and cfg.gateway.mode == "live":
        fail("clock.start" if cfg.clock.start else "clock.file",
             "a simulated clock is refused in live mode")
    for key in ("probe_interval", "escalate_after", "backoff_initial", "backoff_max",
                "stable_after"):
        if getattr(cfg.watchdog, key) <= 0:
            fail(f"watchdog.{key}", "must be > 0")
    if cfg.watchdog.max_gateway_restarts < 0:
        fail("watchdog.max_gateway_restarts", "must be >= 0")
    for i, window in enumerate(cfg.watchdog.quiet_windows):
        try:
            parse_quiet_window(window)
        except ValueError as exc:
            fail(f"watchdog.quiet_windows[{i}]", str(exc))


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_QUIET = re.compile(r"^(\w{3})(?:-(\w{3}))? (\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def parse_quiet_window(text: str) -> tuple[set[int], int, int]:
    """"Sun-Thu 23:45-00:45" -> ({6, 0, 1, 2, 3}, 1425, 45): start weekdays (Mon = 0)
    and start/end minutes of the day; end <= start means the window crosses midnight."""
    m = _QUIET.match(text.strip())
    if not m or m.group(1) not in _DAYS or (m.group(2) and m.group(2) not in _DAYS):
        raise ValueError(f"expected 'DAY[-DAY] HH:MM-HH:MM' (ET, e.g. 'Sun-Thu 23:45-00:45'),"
                         f" got {text!r}")
    first = _DAYS.index(m.group(1))
    last = _DAYS.index(m.group(2) or m.group(1))
    days = {(first + i) % 7 for i in range((last - first) % 7 + 1)}
    h1, m1, h2, m2 = (int(m.group(i)) for i in range(3, 7))
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ValueError(f"bad time in {text!r}")
    return days, h1 * 60 + m1, h2 * 60 + m2


def schedule_warnings(cfg: Config) -> list[str]:
    """What an operator should be told about the schedule (logged at start, on the
    dashboard's status)."""
    if not cfg.schedule.entry_times:
        return ["schedule.entry_times is empty: no scheduled entry, entries by hand only"]
    return []


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: typing.Mapping[str, str] | None = None,
) -> Config:
    """Load, merge and validate. Raises ConfigError naming the bad key."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_CONFIG_PATH) or None
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    data = _merge(data, env_overrides(environ))
    cfg = _build(Config, data, "")
    _validate(cfg)
    return cfg


def cli_config(prog: str, argv: list[str] | None = None, description: str | None = None
               ) -> Config:
    """`--config PATH` (or TRADING_BOT_CONFIG, else `--default-config PATH`) for a
    process's main; a bad config ends the process with exit code 2 and a message
    naming the key."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", help="TOML config (or TRADING_BOT_CONFIG)")
    parser.add_argument("--default-config", metavar="PATH",
                        help="used when neither --config nor TRADING_BOT_CONFIG is given "
                             "(supervisord.conf: the demo profile)")
    args = parser.parse_args(argv)
    try:
        return load_config(args.config or os.environ.get(ENV_CONFIG_PATH)
                           or args.default_config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
