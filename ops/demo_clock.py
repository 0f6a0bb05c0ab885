"""The demo's clock start: a minute before the entry time of the current or last session.

`python -m ops.demo_clock [HH:MM]` prints it as ISO, for `make demo`, so a
newcomer sees the day's entry within a minute, whatever the hour.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

from trading.calendar import ET, TradingCalendar


def demo_clock_start(now: datetime, entry_time: str = "09:35",
                     calendar: TradingCalendar | None = None) -> datetime:
    cal = calendar or TradingCalendar()
    today = now.astimezone(ET).date()
    day = today if cal.is_session(today) else cal.previous_session(today)
    hh, mm = (int(x) for x in entry_time.split(":"))
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=ET) - timedelta(minutes=1)


def main() -> None:
    entry = sys.argv[1] if len(sys.argv) > 1 else "09:35"
    print(demo_clock_start(datetime.now(ET), entry).isoformat())


if __name__ == "__main__":
    main()
