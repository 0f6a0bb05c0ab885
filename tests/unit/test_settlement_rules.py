"""Issue 16's pure rules (trading/settlement.py) and the calendar's horizon, no actors."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest

from trading import settlement as rules
from trading.calendar import ET, TradingCalendar

CAL = TradingCalendar()


def test_expiry_close_is_the_real_close_half_days_included() -> None:
    assert rules.expiry_close("20261127", CAL) == datetime(2026, 11, 27, 13, 0, tzinfo=ET)
    assert rules.expiry_close("20261130", CAL) == datetime(2026, 11, 30, 16, 0, tzinfo=ET)
    # Good Friday 2026-04-03 has no session: the expiry settles at Thursday's close.
    assert rules.expiry_close("20260403", CAL) == datetime(2026, 4, 2, 16, 0, tzinfo=ET)
    assert rules.past_expiry("20261127", datetime(2026, 11, 27, 13, 0, tzinfo=ET), CAL)
    assert not rules.past_expiry("20261127", datetime(2026, 11, 27, 12, 59, tzinfo=ET), CAL)


@pytest.mark.parametrize(
    ("right", "strike", "close", "outcome"),
    [
        ("P", 580.0, 579.99, "assigned"),  # in the money by $0.01: exercised by exception
        ("P", 580.0, 580.0, "expired"),
        ("P", 580.0, 579.995, "expired"),  # rounds to less than a cent
        ("P", 580.0, 600.0, "expired"),
        ("C", 580.0, 580.01, "assigned"),
        ("C", 580.0, 570.0, "expired"),
    ],
)
def test_occ_exercise_by_exception(right: str, strike: float, close: float,
                                   outcome: str) -> None:
    assert rules.occ_outcome(right, strike, close) == outcome


def test_pnl_of_each_ending() -> None:
    assert rules.expired_pnl(1.25, 2, 100, 1.30) == 248.70
    assert rules.intrinsic("P", 580.0, 577.0) == 3.0
    assert rules.intrinsic("P", 580.0, 590.0) == 0.0
    # Premium 1.25 − intrinsic 3.00 at assignment, one contract, 0.65 commission.
    assert rules.assigned_pnl(1.25, 3.0, 1, 100, 0.65) == -175.65


def test_assignment_is_matched_by_quantity_and_strike_not_any_shares() -> None:
    # A short put's assignment delivers +multiplier x contracts shares at the strike, a
    # short call's takes them away.
    none = rules.Shares(0, 0.0)
    assert rules.shares_explained([(100, 580.0)], none, rules.Shares(100, 580.0))
    assert rules.shares_explained([(200, 580.0)], none, rules.Shares(200, 580.0))
    # 100 shares bought in the market at 600: not an assignment at 580.
    assert not rules.shares_explained([(100, 580.0)], none, rules.Shares(100, 600.0))
    # The wrong quantity: not this assignment.
    assert not rules.shares_explained([(100, 580.0)], none, rules.Shares(200, 580.0))
    # Shares already held: the added cost is 100 at the strike.
    held = rules.Shares(100, 600.0)
    assert rules.shares_explained([(100, 580.0)], held, rules.Shares(200, 590.0))
    assert not rules.shares_explained([(100, 580.0)], held, held)
    # A short call delivers shares.
    assert rules.shares_explained([(-100, 620.0)], held, rules.Shares(0, 0.0))


def test_estimated_exit_is_the_gone_order_nearest_the_price_now() -> None:
    assert rules.estimated_exit_price(0.5, 3.75, 0.1) == ("tp", 0.5)
    assert rules.estimated_exit_price(0.5, 3.75, 4.2) == ("sl", 3.75)
    assert rules.estimated_exit_price(0.5, 3.75, None) == ("tp", 0.5)
    assert rules.estimated_exit_price(None, 3.75, None) == ("sl", 3.75)
    assert rules.estimated_exit_price(None, None, 1.0) == ("", None)


@pytest.mark.parametrize("year", [2019, 2030, 2031, 2037, 2049])
def test_calendar_has_no_end_date(year: int) -> None:
    # Once this stopped at 2030-12-31: every later date was "no session" and no entry ran.
    d = date(year, 7, 15)
    while d.weekday() >= 5:
        d = date(d.year, d.month, d.day + 1)
    assert CAL.is_session(d)
    assert not CAL.is_session(date(year, 12, 25))
    assert CAL.session_open_close(d)[1].hour in (13, 16)
    assert CAL.previous_session(date(year, 1, 2)).year == year - 1


def test_share_sale_refs_are_their_own_kind() -> None:
    from trading.order_refs import parse_exit, parse_sale, parse_share_sale, share_sale_ref

    ref = share_sale_ref(7, 2)
    assert ref == "tb:lot7:shares:2" and parse_share_sale(ref) == (7, 2)
    assert parse_exit(ref) is None and parse_sale(ref) is None
    assert parse_share_sale("tb:lot7:tp:2") is None


def test_on_assignment_is_checked(tmp_path: Any) -> None:
    from config.loader import Config, ConfigError, load_config

    assert Config().strategy.on_assignment == "alert"
    f = tmp_path / "c.toml"
    f.write_text('[strategy]\non_assignment = "sell"\n')
    with pytest.raises(ConfigError) as err:
        load_config(f, environ={})
    assert str(err.value).startswith("strategy.on_assignment")
    env = {"TRADING_BOT__STRATEGY__ON_ASSIGNMENT": '"close_shares"'}
    assert load_config(None, environ=env).strategy.on_assignment == "close_shares"


def test_a_book_from_before_issue_16_accepts_share_sales(tmp_path: Any) -> None:
    import sqlite3

    from book.schema import SCHEMA
    from book.store import Store

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace(", 'shares')", ")"))
    conn.execute("INSERT INTO orders(order_ref, role, con_id, action, order_type, qty,"
                 " created_at, updated_at) VALUES ('tb:x', 'sale', 1, 'SELL', 'LMT', 1, 0, 0)")
    conn.commit()
    conn.close()
    store = Store(path)
    store.record_intent(order_ref="tb:lot1:shares:1", role="shares", con_id=756733,
                        action="SELL", order_type="LMT", qty=100, lmt_price=580.0)
    assert store.order_by_ref("tb:lot1:shares:1").role == "shares"
    assert store.order_by_ref("tb:x").role == "sale"
    store.close()
