"""ibsim's --fill-model buyers: a sell limit inside the spread fills only when a seeded
buyer arrives and pays it; nothing fills at the mid for free (issue 23)."""

from __future__ import annotations

import pytest

from ibsim.broker import Broker
from ibsim.fills import BuyersModel
from ibsim.market import Market
from ibsim.server import Gateway

EXP, K = "20261127", 580.0


def _order(broker: Broker, limit: float) -> dict:
    c = {"con_id": 1, "sec_type": "OPT", "expiry": EXP, "strike": K, "right": "P",
         "symbol": "SPY"}
    return {"order_type": "LMT", "action": "SELL", "lmt_price": limit, "contract": c}


def _ticks_to_fill(model: BuyersModel | None, limit_at: float, ticks: int = 400) -> int | None:
    """Ticks until a resting sell limit at `limit_at` of the spread (0 bid, 1 ask) fills."""
    from datetime import datetime

    m = Market(seed=3, now=datetime.fromisoformat("2026-11-24T11:00:00-05:00"))
    m.walk_sigma = 0.0
    b = Broker(m, fill_model=model)
    q = m.option_quote(EXP, K, "P")
    limit = round(q.bid + (q.ask - q.bid) * limit_at, 2)
    o = _order(b, limit)
    for n in range(ticks):
        m.step()
        q = m.option_quote(EXP, K, "P")
        if b._fill_price(o, q.bid, q.ask) is not None:
            return n
    return None


def test_mid_fills_for_free_on_kind_but_waits_for_buyers() -> None:
    assert _ticks_to_fill(None, 0.5) is not None and _ticks_to_fill(None, 0.5) < 10
    assert _ticks_to_fill(BuyersModel(3, 0.0), 0.5) is None  # no buyer ever: no fill
    slow = BuyersModel(3, 0.5)
    slow.dt = 0.05  # a buyer every ~40 ticks
    fast = BuyersModel(3, 50.0)
    fast.dt = 0.05
    t_slow, t_fast = _ticks_to_fill(slow, 0.5), _ticks_to_fill(fast, 0.5)
    assert t_slow is not None and t_fast is not None and t_fast < t_slow


def test_buyers_are_seeded_and_a_marketable_sell_fills_at_once() -> None:
    a, b = BuyersModel(5, 2.0), BuyersModel(5, 2.0)
    draws = [(a._draw(1, n, 1.0, 1.2), b._draw(1, n, 1.0, 1.2)) for n in range(200)]
    assert all(x == y for x, y in draws)
    assert a._draw(1, 199, 0.0, 0.0) == draws[-1][0]  # one draw per tick, however asked
    assert _ticks_to_fill(BuyersModel(3, 0.0), 0.0) == 0  # at the bid: fills at once


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        Gateway(fill_model="generous")
    with pytest.raises(ValueError):
        Gateway(spread=0.0)
