"""A believable, seeded SPY market: a random walk for the ETF, Black-Scholes puts and
calls with a put skew, spreads on a 0.01 tick, and the option chain.

Everything random comes from one `random.Random(seed)` advanced once per tick, so
the same seed gives the same prices (wall time never enters a price).
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ibsim import calendar
from ibsim.calendar import ET

SPY_CON_ID = 756733
RATE = 0.04
TICK = 0.01


@dataclass
class OptionQuote:
    bid: float
    ask: float
    model: float
    iv: float
    delta: float
    gamma: float
    vega: float
    theta: float


def _ncdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def black_scholes(spot: float, strike: float, years: float, iv: float, right: str,
                  rate: float = RATE) -> tuple[float, float, float, float, float]:
    """(price, delta, gamma, vega, theta) of a European option."""
    years = max(years, 1e-6)
    sd = iv * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + iv * iv / 2) * years) / sd
    d2 = d1 - sd
    disc = math.exp(-rate * years)
    if right == "C":
        price = spot * _ncdf(d1) - strike * disc * _ncdf(d2)
        delta = _ncdf(d1)
    else:
        price = strike * disc * _ncdf(-d2) - spot * _ncdf(-d1)
        delta = _ncdf(d1) - 1
    gamma = _npdf(d1) / (spot * sd)
    vega = spot * _npdf(d1) * math.sqrt(years) / 100
    theta = -(spot * _npdf(d1) * iv) / (2 * math.sqrt(years)) / 365
    return max(price, 0.0), delta, gamma, vega, theta


def skewed_iv(spot: float, strike: float, base: float) -> float:
    """Puts below spot trade at a higher implied volatility (the equity skew): +0.75 vol
    points per 1% below spot, so a 90-day put 10% out of the money trades near 23.5% and
    about $6 with SPY near 690, where the seed's bot sold (2026-04-30 624P at 6.16, 85 days;
    a slope of 0.9 made it ~$7.2)."""
    moneyness = strike / spot - 1
    return max(0.06, base - 0.75 * moneyness if moneyness < 0 else base - 0.2 * moneyness)


def ticks_down(x: float) -> float:
    return math.floor(round(x / TICK, 6)) * TICK


def ticks_up(x: float) -> float:
    return math.ceil(round(x / TICK, 6)) * TICK


@functools.lru_cache(maxsize=4096)
def expiry_close(expiry: str) -> datetime:
    # Cached: every option quote of every tick asks it (strptime was a tenth of ibsim).
    # The real close of the expiry date (13:00 on a half day), from ibsim's own calendar.
    return calendar.close_at(datetime.strptime(expiry, "%Y%m%d").date())


def option_con_id(expiry: str, strike: float, right: str) -> int:
    d = datetime.strptime(expiry, "%Y%m%d").date()
    return 800_000_000 + ((d.toordinal() - 737_000) * 4000 + round(strike)) * 2 + (
        1 if right == "P" else 0)


def occ_symbol(symbol: str, expiry: str, strike: float, right: str) -> str:
    return f"{symbol:<6}{expiry[2:]}{right}{round(strike * 1000):08d}"


def option_contract(expiry: str, strike: float, right: str) -> dict[str, object]:
    return {
        "con_id": option_con_id(expiry, strike, right), "symbol": "SPY", "sec_type": "OPT",
        "expiry": expiry, "strike": float(strike), "right": right, "multiplier": "100",
        "exchange": "SMART", "primary_exchange": "", "currency": "USD",
        "local_symbol": occ_symbol("SPY", expiry, strike, right), "trading_class": "SPY",
    }


def stock_contract(exchange: str = "SMART") -> dict[str, object]:
    return {
        "con_id": SPY_CON_ID, "symbol": "SPY", "sec_type": "STK", "expiry": "", "strike": 0.0,
        "right": "", "multiplier": "", "exchange": exchange, "primary_exchange": "ARCA",
        "currency": "USD", "local_symbol": "SPY", "trading_class": "SPY",
    }


def _is_session(d: date) -> bool:
    return calendar.is_session(d)


def expirations(now: datetime) -> list[str]:
    """Dailies for two weeks, Fridays, monthlies (3rd Friday) and month-ends: to the end of
    the month 12 months out."""
    today = now.astimezone(ET).date()
    if now.astimezone(ET).time() >= calendar.close_time(today):  # 13:00 on a half day
        today += timedelta(days=1)
    # Cached per day: every order and contract request resolves against it (a profile
    # of bench.exits showed the calendar walk as most of ibsim's time per order).
    return list(_expirations_from(today))


@functools.lru_cache(maxsize=64)
def _expirations_from(today: date) -> tuple[str, ...]:
    # To the end of the month a year out, so that the last month listed is whole and its
    # last expiry is the true month-end (the engine's month_end rule picks by that).
    year_out = today + timedelta(days=365)
    end = date(year_out.year + year_out.month // 12, year_out.month % 12 + 1, 1) - timedelta(
        days=1)
    out: set[date] = set()
    d = today
    while d <= end:
        if d.weekday() < 5 and (d - today).days <= 14:
            out.add(d)
        if d.weekday() == 4:
            out.add(d)
        nxt = d + timedelta(days=1)
        if nxt.month != d.month:  # month-end: last weekday of the month
            last = d
            while last.weekday() >= 5:
                last -= timedelta(days=1)
            out.add(last)
        d = nxt
    result = []
    for e in sorted(out):
        while not _is_session(e) and e.weekday() < 5 and e > today:
            e -= timedelta(days=1)  # an expiry on a holiday moves to the day before
        if _is_session(e) or e.weekday() < 5:
            result.append(e.strftime("%Y%m%d"))
    return tuple(sorted(set(result)))


class Market:
    def __init__(self, seed: int = 1, spot: float = 600.0, volatility: float = 0.16,
                 now: datetime | None = None) -> None:
        self.rng = random.Random(seed)
        self.spot = spot
        self.volatility = volatility  # base implied vol of the chain
        self.walk_sigma = 0.00008  # per tick, relative
        self.drift = 0.0
        self.tick_no = 0
        self.fixed_now = now
        self.bid_size = 300
        self.ask_size = 200
        self.fair: dict[int, float] = {}  # per con_id: a seeded point inside the spread
        # An option's half-spread as a share of its price (capped at $0.50, at least a
        # tick): `--spread`, a knob of the buyers fill model.
        self.half_spread = 0.025

    def now(self) -> datetime:
        return self.fixed_now or datetime.now(ET)

    def step(self) -> None:
        self.tick_no += 1
        shock = self.rng.gauss(0.0, 1.0)
        self.spot = max(1.0, self.spot * math.exp(self.walk_sigma * shock + self.drift))
        self.bid_size = self.rng.randint(1, 20) * 100
        self.ask_size = self.rng.randint(1, 20) * 100
        self.fair = {}

    def fair_fraction(self, con_id: int) -> float:
        """Where inside the spread the market trades this tick (0 = bid, 1 = ask)."""
        if con_id not in self.fair:
            self.fair[con_id] = self.rng.random()
        return self.fair[con_id]

    def stock_quote(self) -> tuple[float, float, float]:
        bid = ticks_down(self.spot - 0.005)
        ask = max(bid + TICK, ticks_up(self.spot + 0.005))
        return round(bid, 2), round(ask, 2), round(self.spot, 2)

    def years_to(self, expiry: str) -> float:
        seconds = (expiry_close(expiry) - self.now()).total_seconds()
        return max(seconds, 60.0) / (365 * 24 * 3600)

    def option_quote(self, expiry: str, strike: float, right: str) -> OptionQuote:
        iv = skewed_iv(self.spot, strike, self.volatility)
        years = self.years_to(expiry)
        price, delta, gamma, vega, theta = black_scholes(self.spot, strike, years, iv, right)
        half = max(TICK, min(0.5, price * self.half_spread))
        bid = ticks_down(price - half) if price - half >= TICK else 0.0
        ask = max(ticks_up(price + half), bid + TICK)
        return OptionQuote(round(bid, 2), round(ask, 2), round(price, 4), iv, delta, gamma, vega,
                           theta)

    def strikes(self) -> list[float]:
        lo, hi = math.ceil(self.spot * 0.7), math.floor(self.spot * 1.3)
        return [float(k) for k in range(lo, hi + 1)]
