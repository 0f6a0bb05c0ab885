"""What outside IB clients ask of a gateway beyond the bot's own needs: the full
margin-account values, whatIf orders, historical bars and head timestamps, completed
orders, the ticks a real feed has (open/high/low/close/volume, open interest), the
market-data line limit, and an error with the request's own id for anything ibsim
does not serve. Kept apart from server.py: the server calls in at a few points.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ibsim import account, combos, history, reqids, universe, wire
from ibsim.market import ET, SPY_CON_ID, expirations

if TYPE_CHECKING:
    from ibsim.server import Gateway, Session, Subscription

MAX_LINES = 100  # IB's default market-data lines per client
NO_SECDEF = "No security definition has been found for the request"


class Extras:
    """Per-gateway state of these services."""

    def __init__(self, gw: Gateway, seed: int = 0) -> None:
        self.gw = gw
        self.seed = seed
        self.account = account.AccountModel(gw.broker)
        self.stats: dict[str, history.DayStats] = {}
        universe.start_spot(gw.market)  # other instruments move relative to SPY from here

    def spot(self, symbol: str) -> float:
        inst = universe.INSTRUMENTS.get(symbol)
        return universe.price(inst, self.gw.market) if inst else self.gw.market.spot

    def walk(self, symbol: str = "SPY") -> history.Walk:
        m = self.gw.market
        return history.Walk(self.seed, symbol, m.volatility, self.spot(symbol), m.now())

    def day_stats(self, symbol: str = "SPY") -> history.DayStats:
        today = self.gw.market.now().astimezone(ET).date()
        st = self.stats.get(symbol)
        if st is None or st.day != today:
            st = history.day_stats(self.walk(symbol), price_digits(symbol))
            self.stats[symbol] = st
        return st


def extras(gw: Gateway) -> Extras:
    return gw.extras


# ---- account values --------------------------------------------------------------------


def account_values(gw: Gateway) -> dict[str, float | str]:
    return extras(gw).account.figures().values


def send_account_updates(gw: Gateway, s: Session) -> None:
    """updateAccountValue (6) for every key, as reqAccountUpdates gets them."""
    fig = extras(gw).account.figures()
    for key, value, ccy in account.update_rows(fig):
        s.send(wire.frame(6, 2, key, value, ccy, gw.broker.account))


async def req_account_summary(gw: Gateway, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    tags = f[4] if len(f) > 4 else "All"
    fig = extras(gw).account.figures()
    for tag, value, ccy in account.summary_rows(fig, tags):
        s.send(wire.frame(63, 1, req_id, gw.broker.account, tag, value, ccy))
    s.send(wire.frame(64, 1, req_id))


async def req_account_multi(gw: Gateway, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    fig = extras(gw).account.figures()
    for key, value, ccy in account.update_rows(fig):
        s.send(wire.frame(73, 1, req_id, gw.broker.account, "", key, value, ccy))
    s.send(wire.frame(74, 1, req_id))


# ---- requests ibsim cannot serve --------------------------------------------------------


def unserved(s: Session, f: list[str], why: str | None = None) -> None:
    """Answer a request ibsim does not serve or cannot read: 320 with its own id (a
    non-warning code in both client libraries, so the request ends at once; ib_async
    treats 321 as a warning and would wait out its timeout), nothing for a cancel, and
    -1 only for a message that carries no id."""
    msg = int(f[0]) if f and f[0].lstrip("-").isdigit() else -1
    if msg in reqids.CANCELS:
        return
    req_id = reqids.request_id(f)
    if req_id is None:
        s.send(wire.error(-1, 320, why or f"Unknown message id {msg}"))
        return
    s.send(wire.error(req_id, 320, why or reqids.unserved_text(msg)))


# ---- historical data -------------------------------------------------------------------


def _contract(gw: Gateway, f: list[str], i: int) -> dict[str, Any] | None:
    spec = gw._contract_from(f, i)
    found = gw.broker.resolve(spec)
    return found[0] if len(found) == 1 else None


async def req_historical_data(gw: Gateway, s: Session, f: list[str]) -> None:
    # 20 | reqId | C12 | includeExpired | end | barSize | duration | useRTH | whatToShow |
    # formatDate | [BAG legs] | keepUpToDate | chartOptions
    req_id = int(f[1])
    c = _contract(gw, f, 2)
    if c is None:
        s.send(wire.error(req_id, 200, NO_SECDEF))
        return
    if c["sec_type"] == "BAG":
        s.send(wire.error(req_id, 162, "Historical Market Data Service error message:"
                                       "ibsim serves no history for combos"))
        return
    keep = f[-2] == "1" if len(f) >= 23 else False
    if keep:
        s.send(wire.error(req_id, 162, "Historical Market Data Service error message:"
                                       "ibsim does not serve keepUpToDate=True"))
        return
    gwx = extras(gw)
    try:
        now = gw.market.now()
        end = min(history.parse_end(f[15], now), now)
        bar_seconds = history.parse_bar(f[16])
        days = history.parse_duration(f[17])
        rth = f[18] == "1"
        show = f[19].upper()
        fmt_date = int(f[20] or 1)
        under = _walk_symbol(c)
        bars = history.bars_for(c, gwx.walk(under), end, days, bar_seconds, show, rth,
                                gw.market.volatility, price_digits(under))
    except history.HistoryError as exc:
        s.send(wire.error(req_id, exc.code, exc.text))
        return
    fields: list[Any] = [17, req_id,
                         (end - timedelta(days=days)).astimezone(ET).strftime("%Y%m%d %H:%M:%S"),
                         end.astimezone(ET).strftime("%Y%m%d %H:%M:%S"), len(bars)]
    for b in bars:
        fields += [history.format_bar_date(b.start, bar_seconds, fmt_date), b.open, b.high,
                   b.low, b.close, b.volume, b.wap, b.count]
    s.send(wire.frame(*fields))


def price_digits(symbol: str) -> int:
    """Decimals a price of this walk is quoted in (forex: 5, yen pairs 3)."""
    inst = universe.INSTRUMENTS.get(symbol)
    if inst is None or inst.sec_type != "CASH":
        return 2
    return 3 if inst.currency == "JPY" else 5


def _walk_symbol(c: dict[str, Any]) -> str:
    """The walk a contract's history follows: its underlying's (a forex pair by pair)."""
    return c["symbol"] + c["currency"] if c["sec_type"] == "CASH" else c["symbol"]


def under_con_id(c: dict[str, Any]) -> int:
    if c["sec_type"] != "OPT":
        return 0
    inst = universe.underlying_of(c)
    return inst.con_id if inst else SPY_CON_ID


async def req_sec_def_opt_params(gw: Gateway, s: Session, f: list[str]) -> None:
    """QQQ's and IWM's chains here; SPY's (and refusals) stay with the server."""
    inst = universe.WITH_OPTIONS.get(f[2].upper()) if len(f) > 2 else None
    if inst is None:
        await gw.req_sec_def_opt_params(s, f)
        return
    req_id = int(f[1])
    exps = expirations(gw.market.now())
    strikes = universe.strikes(inst, gw.market)
    for exch in ("SMART", "CBOE"):
        s.send(wire.frame(75, req_id, exch, inst.con_id, inst.symbol, 100, len(exps), *exps,
                          len(strikes), *strikes))
    s.send(wire.frame(76, req_id))


