"""ibsim's own NYSE calendar (exchange_calendars XNYS), in America/New_York.

The gateway is IB's side and shares nothing with the bot: sessions, real close times
(13:00 on half days) and holidays come straight from exchange_calendars, read once
per calendar year into a table of that year's sessions and their closes, so the
range follows the simulated clock wherever it goes.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
REGULAR_CLOSE = time(16, 0)


@functools.lru_cache(maxsize=16)
def _closes(year: int) -> dict[date, time] | None:
    """Every NYSE session of `year` with its close (ET); None when exchange_calendars
    cannot build that year (ibsim then treats weekdays as sessions)."""
    import exchange_calendars as xcals

    try:
        sched = xcals.get_calendar("XNYS", start=f"{year}-01-01", end=f"{year}-12-31").schedule
    except Exception:
        return None
    return {day.date(): close.tz_convert(ET).time()
            for day, close in zip(sched.index, sched["close"], strict=True)}


def is_session(d: date) -> bool:
    closes = _closes(d.year)
    return d.weekday() < 5 if closes is None else d in closes


def close_time(d: date) -> time:
    """The regular close of a session (16:00, 13:00 on half days); 16:00 for a non-session."""
    return (_closes(d.year) or {}).get(d, REGULAR_CLOSE)


def close_at(d: date) -> datetime:
    return datetime.combine(d, close_time(d), ET)


def next_session(d: date) -> date:
    d += timedelta(days=1)
    while not is_session(d):
        d += timedelta(days=1)
    return d
