"""The checks a loaded Config must pass at start; each failure raises ConfigError naming
the key (e.g. `gateway.port: must be a TCP port (1-65535), got 0`). Also the quiet
window syntax (`watchdog.quiet_windows`) and the schedule's start-up warnings."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from config.schema import Config, ConfigError

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

_CHOICES: dict[str, tuple[str, ...]] = {
    "gateway.mode": ("paper", "live"),
    "strategy.expiry_rule": ("nearest_dte", "month_end"),
    "strategy.strike_selection": ("delta", "otm_distance"),
    "watchdog.gateway_restart": ("supervisor", "docker", "none"),
    "alerts.webhooks.format": ("json", "slack", "discord", "ntfy"),
    "logging.format": ("text", "json"),
    "logging.level": ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"),
}


def _fail(key: str, why: str) -> None:
    raise ConfigError(f"{key}: {why}")


def _value(cfg: Config, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


def _choices(cfg: Config) -> None:
    for key, allowed in _CHOICES.items():
        if key.startswith("alerts.webhooks."):
            for i, hook in enumerate(cfg.alerts.webhooks):
                if hook.format not in allowed:
                    _fail(f"alerts.webhooks[{i}].format", f"must be one of {', '.join(allowed)}")
                if not re.match(r"^https?://", hook.url):
                    _fail(f"alerts.webhooks[{i}].url", "must start with http:// or https://")
            continue
        value = _value(cfg, key)
        if value not in allowed:
            _fail(key, f"must be one of {', '.join(allowed)}, got {value!r}")


def _zmq_curve(cfg: Config) -> None:
    if not cfg.zmq.curve and cfg.zmq.endpoint.startswith("tcp://") and cfg.gateway.mode == "live":
        # Any local process could send orders over an unauthenticated tcp socket.
        _fail("zmq.curve", "false is refused on a tcp endpoint in live mode (use ipc://)")


def _gateway_ids(cfg: Config) -> None:
    gw = cfg.gateway
    if gw.doctor_client_id < 0 or gw.doctor_client_id == gw.client_id:
        # The doctor beside a running engine would take its session (IB: 326).
        _fail("gateway.doctor_client_id", f"must be >= 0 and not gateway.client_id "
              f"({gw.client_id}), got {gw.doctor_client_id}")
    if gw.mode == "live" and gw.market_data_type != 1:
        # A live sale is never priced on delayed or frozen quotes (issue 30).
        _fail("gateway.market_data_type", f"must be 1 (live) in live mode, got "
              f"{gw.market_data_type}")


def _entry_times(cfg: Config) -> None:
    # An empty schedule is allowed: no scheduled entry, entries by hand only (a warning
    # at start and on the dashboard, see schedule_warnings).
    for i, t in enumerate(cfg.schedule.entry_times):
        if not _HHMM.match(t):
            _fail(f"schedule.entry_times[{i}]", f"expected HH:MM (ET), got {t!r}")


def _strike_reach(cfg: Config) -> None:
    s = cfg.strategy
    if s.strike_selection == "otm_distance" and s.otm_distance > cfg.risk.max_strike_distance:
        # Every sale would be refused by the order guard: say so at start instead.
        _fail("strategy.otm_distance", f"{s.otm_distance} is beyond risk.max_strike_distance "
              f"{cfg.risk.max_strike_distance}")


def _clock(cfg: Config) -> None:
    if cfg.clock.start:
        try:
            start = datetime.fromisoformat(cfg.clock.start)
        except ValueError:
            _fail("clock.start", f"expected an ISO time with offset, got {cfg.clock.start!r}")
        else:
            if start.tzinfo is None:
                _fail("clock.start", "needs a UTC offset, e.g. 2026-11-25T09:20:00-05:00")
    if cfg.clock.file and cfg.clock.start:
        _fail("clock.file", "set clock.start or clock.file, not both")
    if (cfg.clock.file or cfg.clock.start) and cfg.gateway.mode == "live":
        _fail("clock.start" if cfg.clock.start else "clock.file",
              "a simulated clock is refused in live mode")


def _quiet_windows(cfg: Config) -> None:
    for i, window in enumerate(cfg.watchdog.quiet_windows):
        try:
            parse_quiet_window(window)
        except ValueError as exc:
            _fail(f"watchdog.quiet_windows[{i}]", str(exc))


_PORT = "must be a TCP port (1-65535), got {v}"
_HHMM_WHY = "expected HH:MM (ET), got {v!r}"

# One value each: (key, the value is wrong, why; `{v}` is the value). The tests are
# written as the wrong case on purpose: a NaN fails `0 < v < 1` but passes `v <= 0`.
# Checks of several keys at once are functions; all run in this order, so the key an
# error names when several are wrong stays the same.
_CHECKS: tuple[tuple[str, Callable[[Any], Any], str] | Callable[[Config], None], ...] = (
    _choices,
    ("gateway.port", lambda v: not 1 <= v <= 65535, _PORT),
    ("web.port", lambda v: not 1 <= v <= 65535, _PORT),
    ("ibsim.control_port", lambda v: not 1 <= v <= 65535, _PORT),
    ("ibsim.tick_mode", lambda v: v not in ("change", "interval"),
     "must be change or interval, got {v!r}"),
    ("gateway.client_id", lambda v: v < 0, "must be >= 0"),
    ("gateway.market_data_type", lambda v: v not in (1, 2, 3, 4),
     "must be 1 (live), 2, 3 (delayed) or 4"),
    ("storage.path", lambda v: not v, "must not be empty"),
    ("zmq.endpoint", lambda v: not re.match(r"^(tcp://[^:]+:\d+|ipc://.+)$", v),
     "expected tcp://HOST:PORT or ipc://PATH, got {v!r}"),
    _zmq_curve,
    _gateway_ids,
    _entry_times,
    ("schedule.catch_up_until", lambda v: not _HHMM.match(v), _HHMM_WHY),
    ("schedule.snapshot_time", lambda v: not _HHMM.match(v), _HHMM_WHY),
    ("strategy.quantity", lambda v: v < 1, "must be >= 1"),
    ("schedule.prepare_lead", lambda v: v < 0, "must be >= 0 seconds (0 = no preparation)"),
    ("strategy.target_dte", lambda v: v < 0, "must be >= 0"),
    ("strategy.target_delta", lambda v: not 0 < v < 1,
     "must be between 0 and 1 (absolute put delta)"),
    ("strategy.otm_distance", lambda v: not 0 < v < 1,
     "must be between 0 and 1 (share of spot), got {v}"),
    _strike_reach,
    ("strategy.take_profit_ratio", lambda v: not 0 < v < 1,
     "must be between 0 and 1 (share of the fill price)"),
    ("strategy.stop_loss_ratio", lambda v: v <= 1, "must be > 1 (multiple of the fill price)"),
    ("strategy.limit_walk_step", lambda v: not 0 < v <= 1,
     "must be in (0, 1] (share of mid-to-bid per step)"),
    ("strategy.on_assignment", lambda v: v not in ("alert", "close_shares"),
     "{v!r}: must be \"alert\" or \"close_shares\""),
    ("strategy.sale_attempts", lambda v: v < 1, "must be >= 1"),
    ("strategy.exit_attempts", lambda v: v < 1, "must be >= 1"),
    ("strategy.max_quote_age", lambda v: not v > 0, "must be > 0 seconds, got {v}"),
    ("risk.max_margin_use", lambda v: not 0 < v <= 1,
     "must be in (0, 1] (share of net liquidation), got {v}"),
    ("web.session_hours", lambda v: v <= 0, "must be > 0"),
    ("risk.max_order_quantity", lambda v: v < 1, "must be >= 1"),
    ("clock.speed", lambda v: v <= 0, "must be > 0, got {v}"),
    _clock,
    *((f"watchdog.{key}", lambda v: v <= 0, "must be > 0") for key in (
        "probe_interval", "escalate_after", "backoff_initial", "backoff_max", "stable_after")),
    ("watchdog.max_gateway_restarts", lambda v: v < 0, "must be >= 0"),
    ("watchdog.restart_grace", lambda v: not v >= 0, "must be >= 0 seconds, got {v}"),
    _quiet_windows,
)


def validate(cfg: Config) -> None:
    """Raise ConfigError naming the first bad key; return if every check passes."""
    for check in _CHECKS:
        if callable(check):
            check(cfg)
            continue
        key, wrong, why = check
        value = _value(cfg, key)
        if wrong(value):
            _fail(key, why.format(v=value))


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
