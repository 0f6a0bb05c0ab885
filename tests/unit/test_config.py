"""The typed config loader: defaults, files, environment overrides, errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config.loader import Config, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_default_toml_lists_every_default() -> None:
    assert load_config(ROOT / "config" / "default.toml", environ={}) == Config()


@pytest.mark.parametrize("name", ["demo.toml", "paper.toml", "live.toml"])
def test_shipped_profiles_load(name: str) -> None:
    path = ROOT / "config" / name
    if not path.exists():
        pytest.skip(f"{name} not shipped yet")
    load_config(path, environ={})


def test_env_overrides_parse_as_toml(tmp_path: Path) -> None:
    env = {
        "TRADING_BOT__GATEWAY__PORT": "4004",
        "TRADING_BOT__GATEWAY__HOST": "ib-gateway",  # not TOML: taken as a string
        "TRADING_BOT__SCHEDULE__ENTRY_TIMES": '["09:35", "11:00"]',
        "TRADING_BOT__ALERTS__WEBHOOKS": '[{url = "http://127.0.0.1:9000/hook", format = "json"}]',
        "TRADING_BOT__CLOCK__START": '"2026-11-25T09:20:00-05:00"',
        "TRADING_BOT__CLOCK__SPEED": "3600",
    }
    cfg = load_config(None, environ=env)
    assert cfg.gateway.port == 4004
    assert cfg.gateway.host == "ib-gateway"
    assert cfg.schedule.entry_times == ["09:35", "11:00"]
    assert cfg.alerts.webhooks[0].url == "http://127.0.0.1:9000/hook"
    assert cfg.clock.speed == 3600.0


def test_env_beats_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[gateway]\nport = 4002\nclient_id = 7\n")
    cfg = load_config(f, environ={"TRADING_BOT__GATEWAY__PORT": "4004"})
    assert (cfg.gateway.port, cfg.gateway.client_id) == (4004, 7)


def test_config_path_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[web]\nport = 9999\n")
    assert load_config(None, environ={"TRADING_BOT_CONFIG": str(f)}).web.port == 9999


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[gateway]\nprot = 1\n", "gateway.prot"),
        ("[gatway]\nport = 1\n", "gatway"),
        ('[gateway]\nport = "abc"\n', "gateway.port"),
        ("[gateway]\nport = 70000\n", "gateway.port"),
        ('[gateway]\nmode = "real"\n', "gateway.mode"),
        ('[schedule]\nentry_times = ["9:35am"]\n', "schedule.entry_times[0]"),
        ("[strategy]\ntake_profit_ratio = 1.5\n", "strategy.take_profit_ratio"),
        ('[zmq]\nendpoint = "http://x"\n', "zmq.endpoint"),
        ('[clock]\nstart = "tomorrow"\n', "clock.start"),
        ('[[alerts.webhooks]]\nurl = "http://x"\nformat = "xml"\n', "alerts.webhooks[0].format"),
        ("[risk]\nkill_switch = 1\n", "risk.kill_switch"),
        ("[strategy]\nmax_quote_age = 0\n", "strategy.max_quote_age"),
        ("[risk]\nmax_margin_use = 1.5\n", "risk.max_margin_use"),
        ("[risk]\nmax_margin_use = 0\n", "risk.max_margin_use"),
    ],
)
def test_bad_key_or_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert str(err.value).startswith(key)


def test_bad_env_override_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.port"):
        load_config(None, environ={"TRADING_BOT__GATEWAY__PORT": '"x"'})
    with pytest.raises(ConfigError, match="TRADING_BOT__GATEWAYPORT"):
        load_config(None, environ={"TRADING_BOT__GATEWAYPORT": "1"})


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[gateway\nport=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f, environ={})


def test_engine_refuses_to_start_on_a_bad_config(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[strategy]\ntarget_delta = 2.0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "actors", "--config", str(f)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "strategy.target_delta" in proc.stderr


def test_watchdog_escalation_keys_and_quiet_windows(tmp_path: Path) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from trading.ib_hours import in_quiet_window, weekly_reauth

    cfg = Config()
    assert cfg.watchdog.max_gateway_restarts == 3 and cfg.watchdog.stable_after == 300.0
    for bad in ('["Mon 25:00-01:00"]', '["Someday 23:45-00:45"]', '["Mon-Fri 2345-0045"]'):
        with pytest.raises(ConfigError, match=r"watchdog\.quiet_windows\[0\]"):
            load_config(environ={"TRADING_BOT__WATCHDOG__QUIET_WINDOWS": bad})
    with pytest.raises(ConfigError, match=r"watchdog\.max_gateway_restarts"):
        load_config(environ={"TRADING_BOT__WATCHDOG__MAX_GATEWAY_RESTARTS": "-1"})
    assert cfg.watchdog.restart_grace == 5.0  # issue 34: a short blip is not raced
    for bad in ("-0.5", "nan"):
        with pytest.raises(ConfigError, match=r"watchdog\.restart_grace"):
            load_config(environ={"TRADING_BOT__WATCHDOG__RESTART_GRACE": bad})
    assert load_config(environ={"TRADING_BOT__WATCHDOG__RESTART_GRACE": "0"}
                       ).watchdog.restart_grace == 0.0
    et = ZoneInfo("America/New_York")
    windows = cfg.watchdog.quiet_windows
    # IB's published windows: 00:15-01:45 ET Sunday-Friday, Friday 23:00 - Saturday 03:00.
    assert not in_quiet_window(datetime(2026, 11, 24, 23, 50, tzinfo=et), windows)
    assert in_quiet_window(datetime(2026, 11, 25, 0, 30, tzinfo=et), windows)  # Wed 00:30
    assert in_quiet_window(datetime(2026, 11, 29, 1, 40, tzinfo=et), windows)  # Sun 01:40
    assert not in_quiet_window(datetime(2026, 11, 25, 1, 50, tzinfo=et), windows)
    assert in_quiet_window(datetime(2026, 11, 28, 2, 0, tzinfo=et), windows)  # Fri into Sat
    assert not in_quiet_window(datetime(2026, 11, 24, 10, 0, tzinfo=et), windows)
    assert weekly_reauth(datetime(2026, 11, 29, 1, 0, tzinfo=et))
    assert not weekly_reauth(datetime(2026, 11, 29, 0, 30, tzinfo=et))
