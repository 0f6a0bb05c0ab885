"""How old a quote may be before no sale or strike choice is priced on it."""

from __future__ import annotations

from trading.model import Quote


def stale_reason(quote: Quote, now: float, max_age: float, name: str = "") -> str:
    """Why `quote` may not price an order at `now` ("" = it may).

    Its `time` is when its last tick arrived: a line left open during a market-data
    silence keeps answering with values that are minutes old."""
    label = name or f"con_id {quote.con_id}"
    if not quote.time:
        return f"no tick yet for {label}"
    age = now - quote.time
    if age > max_age:
        return f"quote for {label} is {age:.1f}s old (max {max_age:g}s)"
    return ""
