"""ibsim's own NYSE calendar (exchange_calendars XNYS), in America/New_York.

The gateway is IB's side and shares nothing with the bot: sessions, real close times
(13:00 on half days) and holidays come straight from exchange_calendars. The range
follows the clock: a calendar is built per 5-year window around the date asked, so no
simulated date falls off its end.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
WINDOW_YEARS = 5


@functools.lru_cache(maxsize=8)
def _xnys(window: int) -> Any:
    import exchange_calendars as xcals

    first = window * WINDOW_YEARS
    # One year of overlap each side: a query near a window's edge still sees its neighbours.
    return xcals.get_calendar("XNYS", start=f"{first - 1}-01-01",
                              end=f"{first + WINDOW_YEARS}-12-31")


def _cal(d: date) -> Any:
    return _xnys(d.year // WINDOW_YEARS)


@functools.lru_cache(maxsize=8192)
def is_session(d: date) -> bool:
    try:
        return bool(_cal(d).is_session(d.isoformat()))
    except Exception:  # outside what exchange_calendars can build: weekdays
        return d.weekday() < 5


@functools.lru_cache(maxsize=8192)
def close_time(d: date) -> time:
    """The regular close of a session (16:00, 13:00 on half days); 16:00 for a non-session."""
    if not is_session(d):
        return time(16, 0)
    try:
        return _cal(d).session_close(d.isoformat()).to_pydatetime().astimezone(ET).time()
    except Exception:
        return time(16, 0)


def close_at(d: date) -> datetime:
    return datetime.combine(d, close_time(d), ET)


def is_half_day(d: date) -> bool:
    return is_session(d) and close_time(d) < time(16, 0)


def next_session(d: date) -> date:
    d += timedelta(days=1)
    while not is_session(d):
        d += timedelta(days=1)
    return d


def previous_session(d: date) -> date:
    d -= timedelta(days=1)
    while not is_session(d):
        d -= timedelta(days=1)
    return d