async def req_head_timestamp(gw: Gateway, s: Session, f: list[str]) -> None:
    # 87 | reqId | C12 | includeExpired | useRTH | whatToShow | formatDate
    req_id = int(f[1])
    c = _contract(gw, f, 2)
    if c is None:
        s.send(wire.error(req_id, 200, NO_SECDEF))
        return
    fmt_date = int(f[17] or 1) if len(f) > 17 else 1
    s.send(wire.frame(88, req_id, history.head_timestamp(c, fmt_date)))


async def noop(gw: Gateway, s: Session, f: list[str]) -> None:
    return None


# ---- completed orders ------------------------------------------------------------------


def _completed_order(o: dict[str, Any], done: datetime) -> bytes:
    """completedOrder (101): the 97 fields of shared/tws-protocol.md 7.2."""
    c = o["contract"]
    f: list[Any] = [""] * 97
    f[0] = 101
    f[1:12] = wire.contract12(c, primary=False)
    f[12], f[13], f[14] = o["action"], wire.fmt(float(o["qty"])), o["order_type"]
    f[15] = wire.fmt(o["lmt_price"]) if o.get("lmt_price") is not None else ""
    f[16] = wire.fmt(o["aux_price"]) if o.get("aux_price") is not None else ""
    f[17], f[18], f[19] = o.get("tif") or "DAY", o.get("oca_group", ""), o["account"]
    f[20], f[21], f[22], f[23] = "O", 0, o.get("order_ref", ""), o["perm_id"]
    f[24] = f[25] = 0
    f[26] = "0"
    f[39] = "-1"
    f[45], f[46], f[47] = 0, 0, 0
    f[49] = o.get("oca_type", 0)
    f[50] = 0
    f[60] = f[61] = f[62] = 0  # combo legs, order legs, smart params
    f[69], f[70] = 0, 0  # notHeld, delta-neutral contract
    f[72], f[73] = 0, o["status"]
    f[74] = f[75] = 0
    f[76] = 0  # conditions
    f[83] = wire.fmt(float(o.get("filled", 0.0)))
    f[89] = 0
    f[90] = done.astimezone(ET).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"
    f[91] = o["status"] if o["status"] != "Cancelled" else "Cancelled by Trader"
    return wire.frame(*f)


