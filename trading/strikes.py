"""Which put to sell: the expiry nearest a target DTE (any listed one, or month-ends only),
the strike by delta or distance below spot."""

from __future__ import annotations

from datetime import date, datetime


def _as_date(expiry: str) -> date:
    return datetime.strptime(expiry[:8], "%Y%m%d").date()


def choose_expiry(expirations: list[str], today: date, target_dte: int) -> str:
    """Nearest to `target_dte` days; a tie goes to the later one (more premium, same risk
    horizon asked for); never one already expired; today only if target_dte is 0."""
    candidates = []
    for e in expirations:
        d = _as_date(e)
        dte = (d - today).days
        if dte < 0 or (dte == 0 and target_dte > 0):
            continue
        candidates.append((abs(dte - target_dte), -dte, e))
    if not candidates:
        raise ValueError(f"no expiry on or after {today} in {len(expirations)} expirations")
    return min(candidates)[2]


def month_end_expiries(expirations: list[str]) -> list[str]:
    """The last listed expiry of each month (the seed's bot sold these: 2026-04-30 etc.).
    The chain's own listing decides: a month-end moved to the day before a holiday is still
    the month's last expiry."""
    last: dict[str, str] = {}
    for e in sorted(expirations):
        last[e[:6]] = e  # sorted: the month's last one wins
    return sorted(last.values())


EXPIRY_RULES = ("nearest_dte", "month_end")


def choose_expiry_by_rule(
    expirations: list[str], today: date, target_dte: int, rule: str
) -> str:
    """`nearest_dte`: any listed expiry nearest `target_dte`; `month_end`: the month-end
    expiry nearest it (same tie and never-past rules as `choose_expiry`)."""
    if rule == "nearest_dte":
        return choose_expiry(expirations, today, target_dte)
    if rule == "month_end":
        return choose_expiry(month_end_expiries(expirations), today, target_dte)
    raise ValueError(f"unknown expiry rule {rule!r} (one of {', '.join(EXPIRY_RULES)})")


def choose_strike_by_delta(
    candidates: list[tuple[float, float | None]], target_delta: float
) -> float:
    """The strike whose |delta| is nearest `target_delta` (put deltas are negative)."""
    usable = [(abs(abs(d) - target_delta), s) for s, d in candidates if d is not None]
    if not usable:
        raise ValueError("no strike with a delta")
    return min(usable)[1]


def choose_strike_by_distance(strikes: list[float], spot: float, distance: float) -> float:
    """The highest strike at or below spot x (1 - distance)."""
    limit = spot * (1 - distance)
    below = [s for s in strikes if s <= limit]
    if not below:
        raise ValueError(f"no strike at or below {limit:.2f}")
    return max(below)


def candidate_strikes(strikes: list[float], spot: float, width: int = 15) -> list[float]:
    """Out-of-the-money put strikes below spot, nearest first, at most `width` of them."""
    below = sorted((s for s in strikes if s < spot), reverse=True)
    return below[:width]
