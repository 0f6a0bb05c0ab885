"""Market data: reqMktData and its ticks (SPY and its options here, the other
instruments through ibsim/universe.py), the day's open/high/low/close/volume and open
interest a real feed adds, and IB's market-data line limit."""

from __future__ import annotations

import time
import zlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ibsim import codes, history, services, universe, wire
from ibsim.client import Subscription
from ibsim.contracts import contract_from, no_secdef
from ibsim.faults import FARM_CODES
from ibsim.market import TICK, ticks_down, ticks_up

if TYPE_CHECKING:
    from ibsim.client import Session
    from ibsim.parts import Parts


MAX_LINES = 100  # IB's default market-data lines per client
MD_MODES = ("live", "delayed", "none", "competing")  # POST /fault/market_data
DELAY = timedelta(minutes=15)  # IB's delayed data: fifteen minutes old


def md_mode(gw: Parts, c: dict[str, Any]) -> str:
    return gw.md_modes.get(c["sec_type"], "live")


def refuse_line(gw: Parts, s: Session, req_id: int, c: dict[str, Any]) -> str:
    """A market-data line under the account's permissions (/fault/market_data): "live",
    "delayed" (10167 sent: delayed ticks follow), "held" (10197 sent: a competing live
    session; the line stays, silent) or "" (354 sent: refused, no line)."""
    mode = md_mode(gw, c)
    if mode == "live":
        return "live"
    if mode == "competing":
        s.send(wire.error(req_id, 10197, codes.text(10197)))
        return "held"
    if mode == "delayed" and s.data_type in (3, 4):
        s.send(wire.error(req_id, 10167, codes.text(10167)))
        return "delayed"
    # "none", or delayed data the client did not ask for (reqMarketDataType 3).
    s.send(wire.error(req_id, 354, codes.text(354)))
    return ""


def set_md_mode(gw: Parts, sec_type: str, mode: str) -> None:
    """The account's permissions for `sec_type` change: the lines already open hear it
    (354 and dropped, 10167 and delayed, 10197 and silent), and "live" restores them
    (their current values at once, and the market farm's OK)."""
    was = md_mode(gw, {"sec_type": sec_type})
    if mode == "live":
        gw.md_modes.pop(sec_type, None)
    else:
        gw.md_modes[sec_type] = mode
    if was == mode:
        return
    for s in gw.sessions:
        if s.client_id is None:
            continue
        lines = [sub for sub in s.subs.values() if sub.contract["sec_type"] == sec_type]
        for sub in lines:
            if mode == "live":
                sub.delayed = sub.held = False
                sub.sent = {}
                send_quote(gw, s, sub)
                continue
            fate = refuse_line(gw, s, sub.req_id, sub.contract)
            sub.delayed, sub.held = fate == "delayed", fate == "held"
            if not fate:
                s.subs.pop(sub.req_id, None)
        if mode == "live":
            code, text = FARM_CODES["market"][1]
            s.send(wire.error(-1, code, text))


def put(gw: Parts, s: Session, sub: Subscription, key: int, data: bytes) -> None:
    """One tick of a line. IB sends a tick only when its value changed (--tick-mode
    change, the default): the same frame as the line's last of this tick type is not
    sent again. --tick-mode interval sends every tick each round (ibsim's old rhythm)."""
    if gw.tick_mode == "change" and sub.sent.get(key) == data:
        return
    sub.sent[key] = data
    s.send(data)


def stock_touch(spot: float) -> tuple[float, float, float]:
    """SPY's bid, ask and last at `spot` (Market.stock_quote at another price)."""
    bid = ticks_down(spot - 0.005)
    ask = max(bid + TICK, ticks_up(spot + 0.005))
    return round(bid, 2), round(ask, 2), round(spot, 2)


