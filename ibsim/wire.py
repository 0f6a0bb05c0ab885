"""TWS API framing and field encoding (server version 176).

Every message is a 4-byte big-endian length and NUL-terminated text fields. The
client's first send is the raw `API\\0` then a length-prefixed version range.
Builders here produce the exact field counts ib_insync 0.9.86 parses (see
shared/tws-protocol.md): a wrong count makes the client drop the message.
"""

from __future__ import annotations

import struct
from datetime import date
from typing import Any

from ibsim import calendar

SERVER_VERSION = 176
MAX_FRAME = 1 << 20  # a larger length prefix is garbage: close that client
UNSET_DOUBLE = "1.7976931348623157E308"


class FrameError(ValueError):
    """The client sent bytes that are not a TWS frame."""


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(round(value, 8))
    return str(value)


def frame(*fields: Any) -> bytes:
    payload = b"".join(fmt(f).encode() + b"\0" for f in fields)
    return struct.pack(">I", len(payload)) + payload


class FrameReader:
    """Splits a byte stream into frames of fields; raises FrameError on garbage."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.handshaken = False

    def feed(self, data: bytes) -> list[list[str]]:
        self.buf += data
        out: list[list[str]] = []
        if not self.handshaken:
            if len(self.buf) < 4:
                return out
            if bytes(self.buf[:4]) != b"API\0":
                raise FrameError("expected the API handshake")
            del self.buf[:4]
            self.handshaken = True
        while len(self.buf) >= 4:
            (size,) = struct.unpack(">I", self.buf[:4])
            if size == 0 or size > MAX_FRAME:
                raise FrameError(f"bad frame length {size}")
            if len(self.buf) < 4 + size:
                break
            payload = bytes(self.buf[4 : 4 + size])
            del self.buf[: 4 + size]
            text = payload.decode("utf-8", errors="backslashreplace")
            fields = text.split("\0")
            if fields and fields[-1] == "":
                fields.pop()
            out.append(fields)
        return out


# ---- server -> client messages -------------------------------------------------------


def error(req_id: int, code: int, message: str) -> bytes:
    # At >= 166 the trailing advancedOrderRejectJson must be present (may be empty).
    return frame(4, 2, req_id, code, message, "")


def contract12(c: dict[str, Any], primary: bool = True) -> list[Any]:
    """conId symbol secType expiry strike right multiplier exchange [primaryExch]
    currency localSymbol tradingClass."""
    fields = [c["con_id"], c["symbol"], c["sec_type"], c.get("expiry", ""),
              c.get("strike", 0.0), c.get("right", ""), c.get("multiplier", ""),
              c.get("exchange", "SMART")]
    if primary:
        fields.append(c.get("primary_exchange", ""))
    fields += [c.get("currency", "USD"), c.get("local_symbol", ""), c.get("trading_class", "")]
    return fields


_OPEN_ORDER_TEMPLATE = (
    "5|10|756733|SPY|STK||0|||SMART|USD|SPY|SPY|BUY|10|MKT|0|0|DAY||DU1234567|O|0|probe-mkt|1|"
    "900000001|0|0|0||||||||||||0||-1|0|||||||0|0|0||0|0|0||0|0|||||0|||||||0|0|0|||||0|||0|0||"
    "0|0|Submitted|||||||||||||||0|0|0||||||||0|||||0|0|0|0|||0|||||"
).split("|")  # the transcript's layout, kept readable


def open_order(o: dict[str, Any], extra: dict[int, Any] | None = None) -> bytes:
    """openOrder (5): the transcript's 128-field layout with this order's values;
    `extra` sets fields by index (a whatIf's flag and OrderState margins)."""
    f: list[Any] = list(_OPEN_ORDER_TEMPLATE)
    c = o["contract"]
    f[1] = o["order_id"]
    f[2:13] = contract12(c, primary=False)
    f[13] = o["action"]
    f[14] = fmt(o["qty"])
    f[15] = o["order_type"]
    f[16] = fmt(o.get("lmt_price")) if o.get("lmt_price") is not None else "0"
    f[17] = fmt(o.get("aux_price")) if o.get("aux_price") is not None else "0"
    f[18] = o.get("tif") or "DAY"
    f[19] = o.get("oca_group", "")
    f[20] = o["account"]
    f[23] = o.get("order_ref", "")
    f[24] = o["client_id"]
    f[25] = o["perm_id"]
    f[54] = o.get("oca_type", 0)
    f[58] = o.get("parent_id", 0)
    f[86] = o["status"]
    for k, v in (extra or {}).items():
        f[k] = v
    return frame(*f[:-1], "")


def order_status(o: dict[str, Any]) -> bytes:
    remaining = float(o["qty"]) - float(o.get("filled", 0.0))
    return frame(3, o["order_id"], o["status"], fmt(float(o.get("filled", 0.0))),
                 fmt(remaining), fmt(float(o.get("avg_price", 0.0))), o["perm_id"],
                 o.get("parent_id", 0), fmt(float(o.get("last_price", 0.0))), o["client_id"],
                 "", "0")


def exec_details(req_id: int, e: dict[str, Any]) -> bytes:
    c = e["contract"]
    return frame(11, req_id, e["order_id"], *contract12(c, primary=False),
                 e["exec_id"], e["time_str"], e["account"], c.get("exchange", "SMART"),
                 e["side"], fmt(float(e["qty"])), fmt(e["price"]), e["perm_id"], e["client_id"],
                 0, fmt(float(e["cum_qty"])), fmt(e["avg_price"]), e.get("order_ref", ""), "",
                 "", "", 1)


def commission_report(e: dict[str, Any]) -> bytes:
    return frame(59, 1, e["exec_id"], fmt(e["commission"]), "USD", UNSET_DOUBLE, UNSET_DOUBLE,
                 "")


def position(account: str, c: dict[str, Any], qty: float, avg_cost: float) -> bytes:
    return frame(61, 3, account, *contract12(c, primary=False)[:7], c.get("exchange", "SMART"),
                 c.get("currency", "USD"), c.get("local_symbol", ""),
                 c.get("trading_class", ""), fmt(float(qty)), fmt(avg_cost))


def portfolio(account: str, c: dict[str, Any], qty: float, price: float, avg_cost: float,
              unrealized: float, realized: float) -> bytes:
    mult = float(c.get("multiplier") or 1)
    return frame(7, 8, c["con_id"], c["symbol"], c["sec_type"], c.get("expiry", ""),
                 c.get("strike", 0.0), c.get("right", ""), c.get("multiplier", ""),
                 c.get("primary_exchange", "") or c.get("exchange", ""), c.get("currency", "USD"),
                 c.get("local_symbol", ""), c.get("trading_class", ""), fmt(float(qty)),
                 fmt(price), fmt(round(qty * price * mult, 2)), fmt(avg_cost),
                 fmt(round(unrealized, 2)), fmt(round(realized, 2)), account)


def tick_price(req_id: int, tick_type: int, price: float, size: float = 0) -> bytes:
    return frame(1, 6, req_id, tick_type, fmt(price), fmt(float(size)), 0)


def tick_size(req_id: int, tick_type: int, size: float) -> bytes:
    return frame(2, 6, req_id, tick_type, fmt(float(size)))


def tick_option(req_id: int, tick_type: int, iv: float, delta: float, price: float,
                gamma: float, vega: float, theta: float, und: float) -> bytes:
    # No version field; exactly 12 fields.
    return frame(21, req_id, tick_type, 0, fmt(iv), fmt(delta), fmt(price), 0, fmt(gamma),
                 fmt(vega), fmt(theta), fmt(und))


def _day(expiry: str) -> date:
    return date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8]))


