"""Trading sessions as IB applies them to orders (IB's default: regular hours only).

Options trade 09:30 to the close (16:00, 13:00 on half days). Stocks and ETFs trade
09:30 to the close, and with `outsideRth` 04:00-20:00 (17:00 on half days: the
extended session ends early too; the harsher reading of IB's "trading hours"). An order
outside its session rests (PreSubmitted) with warning 399 until the session opens:
stops do not trigger and limits do not fill meanwhile. Forex trades around the clock
on weekdays.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from ibsim import calendar
from ibsim.calendar import ET

RTH_OPEN = time(9, 30)
EXT_OPEN, EXT_CLOSE, EXT_CLOSE_HALF = time(4, 0), time(20, 0), time(17, 0)


def window(contract: dict[str, Any], d: date, outside_rth: bool = False
           ) -> tuple[datetime, datetime] | None:
    """(open, close) of a contract's session on `d`, or None when it does not trade."""
    sec = contract.get("sec_type", "")
    if sec == "CASH":
        if d.weekday() >= 5:
            return None
        return datetime.combine(d, time(0, 0), ET), datetime.combine(d, time(23, 59), ET)
    if not calendar.is_session(d):
        return None
    close = calendar.close_time(d)
    if sec == "STK" and outside_rth:
        ext = EXT_CLOSE_HALF if close < time(16, 0) else EXT_CLOSE
        return datetime.combine(d, EXT_OPEN, ET), datetime.combine(d, ext, ET)
    return datetime.combine(d, RTH_OPEN, ET), datetime.combine(d, close, ET)


def in_session(contract: dict[str, Any], now: datetime, outside_rth: bool = False) -> bool:
    w = window(contract, now.astimezone(ET).date(), outside_rth)
    return w is not None and w[0] <= now < w[1]


def next_open(contract: dict[str, Any], now: datetime, outside_rth: bool = False) -> datetime:
    """When the order will be placed at the exchange (now, when in session)."""
    d = now.astimezone(ET).date()
    for _ in range(15):
        w = window(contract, d, outside_rth)
        if w is not None and now < w[1]:
            return max(now, w[0])
        d += timedelta(days=1)
    return now


def hours(contract: dict[str, Any], now: datetime, liquid: bool) -> str:
    """ContractDetails tradingHours / liquidHours as IB writes them: a week of
    `YYYYMMDD:HHMM-YYYYMMDD:HHMM` or `YYYYMMDD:CLOSED`, `;`-separated."""
    out = []
    d = now.astimezone(ET).date()
    for i in range(7):
        day = d + timedelta(days=i)
        w = window(contract, day, outside_rth=not liquid)
        if w is None:
            out.append(f"{day:%Y%m%d}:CLOSED")
        else:
            out.append(f"{w[0]:%Y%m%d:%H%M}-{w[1]:%Y%m%d:%H%M}")
    return ";".join(out)


def describe(order: dict[str, Any]) -> str:
    """IB's order line in an Order Message (e.g. "SELL 1 SPY NOV 27 '26 570 Put")."""
    c = order["contract"]
    qty = f"{order['qty']:g}"
    if c.get("sec_type") == "OPT":
        exp = datetime.strptime(c["expiry"], "%Y%m%d")
        right = "Put" if c["right"] == "P" else "Call"
        return (f"{order['action']} {qty} {c['symbol']} {exp:%b %d} '{exp:%y} "
                f"{c['strike']:g} {right}".upper().replace("PUT", "Put").replace("CALL", "Call"))
    return f"{order['action']} {qty} {c['symbol']} {c.get('exchange') or 'SMART'}"


def warning_399(order: dict[str, Any], at: datetime) -> str:
    return (f"Order Message:\n{describe(order)}\nWarning: Your order will not be placed at the"
            f" exchange until {at.astimezone(ET):%Y-%m-%d %H:%M:%S} US/Eastern")
