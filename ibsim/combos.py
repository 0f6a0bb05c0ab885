"""Combo (BAG) orders of option legs on one underlying, e.g. a roll: buy back one put,
sell another.

IB's convention: the combo's price is the net of its legs, each leg's price times its
ratio, BUY legs positive and SELL legs negative (a negative limit is a credit). A BUY
combo fills when the net ask (BUY legs at their ask, SELL legs at their bid) is at or
below the limit; a SELL combo (every leg reversed) when the net bid is at or above it.
A MKT combo fills at once at the net. Each leg fills as its own execution (with the
combo's order id, the leg's contract and commission), the combo's orderStatus carries
the net average price. Anything else (legs on different underlyings, a leg that is
not an option ibsim knows) is rejected with 201 on the combo's order id.
"""

from __future__ import annotations

from typing import Any

from ibsim.events import Event

BAG_CON_ID = 28812380  # IB's conId for a US option combo


def bag_contract(symbol: str) -> dict[str, Any]:
    return {"con_id": BAG_CON_ID, "symbol": symbol, "sec_type": "BAG", "expiry": "",
            "strike": 0.0, "right": "", "multiplier": "", "exchange": "SMART",
            "primary_exchange": "", "currency": "USD", "local_symbol": "", "trading_class": ""}


def resolve_legs(broker: Any, legs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The legs with their contracts, or ([], the reason they cannot trade)."""
    if not 1 <= len(legs) <= 4:
        return [], f"a combo needs 1 to 4 legs, got {len(legs)}"
    out = []
    for leg in legs:
        found = broker.resolve({"con_id": leg["con_id"]}) if leg["con_id"] else []
        if len(found) != 1 or found[0]["sec_type"] != "OPT":
            return [], f"combo leg conId {leg['con_id']} is not an option ibsim knows"
        if leg["action"] not in ("BUY", "SELL") or leg["ratio"] < 1:
            return [], f"combo leg conId {leg['con_id']} needs BUY/SELL and a ratio >= 1"
        out.append(dict(leg, contract=found[0]))
    if len({leg["contract"]["symbol"] for leg in out}) != 1:
        return [], "combo legs must be options on one underlying"
    if len({leg["con_id"] for leg in out}) != len(out):
        return [], "combo legs must be different contracts"
    return out, ""


def _sides(order: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """Each leg with the side it trades on this order (a SELL combo reverses them)."""
    flip = order["action"] == "SELL"
    return [(leg, ("SELL" if leg["action"] == "BUY" else "BUY") if flip else leg["action"])
            for leg in order["legs"]]


def net_prices(broker: Any, order: dict[str, Any]) -> tuple[float, list[float]] | None:
    """The net the combo trades at now (in the combo's BUY-leg convention) and each leg's
    price; None when a leg has no bid to sell into."""
    net = 0.0
    prices = []
    for leg, side in _sides(order):
        bid, ask, _mark = broker.quote_of(leg["contract"])
        if side == "SELL" and bid <= 0:
            return None
        px = ask if side == "BUY" else bid
        prices.append(px)
        net += (1 if leg["action"] == "BUY" else -1) * leg["ratio"] * px
    return round(net, 2), prices


def fill_if_reached(broker: Any, order: dict[str, Any]) -> list[Any]:
    """Called by the broker's matching for a working combo."""
    quoted = net_prices(broker, order)
    if quoted is None:
        return []
    net, prices = quoted
    limit = order.get("lmt_price")
    if order["order_type"] == "LMT" and limit is not None and (
            (order["action"] == "BUY" and net > limit + 1e-9)
            or (order["action"] == "SELL" and net < limit - 1e-9)):
        return []
    events: list[Any] = []
    qty = order["qty"] - order.get("filled", 0.0)
    for (leg, side), px in zip(_sides(order), prices, strict=True):
        piece = {"order_id": order["order_id"], "client_id": order["client_id"],
                 "perm_id": order["perm_id"], "order_ref": order.get("order_ref", ""),
                 "contract": leg["contract"], "action": side, "qty": qty * leg["ratio"],
                 "filled": 0.0, "avg_price": 0.0, "account": order["account"],
                 "oca_group": "", "status": "Submitted"}
        # The leg's own order events would tell the client of a second order under the
        # combo's id: only its execution and position changes go out.
        events += [e for e in broker._fill(piece, px) if e.kind != "order"]
    order.update(filled=order["qty"], avg_price=net, last_price=net, status="Filled")
    broker.save()
    events.append(Event("order", dict(order), order["client_id"]))
    return events
