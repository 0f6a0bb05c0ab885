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
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

# The tree and the checks live beside this module; every name below was importable
# from here before the split and stays so (`from config.loader import X`).
from config.schema import (  # noqa: F401 - re-exported
    AlertsConfig,
    ClockConfig,
    Config,
    ConfigError,
    GatewayConfig,
    IbsimConfig,
    LoggingConfig,
    RiskConfig,
    ScheduleConfig,
    StorageConfig,
    StrategyConfig,
    SupervisionConfig,
    WatchdogConfig,
    WebConfig,
    WebhookConfig,
    ZmqConfig,
)
from config.validate import (  # noqa: F401 - re-exported
    _HHMM,
    parse_quiet_window,
    schedule_warnings,
    validate,
)

ENV_PREFIX = "TRADING_BOT__"
ENV_CONFIG_PATH = "TRADING_BOT_CONFIG"


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
    validate(cfg)
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


