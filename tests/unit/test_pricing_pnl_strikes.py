"""Pure trading logic: exit prices, the limit walk, P&L, expiry and strike choice."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trading.pnl import pnl_percent, realized_pnl, unrealized_pnl
from trading.pricing import exit_prices, limit_walk, mid, round_to_tick
from trading.strikes import (
    candidate_strikes,
    choose_expiry,
    choose_strike_by_delta,
    choose_strike_by_distance,
)


@pytest.mark.parametrize(
    ("fill", "tp", "sl"), [(6.08, 2.43, 18.24), (6.15, 2.46, 18.45), (0.02, 0.01, 0.06)]
)
def test_seed_exit_prices(fill: float, tp: float, sl: float) -> None:
    assert exit_prices(fill, 0.4, 3.0, 0.01) == (tp, sl)


def test_round_to_tick_has_no_float_drift() -> None:
    assert round_to_tick(2.432) == 2.43
    assert round_to_tick(2.435) == 2.44
    assert round_to_tick(1.2345, 0.05) == 1.25


def test_mid_rejects_missing_and_crossed_quotes() -> None:
    assert mid(1.0, 1.2) == pytest.approx(1.1)
    assert mid(None, 1.2) is None
    assert mid(1.3, 1.2) is None
    assert mid(0.0, 0.05) is None


def test_limit_walk_goes_from_mid_to_bid() -> None:
    assert limit_walk(1.00, 1.10, 0.25, 5) == [1.05, 1.03, 1.02, 1.01, 1.00]
    assert limit_walk(1.00, 1.01, 0.25, 3) == [1.01, 1.00, 1.00]
    assert limit_walk(2.00, 2.00, 0.5, 3) == [2.00, 2.00, 2.00]


@given(
    bid=st.integers(1, 5000),
    spread=st.integers(0, 300),
    step=st.floats(0.05, 1.0),
    attempts=st.integers(1, 8),
)
def test_limit_walk_properties(bid: int, spread: int, step: float, attempts: int) -> None:
    b, a = bid / 100, (bid + spread) / 100
    prices = limit_walk(b, a, step, attempts)
    assert len(prices) == attempts
    assert all(b <= p <= a for p in prices)
    assert prices == sorted(prices, reverse=True)
    assert prices[-1] == b
    assert all(round(p * 100) == pytest.approx(p * 100) for p in prices)


def test_two_lots_on_one_strike_have_their_own_pnl() -> None:
    first = unrealized_pnl(6.08, 5.00, 1)
    second = unrealized_pnl(6.15, 5.00, 1)
    assert (first, second) == (108.0, 115.0)
    assert pnl_percent(first, 6.08, 1) == pytest.approx(17.76, abs=0.01)
    assert unrealized_pnl(6.08, None, 1) is None


def test_realized_and_expired_pnl() -> None:
    assert realized_pnl(6.08, 2.43, 1) == 365.0
    assert realized_pnl(6.08, 18.24, 1, commissions=1.3) == -1217.3
    assert realized_pnl(6.15, 0.0, 2) == 1230.0  # expired worthless: the premium kept


def test_choose_expiry_nearest_target_never_past() -> None:
    exps = ["20261120", "20261125", "20261127", "20261130", "20261204", "20261218"]
    today = date(2026, 11, 23)
    assert choose_expiry(exps, today, 7) == "20261130"
    assert choose_expiry(exps, today, 0) == "20261125"
    assert choose_expiry(exps, today, 100) == "20261218"
    with pytest.raises(ValueError):
        choose_expiry(["20261120"], today, 7)


def test_strike_choice() -> None:
    cands = [(590.0, -0.35), (585.0, -0.24), (580.0, -0.19), (575.0, None)]
    assert choose_strike_by_delta(cands, 0.20) == 580.0
    assert choose_strike_by_distance([570.0, 580.0, 583.0, 590.0], 600.0, 0.03) == 580.0
    assert candidate_strikes([595.0, 599.0, 600.0, 601.0, 590.0], 600.0, 2) == [599.0, 595.0]
