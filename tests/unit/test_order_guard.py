"""The pre-broker order guard as a pure function (trading/risk.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config.loader import RiskConfig
from trading.model import ContractInfo, OrderRequest
from trading.risk import order_violation, verify_account

PUT = ContractInfo(
    con_id=7, symbol="SPY", sec_type="OPT", expiry="20261127", strike=590.0, right="P",
    multiplier=100, local_symbol="SPY   261127P00590000",
)
RISK = RiskConfig(max_order_quantity=2, max_strike_distance=0.05)
SALE = OrderRequest("tb:2026-11-24:0935:sale:1", PUT, "SELL", "LMT", 1, lmt_price=1.25,
                    spot=600.0)
TP = OrderRequest("tb:lot1:tp:1", PUT, "BUY", "LMT", 1, lmt_price=0.5, oca_group="g")
SL = OrderRequest("tb:lot1:sl:1", PUT, "BUY", "STP", 1, aux_price=2.5, oca_group="g")


def test_sane_orders_pass() -> None:
    assert order_violation(SALE, RISK, 600.0) is None
    assert order_violation(TP, RISK, None) is None
    assert order_violation(SL, RISK, None) is None


@pytest.mark.parametrize(
    ("req", "spot", "words"),
    [
        (replace(SALE, lmt_price=0.0), 600.0, "limit price 0.0 must be > 0"),
        (replace(SALE, lmt_price=-1.0), 600.0, "must be > 0"),
        (replace(SALE, lmt_price=float("nan")), 600.0, "must be > 0"),
        (replace(SL, aux_price=0.0), None, "stop price 0.0 must be > 0"),
        (replace(SALE, lmt_price=590.0), 600.0, "at or above the strike"),
        (replace(SALE, qty=3), 600.0, "over risk.max_order_quantity 2"),
        (replace(TP, qty=0), None, "must be > 0"),
        (replace(SALE, order_ref=""), 600.0, "no orderRef"),
        (replace(SALE, lmt_price=None), 600.0, "needs a limit price"),
        (replace(SL, aux_price=None), None, "needs a stop price"),
        (replace(SALE, action="SHORT"), 600.0, "BUY or SELL"),
        (SALE, 700.0, "over risk.max_strike_distance"),
        (SALE, None, "no underlying price"),
        (SALE, 0.0, "no underlying price"),
    ],
)
def test_out_of_bounds_orders_are_refused_with_the_reason(
    req: OrderRequest, spot: float | None, words: str
) -> None:
    why = order_violation(req, RISK, spot)
    assert why is not None and words in why, why


def test_exits_are_never_refused_for_where_spot_is() -> None:
    # Buying back is always allowed, however far the market ran.
    assert order_violation(TP, RISK, 300.0) is None
    assert order_violation(SL, RISK, 900.0) is None


# ---- issue 21: the account comes from the gateway, the config only chooses ----------

@pytest.mark.parametrize(
    ("managed", "configured", "mode", "account", "words"),
    [
        (["DU1234567"], "", "paper", "DU1234567", ""),
        (["DU1234567"], "DU1234567", "paper", "DU1234567", ""),
        (["U7654321"], "", "live", "U7654321", ""),
        (["DU1", "DU2"], "DU2", "paper", "DU2", ""),
        # The config names an account the login does not manage: both are named.
        (["U7654321"], "DU1234567", "paper", "", "DU1234567 is not one of the accounts"),
        (["DU1234567"], "U7654321", "live", "", "U7654321 is not one of the accounts"),
        # Several and none chosen: never "whichever came first".
        (["DU1", "DU2"], "", "paper", "", "several accounts (DU1, DU2)"),
        ([], "DU1234567", "paper", "", "the gateway reported no account"),
        (["U7654321"], "", "paper", "", "config says paper but account U7654321 is a live"),
        (["DU1234567"], "", "live", "", "config says live but account DU1234567 is a paper"),
        (["DU1", "U2"], "U2", "paper", "", "config says paper but account U2 is a live"),
    ],
)
def test_verify_account(
    managed: list[str], configured: str, mode: str, account: str, words: str
) -> None:
    got, problem = verify_account(managed, configured, mode)
    assert got == account
    assert (words in problem) if words else problem == ""
    if configured and words and "not one of" in words:
        assert all(a in problem for a in managed)  # names both sides