def contract_details(req_id: int, c: dict[str, Any], under_con_id: int = 0,
                     trading_hours: str = "", liquid_hours: str = "") -> bytes:
    is_opt = c["sec_type"] == "OPT"
    expiry = c.get("expiry", "")
    return frame(
        10, req_id, c["symbol"], c["sec_type"],
        f"{expiry} {calendar.close_time(_day(expiry)):%H:%M} US/Eastern" if is_opt else "",
        fmt(float(c.get("strike", 0.0))),
        c.get("right", ""), c.get("exchange", "SMART"), c.get("currency", "USD"),
        c.get("local_symbol", ""), c["symbol"], c.get("trading_class", ""), c["con_id"], "0.01",
        c.get("multiplier", ""), "ACTIVETIM,AD,ALERT,ALLOC,LMT,MKT,STP,STPLMT",
        "SMART,AMEX,ARCA,BATS,CBOE", 1, under_con_id,
        "SPDR S&P 500 ETF TRUST", c.get("primary_exchange", "ARCA"),
        expiry[:6] if is_opt else "", "", "", "", "US/Eastern",
        trading_hours, liquid_hours, "", "", 0, 1,
        "SPY" if is_opt else "", "STK" if is_opt else "", "26,26,26", expiry if is_opt else "",
        "ETF" if not is_opt else "", 1, 1, 1,
    )
