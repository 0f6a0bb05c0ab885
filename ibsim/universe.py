"""Instruments besides SPY: QQQ and IWM with option chains, a few large stocks, the VIX
index (quotes only) and forex pairs (quotes and whatIf).

Each price follows SPY's seeded walk with its own beta (price = base x (SPY / SPY at
start) ^ beta), so every quote is reproducible from the seed and moves with the
market without a walk of its own. Contract ids are IB's real ones for the
underlyings; option ids follow SPY's scheme in a range of their own per symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from ibsim.market import (
    TICK,
    Market,
    OptionQuote,
    black_scholes,
    expirations,
    occ_symbol,
    skewed_iv,
    ticks_down,
    ticks_up,
)


@dataclass(frozen=True)
class Instrument:
    symbol: str
    con_id: int
    sec_type: str  # STK, IND, CASH
    base: float  # its price when SPY is at the simulator's starting spot
    beta: float
    exchange: str = "SMART"
    primary: str = "NASDAQ"
    currency: str = "USD"
    name: str = ""
    option_base: int = 0  # option con ids: option_base + ((day - 737000) * 4000 + K) * 2 + P
    tick: float = TICK

    @property
    def local_symbol(self) -> str:
        if self.sec_type == "CASH":
            return f"{self.symbol}.{self.currency}"
        return self.symbol


INSTRUMENTS: dict[str, Instrument] = {i.symbol if i.sec_type != "CASH" else
                                      i.symbol + i.currency: i for i in (
    Instrument("QQQ", 320227571, "STK", 520.0, 1.2, name="INVESCO QQQ TRUST SERIES 1",
               option_base=600_000_000),
    Instrument("IWM", 9579970, "STK", 240.0, 1.1, primary="ARCA",
               name="ISHARES RUSSELL 2000 ETF", option_base=650_000_000),
    Instrument("AAPL", 265598, "STK", 230.0, 1.1, name="APPLE INC"),
    Instrument("MSFT", 272093, "STK", 420.0, 1.0, name="MICROSOFT CORP"),
    Instrument("NVDA", 4815747, "STK", 140.0, 1.6, name="NVIDIA CORP"),
    Instrument("AMZN", 3691937, "STK", 200.0, 1.2, name="AMAZON.COM INC"),
    Instrument("VIX", 13455763, "IND", 15.0, -5.0, exchange="CBOE", primary="CBOE",
               name="CBOE Volatility Index"),
    Instrument("EUR", 12087792, "CASH", 1.08, 0.05, exchange="IDEALPRO", primary="",
               name="European Monetary Union Euro", tick=0.00005),
    Instrument("GBP", 12087797, "CASH", 1.27, 0.05, exchange="IDEALPRO", primary="",
               name="British Pound", tick=0.00005),
    Instrument("USD", 15016059, "CASH", 150.0, 0.08, exchange="IDEALPRO", primary="",
               currency="JPY", name="US Dollar", tick=0.005),
)}
BY_CON_ID = {i.con_id: i for i in INSTRUMENTS.values()}
WITH_OPTIONS = {i.symbol: i for i in INSTRUMENTS.values() if i.option_base}


def start_spot(market: Market) -> float:
    """SPY's price when the simulator started (every other price is relative to it)."""
    start = getattr(market, "_universe_start", None)
    if start is None:
        start = market._universe_start = market.spot  # type: ignore[attr-defined]
    return float(start)


def price(inst: Instrument, market: Market) -> float:
    return inst.base * (market.spot / start_spot(market)) ** inst.beta


def find(spec: dict[str, Any]) -> Instrument | None:
    sym = (spec.get("symbol") or "").upper()
    if spec.get("sec_type") == "CASH" or sym in ("EUR", "GBP") or (
            sym == "USD" and (spec.get("currency") or "").upper() == "JPY"):
        return INSTRUMENTS.get(sym + (spec.get("currency") or "USD").upper())
    return INSTRUMENTS.get(sym)


def stock_contract(inst: Instrument, exchange: str | None = None) -> dict[str, Any]:
    return {
        "con_id": inst.con_id, "symbol": inst.symbol, "sec_type": inst.sec_type, "expiry": "",
        "strike": 0.0, "right": "", "multiplier": "", "exchange": exchange or inst.exchange,
        "primary_exchange": inst.primary, "currency": inst.currency,
        "local_symbol": inst.local_symbol, "trading_class": inst.symbol if inst.sec_type !=
        "CASH" else f"{inst.symbol}.{inst.currency}",
    }