async def req_completed_orders(gw: Gateway, s: Session, f: list[str]) -> None:
    """The day's filled and cancelled orders (IB's "current day": since the last reset)."""
    b = gw.broker
    now = gw.market.now().astimezone(ET)
    last_exec: dict[int, str] = {e["perm_id"]: e["time_str"] for e in b.executions}
    for o in list(b.orders.values()):
        if o["status"] not in ("Filled", "Cancelled"):
            continue
        if o["status"] == "Filled" and o["perm_id"] in last_exec:
            stamp = last_exec[o["perm_id"]].removesuffix(" US/Eastern")
            done = datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=ET)
            if done.date() != now.date():
                continue
        else:
            # Cancels carry no simulated time: the last 24 hours of wall time.
            created = float(o.get("created") or 0)
            if datetime.now().timestamp() - created > 86400:
                continue
            done = now
        s.send(_completed_order(o, done))
    s.send(wire.frame(102))


# ---- whatIf and order checks -----------------------------------------------------------


def order_layout(f: list[str]) -> dict[str, Any]:
    """Walk placeOrder's conditional blocks (shared/tws-protocol.md 6.1) to the fields
    that move: the combo legs, ocaType and whatIf."""
    i = 35
    legs: list[dict[str, Any]] = []
    if f[4] == "BAG":
        n = int(f[i] or 0)
        i += 1
        for _ in range(n):
            legs.append({"con_id": int(f[i] or 0), "ratio": int(f[i + 1] or 1),
                         "action": f[i + 2], "exchange": f[i + 3]})
            i += 8
        m = int(f[i] or 0)
        i += 1 + m
        p = int(f[i] or 0)
        i += 1 + 2 * p
    b = i  # the deprecated empty field
    oca_type = int(f[b + 12] or 0)
    extra = 8 if f[b + 30] else 0
    inc = f[b + 38 + extra]
    if inc and 0 < float(inc) < 1e300:
        extra += 7
    if f[b + 42 + extra]:
        extra += 1
    if f[b + 47 + extra] == "1":
        extra += 3
    algo = f[b + 48 + extra]
    if algo:
        extra += 1 + 2 * int(f[b + 49 + extra] or 0)
    what_if = f[b + 50 + extra] == "1"
    return {"legs": legs, "oca_type": oca_type, "what_if": what_if}


def check_order(gw: Gateway, s: Session, f: list[str]) -> bool:
    """Before the server places an order: answer a whatIf, refuse what ibsim cannot
    trade, each tied to the order's id. True when the order was handled here."""
    order_id = int(f[1])
    try:
        layout = order_layout(f)
    except (IndexError, ValueError):
        s.send(wire.error(order_id, 320, "Error validating request.-'bO' : cause - the order"
                                         " fields could not be read"))
        return True
    spec = gw._contract_from(f, 2)
    if spec["sec_type"] == "BAG":
        place_combo(gw, s, f, layout)
        return True
    if not spec["con_id"] and not spec["exchange"]:
        s.send(wire.error(order_id, 321, "Error validating request.-'bO' : cause - Missing"
                                         " order exchange"))
        return True
    if not spec["con_id"] and not spec["currency"] and spec["sec_type"] != "CASH":
        s.send(wire.error(order_id, 321, "Error validating request.-'bO' : cause - Please"
                                         " enter a currency"))
        return True
    found = gw.broker.resolve(spec)
    kind = found[0]["sec_type"] if len(found) == 1 else ""
    if kind == "IND":
        s.send(wire.error(order_id, 201, "Order rejected - reason: an index is not tradable"
                                         " (VIX: quotes only)"))
        return True
    if kind == "CASH" and not layout["what_if"]:
        s.send(wire.error(order_id, 201, "Order rejected - reason: ibsim serves forex pairs"
                                         " for quotes and whatIf only"))
        return True
    if not layout["what_if"]:
        return _short_of_margin(gw, s, f, found)
    if len(found) != 1:
        s.send(wire.error(order_id, 200, NO_SECDEF))
        return True
    c = found[0]
    action, qty = f[16], float(f[17] or 0)
    if action not in ("BUY", "SELL") or qty <= 0:
        s.send(wire.error(order_id, 321, "Error validating request.-'bO' : cause - an order"
                                         " needs BUY or SELL and a positive quantity"))
        return True
    lmt = f[19]
    price = float(lmt) if f[18] == "LMT" and lmt and float(lmt) < 1e300 else None
    commission = account.commission(c, qty, gw.broker.quote_of(c)[2])
    m = extras(gw).account.what_if(c, action, qty, price, commission)
    order = {"order_id": order_id, "client_id": s.client_id, "contract": c, "action": action,
             "qty": qty, "order_type": f[18], "lmt_price": price, "aux_price": None,
             "tif": f[21], "oca_group": f[22], "account": f[23] or gw.broker.account,
             "order_ref": f[26]}
    _whatif_reply(gw, s, order, m, commission)
    return True


