"""The last check before an order reaches the broker: sane bounds, as a pure function.

Connection calls it for every order it is asked to place or re-price, so no path
of the engine (entry, exits, repair, a future bug) can send a nonsense order.
Exits are never refused for where spot is: buying back a short put is always
allowed; only opening sales must be near the money.
"""

from __future__ import annotations

from config.loader import RiskConfig
from trading.model import OrderRequest


class OrderRefused(ValueError):
    """The order broke a sanity bound; it was not sent. The message says which."""


def order_violation(req: OrderRequest, risk: RiskConfig, spot: float | None) -> str | None:
    """Why `req` must not be sent, or None when it is within bounds.

    `spot` is the underlying's price the order was decided at (None: unknown).
    """
    c = req.contract
    name = f"{req.action} {req.order_type} {c.local_symbol or c.con_id} ref={req.order_ref}"
    if not req.order_ref:
        return f"{name}: no orderRef"
    if req.action not in ("BUY", "SELL"):
        return f"{name}: action must be BUY or SELL"
    if req.qty <= 0:
        return f"{name}: quantity {req.qty} must be > 0"
    # Shares come 100 to a contract (an assignment's shares sold back, issue 16).
    limit = risk.max_order_quantity * (100 if c.sec_type == "STK" else 1)
    if req.qty > limit:
        return f"{name}: quantity {req.qty} over risk.max_order_quantity {risk.max_order_quantity}"
    for field_name, price in (("limit", req.lmt_price), ("stop", req.aux_price)):
        if price is not None and not price > 0:  # also refuses NaN
            return f"{name}: {field_name} price {price} must be > 0"
        if price is not None and c.sec_type == "OPT" and c.right == "P" and price >= c.strike:
            return f"{name}: {field_name} price {price} at or above the strike {c.strike}"
    if req.order_type == "LMT" and req.lmt_price is None:
        return f"{name}: a limit order needs a limit price"
    if req.order_type == "STP" and req.aux_price is None:
        return f"{name}: a stop order needs a stop price"
    if req.action == "SELL" and c.sec_type == "OPT":
        if not spot or not spot > 0:
            return f"{name}: no underlying price to check the strike against"
        distance = abs(c.strike - spot) / spot
        if distance > risk.max_strike_distance:
            return (
                f"{name}: strike {c.strike} is {distance:.1%} from spot {spot:.2f}, "
                f"over risk.max_strike_distance {risk.max_strike_distance:.1%}"
            )
    return None


def is_paper_account(account: str) -> bool:
    """IB's paper-trading accounts start with DU (a paper login may also show DF...)."""
    return account.startswith("DU")


def verify_account(
    managed: tuple[str, ...] | list[str], configured: str, mode: str
) -> tuple[str, str]:
    """(the account every order must carry, "") or ("", why nothing may be sent).

    `managed` is what the gateway reports (managedAccounts()), never the config: the
    config only chooses among them. An order must never go to "whichever came first",
    so several managed accounts and none configured is a refusal too.
    """
    managed = [a for a in managed if a]
    configured = configured.strip()
    shown = ", ".join(managed)
    if not managed:
        return "", "the gateway reported no account"
    if configured and configured not in managed:
        return "", (
            f"configured account {configured} is not one of the accounts the gateway "
            f"manages ({shown}); config says {mode}"
        )
    if not configured and len(managed) > 1:
        return "", (
            f"the gateway manages several accounts ({shown}) and [gateway] account "
            f"is not set: choose one"
        )
    account = configured or managed[0]
    if mode == "live" and is_paper_account(account):
        return "", f"config says live but account {account} is a paper account"
    if mode == "paper" and not is_paper_account(account):
        return "", f"config says paper but account {account} is a live account"
    return account, ""


def of_account(account: str, position_account: str) -> bool:
    """Is a position (or execution) of `position_account` one the engine trades? Only
    the verified account's: a login that manages several accounts reports all of them,
    and another account's put on the same contract must never close or grow our lot.
    Nothing verified (""; several accounts and none configured, or the check failed):
    nothing is ours, and the whole-account reads refuse rather than answer empty."""
    return bool(account) and (not position_account or position_account == account)
