"""What outside IB clients ask of a gateway beyond the bot's own needs: historical
bars and head timestamps, completed orders, and an error with the request's own id
for anything ibsim does not serve. The per-gateway state they and the market-data
ticks share (margin account, seeded walks, day stats) is ibsim/extras.py's `Extras`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ibsim import codes, history, reqids, wire
from ibsim.contracts import contract_from, no_secdef
from ibsim.extras import price_digits
from ibsim.market import ET

if TYPE_CHECKING:
    from ibsim.client import Session
    from ibsim.parts import Parts


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


def _requested(gw: Parts, s: Session, f: list[str]) -> tuple[int, dict[str, Any] | None]:
    """A history request's id and its one contract (fields 2-13); None, after error 200,
    when the contract is not exactly one ibsim knows."""
    req_id = int(f[1])
    found = gw.broker.resolve(contract_from(f, 2))
    if len(found) != 1:
        no_secdef(s, req_id)
        return req_id, None
    return req_id, found[0]


async def req_historical_data(gw: Parts, s: Session, f: list[str]) -> None:
    # 20 | reqId | C12 | includeExpired | end | barSize | duration | useRTH | whatToShow |
    # formatDate | [BAG legs] | keepUpToDate | chartOptions
    req_id, c = _requested(gw, s, f)
    if c is None:
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
    try:
        now = gw.market.now()
        end = min(history.parse_end(f[15], now), now)
        bar_seconds = history.parse_bar(f[16])
        days = history.parse_duration(f[17])
        rth = f[18] == "1"
        show = f[19].upper()
        fmt_date = int(f[20] or 1)
        under = walk_symbol(c)
        bars = history.bars_for(c, gw.extras.walk(under), end, days, bar_seconds, show, rth,
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


def walk_symbol(c: dict[str, Any]) -> str:
    """The walk a contract's history follows: its underlying's (a forex pair by pair)."""
    return c["symbol"] + c["currency"] if c["sec_type"] == "CASH" else c["symbol"]


async def req_head_timestamp(gw: Parts, s: Session, f: list[str]) -> None:
    # 87 | reqId | C12 | includeExpired | useRTH | whatToShow | formatDate
    req_id, c = _requested(gw, s, f)
    if c is None:
        return
    fmt_date = int(f[17] or 1) if len(f) > 17 else 1
    s.send(wire.frame(88, req_id, history.head_timestamp(c, fmt_date)))


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


async def req_completed_orders(gw: Parts, s: Session, f: list[str]) -> None:
    """The day's filled and cancelled orders (IB's "current day": since the last reset)."""
    if gw.read_only:  # refused like reqOpenOrders (ib_insync issue #224)
        s.send(wire.error(-1, 321, codes.read_only("bY")))
        return
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
