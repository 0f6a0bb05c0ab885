"""The pure pre-sale checks of issue 14: quote age (path 6) and margin (path 11)."""

from __future__ import annotations

from trading.freshness import stale_reason
from trading.margin import margin_refusal
from trading.model import Quote, WhatIfInfo


def test_a_quote_older_than_the_limit_is_stale() -> None:
    q = Quote(1, 1.0, 1.1, None, time=100.0)
    assert stale_reason(q, 101.5, 2.0) == ""
    assert "3.0s old" in stale_reason(q, 103.0, 2.0, "SPY")
    assert "no tick yet" in stale_reason(Quote(1, None, None, None, time=0.0), 100.0, 2.0)


def what_if(init_after: float, ewl_after: float, net: float) -> WhatIfInfo:
    return WhatIfInfo(0.0, init_after, init_after, init_after, ewl_after, 0.65, net)


def test_margin_use_and_available_funds() -> None:
    assert margin_refusal(what_if(10_000, 40_000, 40_000), 0.5) == ""
    assert "of net liquidation" in margin_refusal(what_if(10_700, 15_000, 15_000), 0.5)
    assert "available funds" in margin_refusal(what_if(10_700, 10_100, 10_000), 1.0)
    assert margin_refusal(what_if(5_000, 10_000, 0.0), 0.5)  # nothing to margin against
