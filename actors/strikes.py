"""Which put to sell: the expiry nearest a target DTE, the strike by delta or distance."""

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