def option_con_id(inst: Instrument, expiry: str, strike: float, right: str) -> int:
    d = date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8]))
    return inst.option_base + ((d.toordinal() - 737_000) * 4000 + round(strike)) * 2 + (
        1 if right == "P" else 0)


def option_contract(inst: Instrument, expiry: str, strike: float, right: str) -> dict[str, Any]:
    return {
        "con_id": option_con_id(inst, expiry, strike, right), "symbol": inst.symbol,
        "sec_type": "OPT", "expiry": expiry, "strike": float(strike), "right": right,
        "multiplier": "100", "exchange": "SMART", "primary_exchange": "", "currency": "USD",
        "local_symbol": occ_symbol(inst.symbol, expiry, strike, right),
        "trading_class": inst.symbol,
    }


def strikes(inst: Instrument, market: Market) -> list[float]:
    s = price(inst, market)
    return [float(k) for k in range(int(s * 0.7) + 1, int(s * 1.3) + 1)]


def resolve(spec: dict[str, Any], market: Market) -> list[dict[str, Any]] | None:
    """Contracts of these instruments matching a client's spec; None when the spec is
    not about them (SPY's own resolution then applies)."""
    cid = spec.get("con_id") or 0
    if cid:
        if cid in BY_CON_ID:
            return [stock_contract(BY_CON_ID[cid], spec.get("exchange") or None)]
        for inst in WITH_OPTIONS.values():
            if inst.option_base <= cid < inst.option_base + 40_000_000:
                n = (cid - inst.option_base) // 2
                k, day = n % 4000, n // 4000 + 737_000
                expiry = date.fromordinal(day).strftime("%Y%m%d")
                right = "P" if cid % 2 else "C"
                return [option_contract(inst, expiry, float(k), right)]
        return None
    inst = find(spec)
    if inst is None:
        return None
    sec = spec.get("sec_type") or inst.sec_type
    if sec in ("STK", "IND", "CASH"):
        if sec != inst.sec_type:
            return []
        return [stock_contract(inst, spec.get("exchange") or None)]
    if sec != "OPT" or not inst.option_base:
        return []
    exps = expirations(market.now())
    if spec.get("expiry"):
        exps = [e for e in exps if e.startswith(spec["expiry"][:8])]
    ks = strikes(inst, market)
    if spec.get("strike"):
        k = float(spec["strike"])
        ks = [k] if k == int(k) and 1 <= k < 4000 else []
    rights = [spec["right"][0].upper()] if spec.get("right") else ["P", "C"]
    if len(exps) * len(ks) * len(rights) > 5000:
        exps = exps[:4]
    return [option_contract(inst, e, k, r) for e in exps for k in ks for r in rights]


def underlying_of(contract: dict[str, Any]) -> Instrument | None:
    return INSTRUMENTS.get(contract["symbol"]) if contract["symbol"] != "SPY" else None


def option_quote(market: Market, spot: float, expiry: str, strike: float,
                 right: str) -> OptionQuote:
    """Market.option_quote on another underlying's price."""
    iv = skewed_iv(spot, strike, market.volatility)
    years = market.years_to(expiry)
    p, delta, gamma, vega, theta = black_scholes(spot, strike, years, iv, right)
    half = max(TICK, min(0.5, p * market.half_spread))
    bid = ticks_down(p - half) if p - half >= TICK else 0.0
    ask = max(ticks_up(p + half), bid + TICK)
    return OptionQuote(round(bid, 2), round(ask, 2), round(p, 4), iv, delta, gamma, vega, theta)


def quote(contract: dict[str, Any], market: Market) -> tuple[float, float, float] | None:
    """(bid, ask, mark) of a non-SPY contract, None for SPY's own."""
    inst = underlying_of(contract) if contract["sec_type"] == "OPT" else (
        BY_CON_ID.get(contract["con_id"]))
    if inst is None:
        return None
    s = price(inst, market)
    if contract["sec_type"] == "OPT":
        q = option_quote(market, s, contract["expiry"], contract["strike"], contract["right"])
        return q.bid, q.ask, q.model
    t = inst.tick
    digits = 5 if t < 0.001 else 3 if t < 0.01 else 2
    bid = round(int(s / t) * t, digits)
    ask = round(bid + t, digits)
    return bid, ask, round(s, digits)