def send_quote(gw: Parts, s: Session, sub: Subscription) -> None:
    if sub.held:
        return  # a competing live session: the line stays open, nothing flows
    c = sub.contract
    if c["symbol"] != "SPY":
        other_quote(gw, s, sub)  # QQQ, IWM, stocks, VIX, forex
        return
    delayed = s.data_type in (3, 4) or sub.delayed
    # Delayed data (no live permission, /fault/market_data delayed): fifteen minutes old.
    spot = gw.spot_ago(DELAY) if sub.delayed else gw.market.spot
    bid_t, ask_t, last_t = (66, 67, 68) if delayed else (1, 2, 4)
    bsz_t, asz_t = (69, 70) if delayed else (0, 3)
    if c["sec_type"] == "STK":
        bid, ask, last = stock_touch(spot) if sub.delayed else gw.market.stock_quote()
        put(gw, s, sub, bid_t, wire.tick_price(sub.req_id, bid_t, bid, gw.market.bid_size))
        put(gw, s, sub, bsz_t, wire.tick_size(sub.req_id, bsz_t, gw.market.bid_size))
        put(gw, s, sub, ask_t, wire.tick_price(sub.req_id, ask_t, ask, gw.market.ask_size))
        put(gw, s, sub, asz_t, wire.tick_size(sub.req_id, asz_t, gw.market.ask_size))
        put(gw, s, sub, last_t, wire.tick_price(sub.req_id, last_t, last, 100))
        extra_ticks(gw, s, sub, first=not sub.quoted)
        sub.quoted = True
        sub.touch = (bid_t, ask_t, bid, ask)
        return
    q = universe.option_quote(gw.market, spot, c["expiry"], c["strike"], c["right"]) \
        if sub.delayed else gw.market.option_quote(c["expiry"], c["strike"], c["right"])
    und = round(spot, 2)
    put(gw, s, sub, bid_t, wire.tick_price(sub.req_id, bid_t, q.bid, 10))
    put(gw, s, sub, ask_t, wire.tick_price(sub.req_id, ask_t, q.ask, 10))
    comp = (80, 81, 83) if delayed else (10, 11, 13)
    for tt in comp:
        put(gw, s, sub, tt, wire.tick_option(sub.req_id, tt, q.iv, q.delta, q.model, q.gamma,
                                             q.vega, q.theta, und))
    extra_ticks(gw, s, sub, first=not sub.quoted)
    sub.quoted = True
    sub.touch = (bid_t, ask_t, q.bid, q.ask)


