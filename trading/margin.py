"""The pre-sale margin check on the broker's whatIf answer (issue 14, path 11)."""

from __future__ import annotations

from trading.model import WhatIfInfo


def margin_refusal(w: WhatIfInfo, max_margin_use: float) -> str:
    """Why a sale with this whatIf answer must not be sent ("" = it may).

    Refused when the initial margin after it would pass `max_margin_use` of net
    liquidation, or when the available funds after it would be negative."""
    if w.available_funds_after < 0:
        return (f"available funds after the sale would be {w.available_funds_after:.2f} "
                f"(equity with loan {w.equity_with_loan_after:.2f}, initial margin "
                f"{w.init_after:.2f})")
    if w.net_liquidation <= 0:
        return f"net liquidation is {w.net_liquidation:.2f}: no margin to use"
    use = w.init_after / w.net_liquidation
    if use > max_margin_use:
        return (f"initial margin after the sale {w.init_after:.2f} would be {use:.0%} of net "
                f"liquidation {w.net_liquidation:.2f} (max {max_margin_use:.0%})")
    return ""
