"""Issue 16's pure rules (trading/settlement.py) and the calendar's horizon, no actors."""

from __future__ import annotations

from datetime import date, datetime

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
    none = rules.Shares(0, 0.0)
    assert rules.shares_from_assignment("P", 1, 100, 580.0, none, rules.Shares(100, 580.0))
    assert rules.shares_from_assignment("P", 2, 100, 580.0, none, rules.Shares(200, 580.0))
    # 100 shares bought in the market at 600: not an assignment at 580.
    assert not rules.shares_from_assignment("P", 1, 100, 580.0, none,
                                            rules.Shares(100, 600.0))
    # The wrong quantity: not this assignment.
    assert not rules.shares_from_assignment("P", 1, 100, 580.0, none, rules.Shares(200, 580.0))
    # Shares already held: the added cost is 100 at the strike.
    held = rules.Shares(100, 600.0)
    assert rules.shares_from_assignment("P", 1, 100, 580.0, held, rules.Shares(200, 590.0))
    assert not rules.shares_from_assignment("P", 1, 100, 580.0, held, held)
    # A short call delivers shares.
    assert rules.shares_from_assignment("C", 1, 100, 620.0, held, rules.Shares(0, 0.0))


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
