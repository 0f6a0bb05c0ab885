"""IB's own calendar of interruptions, on ibsim's clock (`--ib-schedule`).

IB's system status page (https://www.interactivebrokers.com/en/software/systemStatus.php;
stored copy read: https://www.interactivebrokers.co.uk/pt/software/systemStatus.php):
"Daily reset schedule (Sunday - Friday)": North America 00:15 ET - 01:45 ET; "Weekend
reset/maintenance schedule": Friday 23:00 ET - Saturday 03:00 ET.

* The daily reset: ibsim cuts the link at the window's start, 00:15 ET on Sunday to
  Friday: 1100 for three minutes, then 1102 (data maintained). (The reset falls
  somewhere in IB's 00:15-01:45 window; its start is modelled.)
* The weekend reset: Friday 23:00 ET to Saturday 03:00 ET the link is down, and it ends
  with 1101 (data lost): the harsher code is modelled. It stands for Saturday's daily one.
* The weekly re-authentication: at 01:00 ET on Sunday the session expires (IBKR guides,
  "Auto Restart Considerations": tokens invalidated each Sunday at 1:00 am ET); the
  gateway logs out and stays so until `POST /fault/login` (someone logs in, with 2FA).

`last_reset` is also the start of IB's "current day" for reqExecutions (always on).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from ibsim.calendar import ET

SOURCE = "https://www.interactivebrokers.com/en/software/systemStatus.php"
RESET_AT = time(0, 15)  # daily, Sunday to Friday (ET)
RESET_WINDOW_END = time(1, 45)
WEEKEND_AT = time(23, 0)  # Friday (ET), to Saturday 03:00
WEEKEND_END = time(3, 0)
WEEKNIGHT_LOSS = timedelta(minutes=3)
WEEKEND_LOSS = timedelta(hours=4)  # Friday 23:00 to Saturday 03:00
FRIDAY_LOSS = WEEKEND_LOSS  # the old name
REAUTH_AT = time(1, 0)  # Sunday, ET
SATURDAY, FRIDAY = 5, 4


def _resets_on(day: datetime) -> list[datetime]:
    """The reset starts on one ET date: 00:15 unless a Saturday; 23:00 on a Friday."""
    d = day.date()
    out = [] if d.weekday() == SATURDAY else [datetime.combine(d, RESET_AT, ET)]
    if d.weekday() == FRIDAY:
        out.append(datetime.combine(d, WEEKEND_AT, ET))
    return out


def last_reset(now: datetime) -> datetime:
    """The latest reset start at or before `now` (00:15 ET daily, Friday 23:00 ET)."""
    et = now.astimezone(ET)
    for back in range(3):
        starts = [t for t in _resets_on(et - timedelta(days=back)) if t <= et]
        if starts:
            return max(starts)
    raise AssertionError("a reset every two days at most")  # pragma: no cover


def loss_of(start: datetime) -> timedelta:
    return WEEKEND_LOSS if start.time() == WEEKEND_AT else WEEKNIGHT_LOSS


def reset_loss(now: datetime) -> tuple[str, int] | None:
    """(key, restore code) while `now` is inside a reset's link loss, else None."""
    start = last_reset(now)
    weekend = start.time() == WEEKEND_AT
    if now.astimezone(ET) < start + loss_of(start):
        return start.isoformat(), 1101 if weekend else 1102
    return None


def last_reauth(now: datetime) -> datetime:
    """The latest Sunday 01:00 ET at or before `now`."""
    et = now.astimezone(ET)
    days_back = (et.weekday() - 6) % 7
    at = datetime.combine(et.date() - timedelta(days=days_back), REAUTH_AT, ET)
    return at if at <= et else at - timedelta(days=7)


def after_next_reset(now: datetime) -> datetime:
    """A minute after the link loss of the first reset after `now` has ended: IB's
    "current day" has turned over (the executions before it are no longer reported)."""
    et = now.astimezone(ET)
    start = min(t for back in range(0, 4) for t in _resets_on(et + timedelta(days=back))
                if t > et)
    return (start + loss_of(start) + timedelta(minutes=1)).astimezone(now.tzinfo or ET)
