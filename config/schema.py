"""The typed configuration tree: one frozen dataclass per TOML section, with the
defaults (mirrored, commented, in `config/default.toml`). Loading is config/loader.py,
checks are config/validate.py."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # The preflight's (python -m ops.doctor) own client id: never the engine's.
    doctor_client_id: int = 99
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
    # The first deliberate Connection restart after a loss comes only this long (s) after
    # it: IB's short blips (a farm reconnecting, 1100 -> 1102 within seconds) are restored
    # on the live socket, and a restart in their middle only makes READY wait for a fresh
    # connect and its evidence. Later restarts are backed off from there as before.
    restart_grace: float = 5.0
    # READY this long (s) puts the Connection-restart backoff back to backoff_initial.
    stable_after: float = 300.0
    # Gateway restarts (escalation) per ET day at most; none inside IB's reset windows
    # ("DAYS HH:MM-HH:MM" in ET, DAYS a day or a range, e.g. "Sun-Thu"; a window may
    # cross midnight and belongs to the day it starts on). The default is IB's published
    # North America schedule (https://www.interactivebrokers.com/en/software/systemStatus.php):
    # daily reset Sunday-Friday 00:15-01:45 ET, weekend Friday 23:00 - Saturday 03:00 ET.
    max_gateway_restarts: int = 3
    quiet_windows: list[str] = field(
        default_factory=lambda: ["Sun-Fri 00:15-01:45", "Fri 23:00-03:00"]
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
    # "change": a quote line ticks when its value changed (IB's rhythm); "interval":
    # every line each tick (ibsim --tick-mode).
    tick_mode: str = "change"


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
