"""The seed's shape as pure logic: month-end expiry nearest target_dte, strike ~10% below spot,
and the config keys that choose it (no actors, no gateway)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from config.loader import Config, ConfigError, load_config
from ibsim.market import expirations
from trading.strikes import choose_expiry_by_rule, choose_strike_by_distance, month_end_expiries

ET = ZoneInfo("America/New_York")
# A chain shaped like SPY's: weeklies, a monthly, month-ends (2026-04-03 is Good Friday).
CHAIN = ["20260206", "20260213", "20260220", "20260227", "20260306", "20260320", "20260331",
         "20260402", "20260417", "20260430", "20260515", "20260529", "20260619", "20260630"]


def test_month_end_is_the_last_listed_expiry_of_each_month() -> None:
    assert month_end_expiries(CHAIN) == [
        "20260227", "20260331", "20260430", "20260529", "20260630"]
    assert month_end_expiries(list(reversed(CHAIN)))[-1] == "20260630"
    assert month_end_expiries([]) == []


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        # The seed's sales: 2026-01-23 and 2026-02-04 both went to 2026-04-30 (97 / 85 days).
        (date(2026, 1, 23), "20260430"),
        (date(2026, 2, 4), "20260430"),
        # 2026-03-20: 2026-05-29 is 70 days, 2026-06-30 is 102: 102 is nearer 90.
        (date(2026, 3, 20), "20260630"),
    ],
)
def test_month_end_rule_on_the_seed_dates(today: date, expected: str) -> None:
    chain = ["20260130", *CHAIN]
    assert choose_expiry_by_rule(chain, today, 90, "month_end") == expected


def test_nearest_dte_rule_is_the_old_choice() -> None:
    # 2026-02-04 + 90 = 2026-05-05: any listed expiry may win, the month-end rule may not.
    assert choose_expiry_by_rule(CHAIN, date(2026, 2, 4), 90, "nearest_dte") == "20260430"
    assert choose_expiry_by_rule(CHAIN, date(2026, 2, 4), 7, "nearest_dte") == "20260213"
    assert choose_expiry_by_rule(CHAIN, date(2026, 2, 4), 7, "month_end") == "20260227"
    with pytest.raises(ValueError, match="expiry rule"):
        choose_expiry_by_rule(CHAIN, date(2026, 2, 4), 7, "quarterly")
    with pytest.raises(ValueError):
        choose_expiry_by_rule(CHAIN, date(2026, 7, 1), 90, "month_end")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 1, 23, 9, 35, tzinfo=ET), "20260430"),
        (datetime(2026, 2, 4, 9, 35, tzinfo=ET), "20260430"),
        (datetime(2026, 3, 20, 9, 35, tzinfo=ET), "20260630"),
    ],
)
def test_month_end_rule_on_ibsims_chain(now: datetime, expected: str) -> None:
    chain = expirations(now)
    ends = month_end_expiries(chain)
    # A whole year of month-ends, the last month listed complete (its last weekday session).
    assert len(ends) >= 13 and ends[-1] >= f"{now.year + 1}{now.month:02d}25"
    assert choose_expiry_by_rule(chain, now.date(), 90, "month_end") == expected


def test_strike_about_ten_percent_below_spot() -> None:
    strikes = [float(k) for k in range(480, 900)]
    # The seed's 2026-02-04 sale: 624P, i.e. SPY about 693.
    assert choose_strike_by_distance(strikes, 693.5, 0.10) == 624.0
    assert choose_strike_by_distance(strikes, 600.0, 0.10) == 540.0


def test_defaults_are_the_seeds_shape() -> None:
    s = Config().strategy
    assert (s.expiry_rule, s.target_dte, s.strike_selection, s.otm_distance) == (
        "month_end", 90, "otm_distance", 0.10)
    assert (s.take_profit_ratio, s.stop_loss_ratio) == (0.4, 3.0)


@pytest.mark.parametrize("name", ["default.toml", "demo.toml", "paper.toml", "live.toml"])
def test_shipped_profiles_trade_the_seeds_shape(name: str) -> None:
    s = load_config(Path(__file__).resolve().parents[2] / "config" / name, environ={}).strategy
    assert (s.expiry_rule, s.target_dte, s.strike_selection, s.otm_distance) == (
        "month_end", 90, "otm_distance", 0.10)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[strategy]\nexpiry_rule = "weekly"\n', "strategy.expiry_rule"),
        ("[strategy]\nexpiry_rule = 3\n", "strategy.expiry_rule"),
        ("[strategy]\notm_distance = 0\n", "strategy.otm_distance"),
        ("[strategy]\notm_distance = 1.5\n", "strategy.otm_distance"),
        ('[strategy]\notm_distance = "10%"\n', "strategy.otm_distance"),
        ("[strategy]\notm_distance = 0.4\n", "strategy.otm_distance"),  # > max_strike_distance
    ],
)
def test_bad_strategy_keys_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert str(err.value).startswith(key), err.value


def test_env_override_picks_the_weekly_rule() -> None:
    cfg = load_config(None, environ={"TRADING_BOT__STRATEGY__EXPIRY_RULE": "nearest_dte"})
    assert cfg.strategy.expiry_rule == "nearest_dte"