def _short_of_margin(gw: Gateway, s: Session, f: list[str], found: list[dict[str, Any]]
                     ) -> bool:
    """IB's pre-trade margin check: a new order whose initial margin after it would pass
    the equity with loan value is rejected (201, IB's text). True when rejected."""
    order_id, action, qty = int(f[1]), f[16], float(f[17] or 0)
    if len(found) != 1 or action not in ("BUY", "SELL") or qty <= 0 or (
            gw.broker.find(s.client_id or 0, order_id) is not None):  # a modify
        return False
    c = found[0]
    lmt = f[19]
    price = float(lmt) if f[18] == "LMT" and lmt and float(lmt) < 1e300 else None
    commission = account.commission(c, qty, gw.broker.quote_of(c)[2])
    m = extras(gw).account.what_if(c, action, qty, price, commission)
    if m["init_change"] <= 0 or m["init_after"] <= m["ewl_after"]:
        return False
    gw.log.info("order {}/{} rejected: initial margin {:.2f} > equity with loan {:.2f}",
                s.client_id, order_id, m["init_after"], m["ewl_after"])
    s.send(wire.error(order_id, 201, "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN"
                      " ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH LOAN VALUE"
                      f" [{m['ewl_after']:.2f} USD] MUST EXCEED THE INITIAL MARGIN"
                      f" [{m['init_after']:.2f} USD]"))
    return True


def _whatif_reply(gw: Gateway, s: Session, order: dict[str, Any], m: dict[str, float],
                  commission: float) -> None:
    state: dict[int, Any] = {85: 1}
    for k, name in enumerate(("init_before", "maint_before", "ewl_before", "init_change",
                              "maint_change", "ewl_change", "init_after", "maint_after",
                              "ewl_after")):
        state[87 + k] = f"{m[name]:.2f}"
    state.update({96: wire.fmt(commission), 97: wire.fmt(commission),
                  98: wire.fmt(commission), 99: "USD", 100: ""})
    s.send(wire.open_order(dict(order, perm_id=0, status="PreSubmitted"), extra=state))


def place_combo(gw: Gateway, s: Session, f: list[str], layout: dict[str, Any]) -> None:
    """A BAG order: its legs checked, then placed (or, with whatIf, margined)."""
    order_id = int(f[1])

    def reject(why: str) -> None:
        s.send(wire.error(order_id, 201, f"Order rejected - reason: {why}"))

    legs, why = combos.resolve_legs(gw.broker, layout["legs"])
    if why:
        reject(why)
        return
    action, qty, kind = f[16], float(f[17] or 0), f[18]
    lmt = f[19]
    limit = float(lmt) if lmt and abs(float(lmt)) < 1e300 else None
    if action not in ("BUY", "SELL") or qty <= 0:
        reject("a combo needs BUY or SELL and a positive quantity")
        return
    if kind not in ("MKT", "LMT") or (kind == "LMT" and limit is None):
        reject(f"combo orders are MKT or LMT with a limit price (got {kind})")
        return
    order = {
        "order_id": order_id, "client_id": s.client_id,
        "contract": combos.bag_contract(legs[0]["contract"]["symbol"]), "legs": legs,
        "action": action, "qty": qty, "order_type": kind, "lmt_price": limit,
        "aux_price": None, "tif": f[21], "oca_group": f[22],
        "account": f[23] or gw.broker.account, "order_ref": f[26], "transmit": f[27] != "0",
        "parent_id": int(f[28] or 0), "oca_type": layout["oca_type"],
    }
    if layout["what_if"]:
        trades = []
        commission = 0.0
        flip = action == "SELL"
        for leg in legs:
            side = leg["action"] if not flip else ("SELL" if leg["action"] == "BUY" else "BUY")
            bid, ask, _mark = gw.broker.quote_of(leg["contract"])
            n = qty * leg["ratio"]
            trades.append((leg["contract"], n if side == "BUY" else -n,
                           ask if side == "BUY" else bid))
            commission += account.commission(leg["contract"], n, 0.0)
        m = extras(gw).account.what_if_trades(trades, commission)
        _whatif_reply(gw, s, order, m, commission)
        return
    if gw.slow_orders > 0:
        gw._spawn(gw._place_later(order, gw.slow_orders))
        return
    gw._place(order)