async def req_mkt_data(gw: Parts, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    spec = contract_from(f, 3)
    i = 15
    if spec["sec_type"] == "BAG":
        raise ValueError("combo market data is not supported")
    if f[i] == "1":  # delta-neutral contract
        i += 3
    snapshot = f[i + 2] == "1"
    if line_limit_reached(s, req_id, snapshot):
        return
    found = gw.broker.resolve(spec)
    if len(found) != 1:
        no_secdef(s, req_id)
        return
    fate = refuse_line(gw, s, req_id, found[0])
    if not fate:
        return
    sub = Subscription(req_id, found[0], snapshot, generic=f[i + 1],
                       delayed=fate == "delayed", held=fate == "held")
    if sub.held:
        if not snapshot:
            s.subs[req_id] = sub  # ticks start once the competing session ends
        return
    s.send(wire.frame(81, req_id, "0.01", "9c0001", 3))
    s.send(wire.frame(58, 1, req_id, 3 if s.data_type in (3, 4) or sub.delayed else 1))
    if gw.in_outage or "market" in gw.farms_broken or time.time() < gw.mute_until:
        if not snapshot:
            s.subs[req_id] = sub  # ticks start once the farm, link or feed is back
        return
    send_quote(gw, s, sub)
    if snapshot:
        s.send(wire.frame(57, 1, req_id))
    else:
        s.subs[req_id] = sub


async def cancel_mkt_data(gw: Parts, s: Session, f: list[str]) -> None:
    s.subs.pop(int(f[2]), None)


def line_limit_reached(s: Session, req_id: int, snapshot: bool) -> bool:
    """IB's 100 lines per client: one more streaming line gets error 101."""
    if snapshot or req_id in s.subs or len(s.subs) < MAX_LINES:
        return False
    s.send(wire.error(req_id, 101, codes.text(101)))
    return True


def open_interest(c: dict[str, Any], spot: float) -> int:
    """Seeded per contract, largest near the money and on round strikes."""
    h = zlib.crc32(str(c["con_id"]).encode()) % 1000
    dist = abs(float(c["strike"]) - spot) / max(spot, 1.0)
    base = 20_000 * max(0.02, 1 - dist * 8) * (3 if float(c["strike"]) % 5 == 0 else 1)
    return int(base * (0.5 + h / 1000))


def extra_ticks(gw: Parts, s: Session, sub: Subscription, first: bool) -> None:
    """The ticks a real feed adds: day stats for every line, open interest with
    generic tick 101. Static ones are sent once, on the first quote."""
    c = sub.contract
    under = services.walk_symbol(c)
    st = gw.extras.day_stats(under)
    delayed = s.data_type in (3, 4) or sub.delayed
    if c["sec_type"] != "OPT":
        st.observe(round(gw.extras.spot(under), services.price_digits(under)))
        # Volume grows a lot every 20 ticks: a feed's volume updates are coarser than quotes.
        hi, lo, vol = st.high, st.low, st.volume + 2000 * (gw.market.tick_no // 20)
        if first:
            s.send(wire.tick_price(sub.req_id, 76 if delayed else 14, st.open, 0))
            s.send(wire.tick_price(sub.req_id, 75 if delayed else 9, st.close, 0))
        last = sub.day_ticks or (None, None, None)
        if hi != last[0]:
            s.send(wire.tick_price(sub.req_id, 72 if delayed else 6, hi, 0))
        if lo != last[1]:
            s.send(wire.tick_price(sub.req_id, 73 if delayed else 7, lo, 0))
        if vol != last[2]:
            s.send(wire.tick_size(sub.req_id, 74 if delayed else 8, float(int(vol // 100))))
        sub.day_ticks = (hi, lo, vol)
        spot = gw.extras.spot(under)
        if first and "101" in sub.generic and c["sec_type"] == "STK":
            strikes = [float(k) for k in range(int(spot * 0.7) + 1, int(spot * 1.3) + 1)]
            calls = sum(open_interest({"con_id": int(k) * 2 + 1, "strike": k}, spot)
                        for k in strikes)
            puts = sum(open_interest({"con_id": int(k) * 2, "strike": k}, spot)
                       for k in strikes)
            s.send(wire.tick_size(sub.req_id, 27, float(calls)))
            s.send(wire.tick_size(sub.req_id, 28, float(puts)))
        return
    if not first:
        return
    # An option: yesterday's close and today's open/high/low from the model on the walk.
    now = gw.market.now()
    prior_close = history.option_price(c, st.close, now - timedelta(days=1), gw.market.volatility)
    op = history.option_price(c, st.open, now, gw.market.volatility)
    lo_, hi_ = sorted(history.option_price(c, x, now, gw.market.volatility)
                      for x in (st.high, st.low))
    s.send(wire.tick_price(sub.req_id, 75 if delayed else 9, round(prior_close, 2), 0))
    s.send(wire.tick_price(sub.req_id, 76 if delayed else 14, round(op, 2), 0))
    s.send(wire.tick_price(sub.req_id, 72 if delayed else 6, round(max(hi_, op), 2), 0))
    s.send(wire.tick_price(sub.req_id, 73 if delayed else 7, round(min(lo_, op), 2), 0))
    oi = open_interest(c, gw.extras.spot(under))
    s.send(wire.tick_size(sub.req_id, 74 if delayed else 8, float(max(1, oi // 15))))
    if "101" in sub.generic:
        s.send(wire.tick_size(sub.req_id, 27 if c["right"] == "C" else 28, float(oi)))


def other_quote(gw: Parts, s: Session, sub: Subscription) -> None:
    """Quotes of the instruments besides SPY: bid/ask/last (an index: last only),
    options with model greeks on their own underlying."""
    c = sub.contract
    delayed = s.data_type in (3, 4) or sub.delayed
    bid_t, ask_t, last_t = (66, 67, 68) if delayed else (1, 2, 4)
    q = gw.broker.quote_of(c)
    bid, ask, mark = q
    if c["sec_type"] == "OPT":
        inst = universe.underlying_of(c)
        und = universe.price(inst, gw.market) if inst else gw.market.spot
        oq = universe.option_quote(gw.market, und, c["expiry"], c["strike"], c["right"])
        put(gw, s, sub, bid_t, wire.tick_price(sub.req_id, bid_t, oq.bid, 10))
        put(gw, s, sub, ask_t, wire.tick_price(sub.req_id, ask_t, oq.ask, 10))
        for tt in (80, 81, 83) if delayed else (10, 11, 13):
            put(gw, s, sub, tt, wire.tick_option(sub.req_id, tt, oq.iv, oq.delta, oq.model,
                                                 oq.gamma, oq.vega, oq.theta, round(und, 2)))
    elif c["sec_type"] == "IND":
        put(gw, s, sub, last_t, wire.tick_price(sub.req_id, last_t, mark, 0))
    else:
        size = 1_000_000 if c["sec_type"] == "CASH" else 100
        put(gw, s, sub, bid_t, wire.tick_price(sub.req_id, bid_t, bid, size))
        put(gw, s, sub, ask_t, wire.tick_price(sub.req_id, ask_t, ask, size))
        if c["sec_type"] == "STK":
            put(gw, s, sub, last_t, wire.tick_price(sub.req_id, last_t, mark, 100))
    extra_ticks(gw, s, sub, first=not sub.quoted)
    sub.quoted = True
