"""The NYSE calendar (exchange_calendars XNYS) in America/New_York, whatever the server TZ.

The range follows the clock (issue 16): a calendar is built per 5-year window around the
date asked, so trading never stops because the calendar ends."""

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

    # A bounded range keeps the (slow) calendar build short; a year of overlap each side
    # lets a query near a window's edge see its neighbours.
    first = window * WINDOW_YEARS
    return xcals.get_calendar("XNYS", start=f"{first - 1}-01-01",
                              end=f"{first + WINDOW_YEARS}-12-31")


def _cal(d: date) -> Any:
    return _xnys(d.year // WINDOW_YEARS)


def _hhmm(value: str) -> time:
    h, m = value.split(":")
    return time(int(h), int(m))


class TradingCalendar:
    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one calendar per process
    def is_session(self, d: date) -> bool:
        return bool(_cal(d).is_session(d.isoformat()))

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def session_open_close(self, d: date) -> tuple[datetime, datetime]:
        if not self.is_session(d):
            raise ValueError(f"{d} is not an NYSE session")
        o = _cal(d).session_open(d.isoformat()).to_pydatetime().astimezone(ET)
        c = _cal(d).session_close(d.isoformat()).to_pydatetime().astimezone(ET)
        return o, c

    def is_market_open(self, at: datetime) -> bool:
        et = at.astimezone(ET)
        if not self.is_session(et.date()):
            return False
        o, c = self.session_open_close(et.date())
        return o <= et < c

    def previous_session(self, d: date) -> date:
        d -= timedelta(days=1)
        while not self.is_session(d):
            d -= timedelta(days=1)
        return d

    def entry_slots(self, d: date, entry_times: list[str]) -> list[datetime]:
        """The day's entry times (aware, ET), without those at or after the close."""
        if not self.is_session(d):
            return []
        o, c = self.session_open_close(d)
        slots = [datetime.combine(d, _hhmm(t), ET) for t in entry_times]
        return sorted(s for s in slots if o <= s < c)

    def catch_up_deadline(self, d: date, until: str) -> datetime:
        """Last moment a late entry may run: `until` (ET), not after the close."""
        _o, c = self.session_open_close(d)
        return min(datetime.combine(d, _hhmm(until), ET), c)