# ---- market data -----------------------------------------------------------------------


def line_limit_reached(s: Session, req_id: int, snapshot: bool) -> bool:
    """IB's 100 lines per client: one more streaming line gets error 101."""
    if snapshot or req_id in s.subs or len(s.subs) < MAX_LINES:
        return False
    s.send(wire.error(req_id, 101, "Max number of tickers has been reached."))
    return True


def open_interest(c: dict[str, Any], spot: float) -> int:
    """Seeded per contract, largest near the money and on round strikes."""
    h = zlib.crc32(str(c["con_id"]).encode()) % 1000
    dist = abs(float(c["strike"]) - spot) / max(spot, 1.0)
    base = 20_000 * max(0.02, 1 - dist * 8) * (3 if float(c["strike"]) % 5 == 0 else 1)
    return int(base * (0.5 + h / 1000))


def extra_ticks(gw: Gateway, s: Session, sub: Subscription, first: bool) -> None:
    """The ticks a real feed adds: day stats for every line, open interest with
    generic tick 101. Static ones are sent once, on the first quote."""
    c = sub.contract
    under = _walk_symbol(c)
    st = extras(gw).day_stats(under)
    delayed = s.data_type in (3, 4)
    if c["sec_type"] != "OPT":
        st.observe(round(extras(gw).spot(under), price_digits(under)))
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
        spot = extras(gw).spot(under)
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
    oi = open_interest(c, extras(gw).spot(under))
    s.send(wire.tick_size(sub.req_id, 74 if delayed else 8, float(max(1, oi // 15))))
    if "101" in sub.generic:
        s.send(wire.tick_size(sub.req_id, 27 if c["right"] == "C" else 28, float(oi)))


def other_quote(gw: Gateway, s: Session, sub: Subscription) -> None:
    """Quotes of the instruments besides SPY: bid/ask/last (an index: last only),
    options with model greeks on their own underlying."""
    c = sub.contract
    delayed = s.data_type in (3, 4)
    bid_t, ask_t, last_t = (66, 67, 68) if delayed else (1, 2, 4)
    q = gw.broker.quote_of(c)
    bid, ask, mark = q
    if c["sec_type"] == "OPT":
        inst = universe.underlying_of(c)
        und = universe.price(inst, gw.market) if inst else gw.market.spot
        oq = universe.option_quote(gw.market, und, c["expiry"], c["strike"], c["right"])
        s.send(wire.tick_price(sub.req_id, bid_t, oq.bid, 10))
        s.send(wire.tick_price(sub.req_id, ask_t, oq.ask, 10))
        for tt in (80, 81, 83) if delayed else (10, 11, 13):
            s.send(wire.tick_option(sub.req_id, tt, oq.iv, oq.delta, oq.model, oq.gamma,
                                    oq.vega, oq.theta, round(und, 2)))
    elif c["sec_type"] == "IND":
        s.send(wire.tick_price(sub.req_id, last_t, mark, 0))
    else:
        size = 1_000_000 if c["sec_type"] == "CASH" else 100
        s.send(wire.tick_price(sub.req_id, bid_t, bid, size))
        s.send(wire.tick_price(sub.req_id, ask_t, ask, size))
        if c["sec_type"] == "STK":
            s.send(wire.tick_price(sub.req_id, last_t, mark, 100))
    extra_ticks(gw, s, sub, first=not sub.quoted)
    sub.quoted = True


HANDLERS = {
    20: req_historical_data, 87: req_head_timestamp, 90: noop, 99: req_completed_orders,
    62: req_account_summary, 76: req_account_multi, 78: req_sec_def_opt_params,
}
