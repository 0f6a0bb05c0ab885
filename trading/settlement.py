"""How a short option lot ends when no exit of ours explains it (issue 16): expiry by
OCC's rule, assignment matched from the broker's positions, and exits the engine never
saw. Pure rules: the book's actor gives the inputs (lots, positions, the calendar)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from trading import pnl as pnl_math
from trading.calendar import ET, TradingCalendar

# Close reasons that were announced with their own alert when the lot closed: their
# leftover exits are cancelled without a second ("stray exits") alert.
ANNOUNCED_CLOSES = frozenset({"closed_outside", "assigned", "expired", "reconciled_estimated"})
OCC_THRESHOLD = 0.01  # OCC Rule 805: exercised by exception when ITM by $0.01 or more


def expiry_date(expiry: str) -> date:
    return datetime.strptime(expiry[:8], "%Y%m%d").date()


def expiry_close(expiry: str, calendar: TradingCalendar) -> datetime:
    """The real close of the expiry's session (13:00 ET on a half day). An expiry on a
    day the exchange is closed settles at the previous session's close."""
    d = expiry_date(expiry)
    if not calendar.is_session(d):
        d = calendar.previous_session(d)
    return calendar.session_open_close(d)[1]


def past_expiry(expiry: str, now: datetime, calendar: TradingCalendar) -> bool:
    return bool(expiry) and now.astimezone(ET) >= expiry_close(expiry, calendar)


def intrinsic(right: str, strike: float, spot: float) -> float:
    """What exercise is worth per share to the holder (never negative)."""
    value = strike - spot if right == "P" else spot - strike
    return round(max(0.0, value), 4)


def occ_outcome(right: str, strike: float, close: float) -> str:
    """`assigned` when the option is in the money by $0.01 or more at the close, else
    `expired` (exercise by exception)."""
    itm_by = strike - close if right == "P" else close - strike
    return "assigned" if round(itm_by, 2) >= OCC_THRESHOLD else "expired"


def expired_pnl(entry: float, qty: int, multiplier: int, commissions: float) -> float:
    """Expired worthless: the whole premium is kept, less commissions."""
    return pnl_math.realized_pnl(entry, 0.0, qty, commissions, multiplier)


def assigned_pnl(
    entry: float, intrinsic_value: float, qty: int, multiplier: int, commissions: float
) -> float:
    """The option's part of an assignment: premium − intrinsic at assignment − commissions
    (the shares are a position of their own from the strike on)."""
    return pnl_math.realized_pnl(entry, intrinsic_value, qty, commissions, multiplier)


@dataclass(frozen=True)
class Shares:
    """A stock position: signed quantity and IB's average cost per share."""

    qty: float
    avg_cost: float

    @property
    def cost(self) -> float:
        return self.qty * self.avg_cost


def shares_explained(
    deliveries: list[tuple[float, float]], before: Shares, after: Shares
) -> bool:
    """Do these deliveries (signed shares, price each) explain the change between the
    two share positions? The quantity must move by exactly their sum and, where IB keeps
    the cost basis, the cost by those shares at their strikes: shares bought in the
    market are not taken for an assignment."""
    want = sum(n for n, _ in deliveries)
    if want == 0 or round(after.qty - before.qty) != round(want):
        return False
    if before.qty and after.qty and (before.qty > 0) != (after.qty > 0):
        return False  # crossed zero: IB restarts the cost basis, nothing to compare
    if before.qty == 0 or (before.qty > 0) == (want > 0):
        added = after.cost - before.cost
        cost = sum(n * k for n, k in deliveries)
        return abs(added - cost) <= max(0.01 * abs(want), 0.01)
    return True  # a delivery that reduced an opposite position keeps its basis


def estimated_exit_price(
    tp_price: float | None, sl_price: float | None, quote: float | None
) -> tuple[str, float | None]:
    """An exit that must have filled while the engine did not see it: the TP's limit or
    the SL's stop, whichever is nearer the option's price now (the TP without a quote)."""
    if tp_price is None and sl_price is None:
        return "", None
    if sl_price is None or (tp_price is not None and quote is None):
        return "tp", tp_price
    if tp_price is None:
        return "sl", sl_price
    assert quote is not None
    return ("tp", tp_price) if abs(quote - tp_price) <= abs(quote - sl_price) else (
        "sl", sl_price)
