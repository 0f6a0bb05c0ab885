"""Order prices: tick rounding, exit prices from the fill, the sale's limit walk."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal


def _ticks(price: float, tick: float, rounding: str = ROUND_HALF_UP) -> Decimal:
    t = Decimal(str(tick))
    return (Decimal(str(price)) / t).quantize(Decimal(1), rounding=rounding) * t


def round_to_tick(price: float, tick: float = 0.01) -> float:
    """Nearest multiple of `tick`, half up, computed in decimal (no float drift)."""
    return float(_ticks(price, tick))


def exit_prices(
    fill_price: float,
    take_profit_ratio: float = 0.4,
    stop_loss_ratio: float = 3.0,
    tick: float = 0.01,
) -> tuple[float, float]:
    """(TP, SL) for a short put sold at `fill_price`: 6.08 -> (2.43, 18.24)."""
    fill = Decimal(str(fill_price))
    tp = float(_ticks(float(fill * Decimal(str(take_profit_ratio))), tick))
    sl = float(_ticks(float(fill * Decimal(str(stop_loss_ratio))), tick))
    return max(tp, tick), sl


def mid(bid: float | None, ask: float | None) -> float | None:
    """The midpoint, or None when either side is missing, non-positive or crossed."""
    if bid is None or ask is None:
        return None
    if any(math.isnan(x) for x in (bid, ask)) or bid <= 0 or ask <= 0 or ask < bid:
        return None
    return (bid + ask) / 2


def limit_walk(
    bid: float, ask: float, step: float, attempts: int, tick: float = 0.01
) -> list[float]:
    """Limit prices for a sale: from the mid toward the bid, `step` of the way each time.

    Non-increasing, never below the bid nor above the ask, the last one at the
    bid. The mid is rounded up to the tick (a one-tick spread starts at the ask).
    """
    if ask < bid:
        ask = bid
    b = _ticks(bid, tick)
    a = _ticks(ask, tick)
    m = _ticks(float((b + a) / 2), tick, ROUND_CEILING)  # start on the patient side
    m = min(max(m, b), a)
    attempts = max(1, attempts)
    prices: list[Decimal] = []
    for i in range(attempts):
        frac = Decimal(str(min(1.0, step * i)))
        p = _ticks(float(m - (m - b) * frac), tick, ROUND_FLOOR)
        p = min(max(p, b), a)
        if prices and p > prices[-1]:
            p = prices[-1]
        prices.append(p)
    prices[-1] = b
    return [float(p) for p in prices]
