"""Historical bars and the day's statistics, from one seeded walk per underlying.

The walk has a point every minute of every session day (04:00-20:00 ET, the
extended session; regular hours are 09:30-16:00), seeded by (seed, symbol, day), so
the same seed gives the same history. It is anchored on the live price: the path
ends at the current spot, so history and quotes meet. 1-minute bars are the walk's
minutes; longer bars aggregate them (an hour bar is its 60 minute bars, a day bar
its session's minutes), so every bar size tells the same story. Options are priced
on the underlying's path with the live model (Black-Scholes with the put skew).
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np

from ibsim.market import ET, TICK, _is_session, black_scholes, expiry_close, skewed_iv

MINUTES = 960  # 04:00-20:00 ET
RTH_FROM, RTH_TO = 330, 720  # 09:30 and 16:00 as minutes after 04:00
DAYS_BACK = 380  # a year and a bit: the longest duration served is 1 Y
BAR_RE = re.compile(r"^(\d+)\s+(min|mins|hour|hours|day|days|week|weeks)$")
DUR_RE = re.compile(r"^(\d+)\s+([SDWMY])$")
UNIT_SECONDS = {"min": 60, "mins": 60, "hour": 3600, "hours": 3600, "day": 86400,
                "days": 86400, "week": 7 * 86400, "weeks": 7 * 86400}
DUR_DAYS = {"S": 1 / 86400, "D": 1, "W": 7, "M": 31, "Y": 366}
SHOWS = ("TRADES", "MIDPOINT", "BID_ASK", "BID", "ASK")
MAX_BARS = 250_000  # a year of 1-minute bars with the extended session
# When the first trade of each kind of instrument was (reqHeadTimeStamp).
HEAD = {"SPY": "19930129-14:30:00", "QQQ": "19990310-14:30:00", "IWM": "20000526-13:30:00"}


class HistoryError(ValueError):
    """A request IB would refuse: (code, text)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


@dataclass
class Bar:
    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


