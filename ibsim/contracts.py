"""Contracts: the 12 contract fields of a request read, and a (partial) contract
resolved to the contracts ibsim knows (the requests that look them up: ibsim/lookups.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ibsim import codes, universe, wire
from ibsim.market import SPY_CON_ID, expirations, option_con_id, option_contract, stock_contract

if TYPE_CHECKING:
    from ibsim.client import Session
    from ibsim.market import Market


NO_SECDEF = codes.text(200)


def int_field(v: str, default: int = 0) -> int:
    return int(v) if v not in ("", None) else default


def float_field(v: str) -> float | None:
    """A price field; empty or IB's "unset" (Double.MAX_VALUE) is None."""
    if v in ("", None) or v.startswith("1.7976931348623157"):
        return None
    x = float(v)
    if not math.isfinite(x):  # "nan", "inf": no price; and the state file has no NaN
        raise ValueError(f"not a number: {v!r}")
    return x


def contract_from(f: list[str], i: int) -> dict[str, Any]:
    """The 12 contract fields starting at index i."""
    return {
        "con_id": int_field(f[i]), "symbol": f[i + 1], "sec_type": f[i + 2],
        "expiry": f[i + 3], "strike": float_field(f[i + 4]) or 0.0, "right": f[i + 5],
        "multiplier": f[i + 6], "exchange": f[i + 7], "primary_exchange": f[i + 8],
        "currency": f[i + 9], "local_symbol": f[i + 10], "trading_class": f[i + 11],
    }


def no_secdef(s: Session, req_id: int) -> None:
    s.send(wire.error(req_id, 200, NO_SECDEF))


def resolve(market: Market, positions: dict[int, dict[str, Any]], spec: dict[str, Any]
            ) -> list[dict[str, Any]]:
    """Contracts matching a (partial) contract from the client: SPY stock or options (an
    option of an expiry past the chain is still known while a position holds it)."""
    other = universe.resolve(spec, market)  # QQQ, IWM, stocks, VIX, forex
    if other is not None:
        return other
    if spec.get("con_id"):
        cid = spec["con_id"]
        if cid == SPY_CON_ID:
            return [stock_contract(spec.get("exchange") or "SMART")]
        for e in expirations(market.now()) + [p["contract"]["expiry"] for p in
                                              positions.values()
                                              if p["contract"]["sec_type"] == "OPT"]:
            for right in ("P", "C"):
                k = ((cid - 800_000_000) // 2) % 4000
                if option_con_id(e, float(k), right) == cid:
                    return [option_contract(e, float(k), right)]
        return []
    if spec.get("symbol", "").upper() != "SPY":
        return []
    sec = spec.get("sec_type") or "STK"
    if sec == "STK":
        return [stock_contract(spec.get("exchange") or "SMART")]
    if sec != "OPT":
        return []
    exps = expirations(market.now())
    want_exp = spec.get("expiry") or ""
    if want_exp:
        exps = [e for e in exps if e.startswith(want_exp[:8])]
    strikes = market.strikes()
    if spec.get("strike"):
        k = float(spec["strike"])
        strikes = [k] if k == int(k) and 1 <= k <= 5000 else []
    rights = [spec["right"][0].upper()] if spec.get("right") else ["P", "C"]
    if len(exps) * len(strikes) * len(rights) > 5000:
        exps = exps[:4]
    return [option_contract(e, k, r) for e in exps for k in strikes for r in rights]


def under_con_id(c: dict[str, Any]) -> int:
    if c["sec_type"] != "OPT":
        return 0
    inst = universe.underlying_of(c)
    return inst.con_id if inst else SPY_CON_ID
