"""Checks before an order is placed: its conditional fields walked (combo legs,
ocaType, whatIf), a whatIf answered with its margin, what ibsim cannot trade refused,
IB's pre-trade margin check, and combo (BAG) orders placed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ibsim import account, codes, combos, wire
from ibsim.contracts import contract_from, no_secdef

if TYPE_CHECKING:
    from ibsim.client import Session
    from ibsim.parts import Parts


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


def check_order(gw: Parts, s: Session, f: list[str]) -> bool:
    """Before the server places an order: answer a whatIf, refuse what ibsim cannot
    trade, each tied to the order's id. True when the order was handled here."""
    order_id = int(f[1])
    try:
        layout = order_layout(f)
    except (IndexError, ValueError):
        s.send(wire.error(order_id, 320, "Error validating request.-'bO' : cause - the order"
                                         " fields could not be read"))
        return True
    spec = contract_from(f, 2)
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
        no_secdef(s, order_id)
        return True
    c = found[0]
    action, qty = f[16], float(f[17] or 0)
    if action not in ("BUY", "SELL") or not qty > 0 or not math.isfinite(qty):
        s.send(wire.error(order_id, 321, "Error validating request.-'bO' : cause - an order"
                                         " needs BUY or SELL and a positive quantity"))
        return True
    lmt = f[19]
    price = float(lmt) if f[18] == "LMT" and lmt and float(lmt) < 1e300 else None
    commission = account.commission(c, qty, gw.broker.quote_of(c)[2])
    m = gw.extras.account.what_if(c, action, qty, price, commission)
    order = {"order_id": order_id, "client_id": s.client_id, "contract": c, "action": action,
             "qty": qty, "order_type": f[18], "lmt_price": price, "aux_price": None,
             "tif": f[21], "oca_group": f[22], "account": f[23] or gw.broker.account,
             "order_ref": f[26]}
    _whatif_reply(gw, s, order, m, commission)
    return True


def _short_of_margin(gw: Parts, s: Session, f: list[str], found: list[dict[str, Any]]
                     ) -> bool:
    """IB's pre-trade margin check: a new order whose initial margin after it would pass
    the equity with loan value is rejected (201, IB's text). True when rejected."""
    order_id, action, qty = int(f[1]), f[16], float(f[17] or 0)
    if f[23] and f[23] != gw.broker.account:
        return False  # margin is modelled for the first account only
    if len(found) != 1 or action not in ("BUY", "SELL") or qty <= 0 or (
            gw.broker.find(s.client_id or 0, order_id) is not None):  # a modify
        return False
    c = found[0]
    lmt = f[19]
    price = float(lmt) if f[18] == "LMT" and lmt and float(lmt) < 1e300 else None
    commission = account.commission(c, qty, gw.broker.quote_of(c)[2])
    m = gw.extras.account.what_if(c, action, qty, price, commission)
    if m["init_change"] <= 0 or m["init_after"] <= m["ewl_after"]:
        return False
    gw.log.info("order {}/{} rejected: initial margin {:.2f} > equity with loan {:.2f}",
                s.client_id, order_id, m["init_after"], m["ewl_after"])
    reason = codes.MARGIN_SHORT.format(ewl=m["ewl_after"], init=m["init_after"])
    s.send(wire.error(order_id, 201, codes.text(201, reason=reason)))
    return True


def _whatif_reply(gw: Parts, s: Session, order: dict[str, Any], m: dict[str, float],
                  commission: float) -> None:
    state: dict[int, Any] = {85: 1}
    for k, name in enumerate(("init_before", "maint_before", "ewl_before", "init_change",
                              "maint_change", "ewl_change", "init_after", "maint_after",
                              "ewl_after")):
        state[87 + k] = f"{m[name]:.2f}"
    state.update({96: wire.fmt(commission), 97: wire.fmt(commission),
                  98: wire.fmt(commission), 99: "USD", 100: ""})
    s.send(wire.open_order(dict(order, perm_id=0, status="PreSubmitted"), extra=state))


def place_combo(gw: Parts, s: Session, f: list[str], layout: dict[str, Any]) -> None:
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
    if action not in ("BUY", "SELL") or not qty > 0 or not math.isfinite(qty):
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
        m = gw.extras.account.what_if_trades(trades, commission)
        _whatif_reply(gw, s, order, m, commission)
        return
    if gw.slow_orders > 0:
        gw._spawn(gw._place_later(order, gw.slow_orders))
        return
    gw._place(order)