@functools.lru_cache(maxsize=4096)
def _day_walk(seed: int, symbol: str, day: date, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(log increments per minute, volume per minute) of one session day."""
    # crc32, not hash(): str hashes change from one process to the next.
    rng = np.random.default_rng(zlib.crc32(f"{seed}:{symbol}:{day.toordinal()}".encode()))
    steps = rng.normal(0.0, sigma / math.sqrt(252 * MINUTES), MINUTES)
    minute = np.arange(MINUTES)
    # Volume: a U over the regular session, thin outside it.
    rth = (minute >= RTH_FROM) & (minute < RTH_TO)
    base = np.where(rth, 40_000 + 60_000 * ((minute - 525) / 195.0) ** 2, 3_000)
    vol = np.round(base * rng.uniform(0.5, 1.5, MINUTES) / 100) * 100
    return steps, vol


@functools.lru_cache(maxsize=16)
def _sessions(today: date) -> tuple[date, ...]:
    out = []
    d = today - timedelta(days=DAYS_BACK)
    while d <= today:
        if d.weekday() < 5 and _is_session(d):
            out.append(d)
        d += timedelta(days=1)
    return tuple(out)


class Walk:
    """The minute path of one underlying, anchored at `spot` at `now`."""

    def __init__(self, seed: int, symbol: str, sigma: float, spot: float,
                 now: datetime) -> None:
        self.seed, self.symbol, self.sigma = seed, symbol, sigma
        self.now = now.astimezone(ET)
        self.days = _sessions(self.now.date())
        self.index = {d: i for i, d in enumerate(self.days)}
        totals = np.array([_day_walk(seed, symbol, d, sigma)[0].sum() for d in self.days])
        # Log level at the start (04:00) of each session day, 0 at the start of the first.
        self.day_start = np.concatenate([[0.0], np.cumsum(totals)])
        self.log_anchor = math.log(spot) - self._log_at(self.now)

    def _log_at(self, t: datetime) -> float:
        """Log level (before anchoring) at time t: flat outside sessions."""
        t = t.astimezone(ET)
        d = t.date()
        i = self.index.get(d)
        if i is None:  # not a session: the level at the end of the last session before
            prior = [k for k, day in enumerate(self.days) if day < d]
            return float(self.day_start[prior[-1] + 1]) if prior else 0.0
        m = (t.hour - 4) * 60 + t.minute
        steps = _day_walk(self.seed, self.symbol, d, self.sigma)[0]
        m = min(max(m, 0), MINUTES)
        return float(self.day_start[i] + steps[:m].sum())

    def price_at(self, t: datetime) -> float:
        return math.exp(self.log_anchor + self._log_at(t))

    def minutes(self, d: date) -> tuple[np.ndarray, np.ndarray]:
        """(prices at each minute's start and the day's end, volumes) of a session day."""
        i = self.index[d]
        steps, vol = _day_walk(self.seed, self.symbol, d, self.sigma)
        logs = self.day_start[i] + np.concatenate([[0.0], np.cumsum(steps)])
        return np.exp(self.log_anchor + logs), vol


def parse_end(end: str, now: datetime) -> datetime:
    """endDateTime as clients send it: '' (now), 'YYYYMMDD HH:MM:SS[ TZ]' or
    'YYYYMMDD-HH:MM:SS' (UTC)."""
    from zoneinfo import ZoneInfo

    end = end.strip()
    if not end:
        return now
    try:
        if "-" in end[:9]:
            return datetime.strptime(end, "%Y%m%d-%H:%M:%S").replace(tzinfo=ZoneInfo("UTC"))
        parts = end.split(" ")
        stamp = datetime.strptime(" ".join(parts[:2]), "%Y%m%d %H:%M:%S")
        tz = ZoneInfo(parts[2]) if len(parts) > 2 else ET
        return stamp.replace(tzinfo=tz)
    except (ValueError, KeyError) as exc:
        raise HistoryError(321, "Error validating request.-'bP' : cause - end date/time:"
                                f" {end!r} is not a valid date") from exc


def parse_bar(size: str) -> int:
    m = BAR_RE.match(size.strip())
    if not m:
        raise HistoryError(321, "Error validating request.-'bP' : cause - Historical data"
                                f" bar size setting {size!r} is invalid (ibsim: N min(s),"
                                " N hour(s), N day(s), 1 week).")
    seconds = int(m.group(1)) * UNIT_SECONDS[m.group(2)]
    if seconds not in (60, 120, 180, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 14400,
                       28800, 86400, 7 * 86400):
        raise HistoryError(321, "Error validating request.-'bP' : cause - Historical data"
                                f" bar size setting {size!r} is invalid.")
    return seconds


def parse_duration(duration: str) -> float:
    """The duration in days."""
    m = DUR_RE.match(duration.strip())
    if not m:
        raise HistoryError(321, "Error validating request.-'bP' : cause - Historical data"
                                f" duration format {duration!r} is invalid (N S|D|W|M|Y).")
    days = int(m.group(1)) * DUR_DAYS[m.group(2)]
    if days > 366:
        raise HistoryError(162, "Historical Market Data Service error message:Time length"
                                " exceed max.")
    return days


def _window(rth: bool) -> tuple[int, int]:
    return (RTH_FROM, RTH_TO) if rth else (0, MINUTES)


def underlying_bars(walk: Walk, start: datetime, end: datetime, bar_seconds: int,
                    rth: bool) -> list[Bar]:
    """TRADES bars of the underlying between start and end (ET minute grid)."""
    lo, hi = _window(rth)
    bars: list[Bar] = []
    spread_seed = 0.0004
    for d in walk.days:
        day_open = datetime.combine(d, time(4, 0), ET)
        if day_open + timedelta(minutes=hi) <= start or day_open > end:
            continue
        prices, vols = walk.minutes(d)
        first = max(lo, math.ceil((start - day_open).total_seconds() / 60))
        last = min(hi, int((end - day_open).total_seconds() // 60))
        if last <= first:
            continue
        span = bar_seconds // 60
        m = first
        while m < last:
            # Intraday bars end on the clock (an hour bar 09:30-10:00, then 10:00-11:00);
            # a day bar is the session.
            stop = last if bar_seconds >= 86400 else min((m // span + 1) * span, last)
            seg = prices[m:stop + 1]
            wig = 1 + spread_seed
            v = float(vols[m:stop].sum())
            bars.append(Bar(day_open + timedelta(minutes=m), float(seg[0]),
                            float(seg.max() * wig), float(seg.min() / wig), float(seg[-1]),
                            v, float(seg.mean()), max(1, int(v // 250))))
            m = stop
    if bar_seconds == 7 * 86400:
        bars = _weekly(bars)
    return bars


def _weekly(days: list[Bar]) -> list[Bar]:
    out: list[Bar] = []
    for b in days:
        monday = (b.start - timedelta(days=b.start.weekday())).date()
        if out and (out[-1].start - timedelta(days=out[-1].start.weekday())).date() == monday:
            w = out[-1]
            w.high, w.low, w.close = max(w.high, b.high), min(w.low, b.low), b.close
            w.wap = (w.wap * w.volume + b.wap * b.volume) / max(1.0, w.volume + b.volume)
            w.volume += b.volume
            w.count += b.count
        else:
            out.append(Bar(**b.__dict__))
    return out


def option_price(c: dict[str, Any], spot: float, at: datetime, base_vol: float) -> float:
    iv = skewed_iv(spot, c["strike"], base_vol)
    years = max((expiry_close(c["expiry"]) - at).total_seconds(), 60.0) / (365 * 86400)
    return black_scholes(spot, c["strike"], years, iv, c["right"])[0]


def _half_spread(price: float, stock: bool) -> float:
    return TICK / 2 if stock else max(TICK, min(0.5, price * 0.025))


def bars_for(c: dict[str, Any], walk: Walk, end: datetime, duration_days: float,
             bar_seconds: int, show: str, rth: bool, base_vol: float,
             digits: int = 2) -> list[Bar]:
    if show not in SHOWS:
        raise HistoryError(162, "Historical Market Data Service error message:No data of"
                                f" type {show} is available for this contract (ibsim serves"
                                f" {', '.join(SHOWS)}).")
    start = end - timedelta(days=duration_days)
    if c["sec_type"] == "OPT":
        rth = True  # options trade regular hours only
        listed = datetime.combine(datetime.strptime(c["expiry"], "%Y%m%d").date()
                                  - timedelta(days=365), time(9, 30), ET)
        start = max(start, listed)
        end = min(end, expiry_close(c["expiry"]))
    bars = underlying_bars(walk, start, end, bar_seconds, rth)
    if len(bars) > MAX_BARS:
        raise HistoryError(162, "Historical Market Data Service error message:Time length"
                                " exceed max.")
    stock = c["sec_type"] != "OPT"
    tick = 10.0 ** -digits
    out = []
    for b in bars:
        if not stock:
            ends = b.start + timedelta(seconds=min(bar_seconds, 86400))
            prices = [option_price(c, x, b.start if i == 0 else ends, base_vol)
                      for i, x in enumerate((b.open, b.close))]
            hi_lo = [option_price(c, x, b.start, base_vol) for x in (b.high, b.low)]
            o, cl = prices
            h, lo = max(hi_lo + prices), min(hi_lo + prices)
            v = float(max(1, int(b.volume // 20_000)))
            b = Bar(b.start, o, h, lo, cl, v, (o + h + lo + cl) / 4, max(1, int(v // 3)))
        half = _half_spread(b.close, stock) if digits == 2 else tick / 2
        if show == "TRADES":
            out.append(_rounded(b, digits))
        elif show == "MIDPOINT":
            out.append(_rounded(Bar(b.start, b.open, b.high, b.low, b.close, -1, -1, -1),
                                digits))
        elif show == "BID":
            out.append(_rounded(Bar(b.start, b.open - half, b.high - half, b.low - half,
                                    b.close - half, -1, -1, -1), digits))
        elif show == "ASK":
            out.append(_rounded(Bar(b.start, b.open + half, b.high + half, b.low + half,
                                    b.close + half, -1, -1, -1), digits))
        else:  # BID_ASK: open = average bid, high = max ask, low = min bid, close = avg ask
            out.append(_rounded(Bar(b.start, b.wap - half, b.high + half, b.low - half,
                                    b.wap + half, -1, -1, -1), digits))
    return out


def _rounded(b: Bar, digits: int = 2) -> Bar:
    def r(x: float) -> float:
        return max(0.0, round(x, digits))

    return Bar(b.start, r(b.open), r(b.high), r(b.low), r(b.close), b.volume,
               round(b.wap, 4) if b.wap >= 0 else -1, b.count)


def format_bar_date(start: datetime, bar_seconds: int, format_date: int) -> str:
    if format_date == 2:
        return str(int(start.timestamp()))
    if bar_seconds >= 86400:
        return start.astimezone(ET).strftime("%Y%m%d")
    return start.astimezone(ET).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"


def head_timestamp(c: dict[str, Any], format_date: int) -> str:
    if c["sec_type"] == "OPT":
        listed = datetime.combine(datetime.strptime(c["expiry"], "%Y%m%d").date()
                                  - timedelta(days=365), time(9, 30), ET)
        stamp = listed.astimezone(datetime.now().astimezone().tzinfo)
        text = listed.astimezone(ET).strftime("%Y%m%d-%H:%M:%S")
    else:
        text = HEAD.get(c["symbol"].upper(), "20050103-14:30:00")
        stamp = datetime.strptime(text, "%Y%m%d-%H:%M:%S").replace(tzinfo=ET)
    return str(int(stamp.timestamp())) if format_date == 2 else text


@dataclass
class DayStats:
    """Today's open/high/low, yesterday's close and the volume so far, for ticks
    14/6/7/9/8: taken from the walk once a day, then high/low follow the live price."""

    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float

    def observe(self, price: float) -> None:
        self.high = max(self.high, price)
        self.low = min(self.low, price)


def day_stats(walk: Walk, digits: int = 2) -> DayStats:
    now = walk.now
    today = now.date()
    prior = [d for d in walk.days if d < today]
    close = (walk.price_at(datetime.combine(prior[-1], time(16, 0), ET)) if prior
             else walk.price_at(now))
    if today in walk.index:
        prices, vols = walk.minutes(today)
        m = min(max((now.hour - 4) * 60 + now.minute, RTH_FROM), RTH_TO)
        seg = prices[RTH_FROM:max(m, RTH_FROM + 1) + 1]
        opened = now.time() >= time(9, 30)
        op = float(seg[0]) if opened else close
        hi = float(seg.max()) if opened else close
        lo = float(seg.min()) if opened else close
        vol = float(vols[RTH_FROM:m].sum()) if opened else 0.0
    else:
        op = hi = lo = close
        vol = 0.0
    return DayStats(today, round(op, digits), round(hi, digits), round(lo, digits),
                    round(close, digits), vol)
