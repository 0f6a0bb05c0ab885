"""IB's own hours, as pure functions of Eastern time: its daily reset windows (when a
gateway restart only collides with the reset) and the Sunday session expiry (when a
new login, with 2FA, is due)."""

from __future__ import annotations

from datetime import datetime

from config.validate import parse_quiet_window


def in_quiet_window(now_et: datetime, windows: list[str]) -> bool:
    """True inside one of IB's reset windows (config strings, ET; see parse_quiet_window)."""
    minute = now_et.hour * 60 + now_et.minute
    wd = now_et.weekday()
    for text in windows:
        days, start, end = parse_quiet_window(text)
        if end > start:
            if wd in days and start <= minute < end:
                return True
        elif (wd in days and minute >= start) or ((wd - 1) % 7 in days and minute < end):
            return True
    return False


def weekly_reauth(now_et: datetime) -> bool:
    """Sunday from 01:00 ET: IB's session has expired; a new login (2FA) is due."""
    return now_et.weekday() == 6 and now_et.hour >= 1
