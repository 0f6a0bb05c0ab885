"""IB's own calendar of interruptions, on ibsim's clock (`--ib-schedule`).

* The daily server reset (IB: "about 23:45-00:45 ET" for North America): ibsim cuts the
  link at 23:45 ET: 1100 for three minutes on weeknights, then 1102 (data maintained);
  Friday night it lasts an hour (to 00:45 Saturday) and ends with 1101 (data lost): the
  weekend reset is IB's longer one, and the harsher code is modelled.
* The weekly re-authentication: at 01:00 ET on Sunday the session expires; the gateway
  logs out and stays so until `POST /fault/login` (someone logs in again, with 2FA).

`last_reset` is also the start of IB's "current day" for reqExecutions (always on).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from ibsim.calendar import ET

RESET_AT = time(23, 45)
WEEKNIGHT_LOSS = timedelta(minutes=3)
FRIDAY_LOSS = timedelta(hours=1)
REAUTH_AT = time(1, 0)  # Sunday, ET


def last_reset(now: datetime) -> datetime:
    """The latest daily reset at or before `now` (23:45 ET)."""
    et = now.astimezone(ET)
    at = datetime.combine(et.date(), RESET_AT, ET)
    return at if at <= et else at - timedelta(days=1)


def reset_loss(now: datetime) -> tuple[str, int] | None:
    """(key, restore code) while `now` is inside a reset's link loss, else None."""
    start = last_reset(now)
    friday = start.weekday() == 4
    length = FRIDAY_LOSS if friday else WEEKNIGHT_LOSS
    if now.astimezone(ET) < start + length:
        return start.isoformat(), 1101 if friday else 1102
    return None


def last_reauth(now: datetime) -> datetime:
    """The latest Sunday 01:00 ET at or before `now`."""
    et = now.astimezone(ET)
    days_back = (et.weekday() - 6) % 7
    at = datetime.combine(et.date() - timedelta(days=days_back), REAUTH_AT, ET)
    return at if at <= et else at - timedelta(days=7)
