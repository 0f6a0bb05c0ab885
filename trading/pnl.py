"""P&L of short put lots. IB reports P&L per contract; a lot needs its own figures."""

from __future__ import annotations


def unrealized_pnl(
    entry: float, current: float | None, qty: int, multiplier: int = 100
) -> float | None:
    """(entry - current) x multiplier x qty; None without a current price."""
    if current is None:
        return None
    return round((entry - current) * multiplier * qty, 2)


def pnl_percent(pnl: float | None, entry: float, qty: int, multiplier: int = 100) -> float | None:
    """P&L as a percent of the premium received: pnl / (entry x multiplier x qty) x 100."""
    if pnl is None or entry <= 0 or qty <= 0:
        return None
    return round(pnl / (entry * multiplier * qty) * 100, 2)


def realized_pnl(
    entry: float, exit_price: float, qty: int, commissions: float = 0.0, multiplier: int = 100
) -> float:
    """Premium kept on closing at `exit_price`, less commissions."""
    return round((entry - exit_price) * multiplier * qty - commissions, 2)

