"""NYSE calendar in New York time and the injected clocks."""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from actors.scheduler import due_slots
from config.loader import ClockConfig
from ops.clock_source import clock_from_config
from trading.calendar import TradingCalendar
from trading.clock import ManualClock, SimClock

ET = ZoneInfo("America/New_York")


def test_thanksgiving_week() -> None:
    cal = TradingCalendar()
    sessions = [d for d in range(23, 30) if cal.is_session(date(2026, 11, d))]
    assert sessions == [23, 24, 25, 27]
    _o, full = cal.session_open_close(date(2026, 11, 25))
    assert (full.hour, full.minute) == (16, 0)
    _o, close = cal.session_open_close(date(2026, 11, 27))
    assert (close.hour, close.minute) == (13, 0)


def test_slots_and_deadline_respect_half_days() -> None:
    cal = TradingCalendar()
    day = date(2026, 11, 27)
    slots = cal.entry_slots(day, ["09:35", "13:30"])
    assert [s.strftime("%H:%M") for s in slots] == ["09:35"]
    assert cal.catch_up_deadline(day, "14:00").strftime("%H:%M") == "13:00"
    assert cal.entry_slots(date(2026, 11, 26), ["09:35"]) == []


def test_market_open_uses_new_york_time_whatever_the_input_zone() -> None:
    cal = TradingCalendar()
    utc = ZoneInfo("UTC")
    assert cal.is_market_open(datetime(2026, 11, 24, 14, 35, tzinfo=utc))  # 09:35 ET
    assert not cal.is_market_open(datetime(2026, 11, 24, 14, 25, tzinfo=utc))
    assert not cal.is_market_open(datetime(2026, 11, 28, 15, 0, tzinfo=utc))


def test_due_slots() -> None:
    cal = TradingCalendar()
    now = datetime(2026, 11, 24, 9, 36, tzinfo=ET)
    assert [s for s, _ in due_slots(cal, now, ["09:35", "11:00"])] == ["09:35"]
    assert due_slots(cal, datetime(2026, 11, 26, 10, 0, tzinfo=ET), ["09:35"]) == []


def test_sim_clock_runs_at_speed() -> None:
    start = datetime(2026, 11, 25, 9, 20, tzinfo=ET)
    clock = SimClock(start, speed=3600)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.05:
        pass
    elapsed = (clock.now() - start).total_seconds()
    assert 150 <= elapsed <= 3600  # 0.05 real s x 3600 = 180 simulated s (+ slack)


def test_clock_from_config() -> None:
    c = clock_from_config(ClockConfig(start="2026-11-25T09:20:00-05:00", speed=1.0))
    assert c.now().astimezone(ET).strftime("%Y-%m-%d %H:%M") == "2026-11-25 09:20"
    manual = ManualClock(datetime(2026, 11, 25, 9, 20, tzinfo=ET))
    assert manual.advance(900).strftime("%H:%M") == "09:35"


def test_demo_clock_starts_a_minute_before_the_last_sessions_entry() -> None:
    from ops.demo_clock import demo_clock_start

    thursday = datetime(2026, 11, 26, 20, 0, tzinfo=ET)  # Thanksgiving: closed
    assert demo_clock_start(thursday).isoformat() == "2026-11-25T09:34:00-05:00"
    tuesday_night = datetime(2026, 11, 24, 22, 0, tzinfo=ET)
    assert demo_clock_start(tuesday_night).isoformat() == "2026-11-24T09:34:00-05:00"


def test_file_clock_follows_the_file_and_keeps_the_last_good_time(tmp_path: Path) -> None:
    from ops.clock_source import ClockFileError, FileClock, write_clock_file
    from tests.support.zmq_request import wait_until

    path = tmp_path / "clock.json"
    with pytest.raises(ClockFileError):
        FileClock(path)
    monday = datetime(2026, 11, 23, 9, 30, tzinfo=ET)
    write_clock_file(path, monday, 0.0)
    clock = FileClock(path)
    assert clock.now() == monday
    friday = datetime(2026, 11, 27, 9, 30, tzinfo=ET)
    write_clock_file(path, friday, 0.0)
    wait_until(lambda: clock.now() == friday, 5, message="the clock jumps to the new time")
    path.write_text("{not json")
    assert clock.now() == friday  # a broken write changes nothing
