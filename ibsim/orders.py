"""The broker's order desk: a new order checked and accepted (or rejected), modified,
cancelled; the rejections /fault/reject injects. Mixed into `Broker` (ibsim/broker.py),
whose state it works on."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ibsim import codes, sessions
from ibsim.events import DONE, Event


@dataclass
class RejectRule:
    count: int
    code: int
    message: str
    action: str | None = None
    order_type: str | None = None
    sec_type: str | None = None  # e.g. "OPT": only orders for options

    def matches(self, order: dict[str, Any]) -> bool:
        return (self.action in (None, order["action"])) and (
            self.order_type in (None, order["order_type"])) and (
            self.sec_type in (None, order["contract"].get("sec_type")))


class OrderDesk:
    """Placing, modifying and cancelling orders (a mixin of Broker)."""

    def place(self, order: dict[str, Any], outage: bool) -> list[Event]:
        """A placeOrder from a client: new, or a modification of the same id."""
        cid = order["client_id"]
        existing = self.find(cid, order["order_id"])
        self.next_order_id = max(self.next_order_id, order["order_id"] + 1)
        if existing is not None:
            if (existing["contract"]["con_id"] != order["contract"]["con_id"]
                    or existing["action"] != order["action"]):
                # Not a modification: another order under a used id (IB: 103).
                return [self._reject_event(order, 103, codes.text(103))]
            return self._modify(existing, order)
        if outage:
            return [self._reject_event(order, 201, "Order rejected - reason: the gateway has"
                                       " no connection to IB")]
        for rule in self.rejects:
            if rule.count > 0 and rule.matches(order):
                rule.count -= 1
                self.rejects = [r for r in self.rejects if r.count > 0]
                return [self._reject_event(order, rule.code, rule.message)]
        if order["order_type"] not in ("MKT", "LMT", "STP"):
            return [self._reject_event(order, 201, f"Order rejected - reason: order type"
                                       f" {order['order_type']} is not supported by ibsim")]
        if order["qty"] <= 0:
            return [self._reject_event(order, 201, "Order rejected - reason: quantity <= 0")]
        if self._self_cross(order):
            return [self._reject_event(
                order, 201, "Order rejected - reason: an opposite-side order of this account "
                "rests on the same contract (self-cross)")]
        self.next_perm_id += 1
        order.update(perm_id=self.next_perm_id, filled=0.0, avg_price=0.0, last_price=0.0,
                     account=order.get("account") or self.account, created=time.time())
        if not order.get("transmit", True):
            order["status"] = "PendingSubmit"  # untransmitted: TWS says nothing of it
            self.orders[self._key(order)] = order
            self.save()
            return []
        events: list[Event] = []
        parent = self.find(cid, order.get("parent_id") or 0)
        order["status"] = "PreSubmitted" if parent and parent["status"] != "Filled" else (
            "Submitted")
        self.orders[self._key(order)] = order
        warning = self._hold_for_session(order)
        # A transmitted child releases its untransmitted parent and siblings.
        held = [o for o in self.orders.values() if o["client_id"] == cid
                and o["status"] == "PendingSubmit"
                and (o["order_id"] == order.get("parent_id")
                     or (o.get("parent_id") and o.get("parent_id") == order.get("parent_id")))]
        for o in held:
            o["status"] = "Submitted" if not o.get("parent_id") else "PreSubmitted"
            events.append(Event("order", dict(o), o["client_id"]))
        events.append(Event("order", dict(order), cid))
        if order.pop("tif_preset_applied", False):
            # IB's API order preset overrode the order's TIF: a warning, the order works.
            events.append(Event("error", {"id": order["order_id"], "code": 10349,
                                          "message": codes.text(10349)}, cid))
        if self._beyond_position(order):
            events.append(Event("error", {"id": order["order_id"], "code": 2137,
                                          "message": codes.text(2137)}, cid))
        if order.get("outside_rth") and order["contract"]["sec_type"] in ("OPT", "BAG"):
            # Options have no extended session: IB ignores the flag and says so (a warning).
            events.append(Event("error", {"id": order["order_id"], "code": 2109,
                                          "message": codes.text(2109)}, cid))
        if warning:  # a warning: the order stays working (ib_insync keeps it active)
            events.append(Event("error", {"id": order["order_id"], "code": 399,
                                          "message": warning}, cid))
        self.save()
        return events

    def _beyond_position(self, order: dict[str, Any]) -> bool:
        """IB's cross-side warning (2137): a BUY larger than the short position, or a SELL
        larger than the long, of the order's account in that contract."""
        pos = self.position_of(order.get("account") or self.account,
                               order["contract"]["con_id"])
        return (order["action"] == "BUY" and pos < 0 and order["qty"] > -pos) or (
            order["action"] == "SELL" and pos > 0 and order["qty"] > pos)

    def _hold_for_session(self, order: dict[str, Any]) -> str:
        """Outside its session an order rests PreSubmitted until the session opens (IB's
        default: regular trading hours only); returns warning 399's text, or ""."""
        now = self.market.now()
        if sessions.in_session(order["contract"], now, order.get("outside_rth", False)):
            return ""
        if order["status"] == "Submitted":
            order["status"] = "PreSubmitted"
            order["session_hold"] = True
        at = sessions.next_open(order["contract"], now, order.get("outside_rth", False))
        return sessions.warning_399(order, at)

    def _key(self, order: dict[str, Any]) -> str:
        return f"{order['client_id']}:{order['order_id']}"

    def _reject_event(self, order: dict[str, Any], code: int, message: str) -> Event:
        return Event("reject", {"order_id": order["order_id"], "code": code,
                                "message": message}, order["client_id"])

    def _self_cross(self, order: dict[str, Any]) -> bool:
        con_id = order["contract"]["con_id"]
        parent = order.get("parent_id") or 0

        def related(o: dict[str, Any]) -> bool:  # a bracket's legs may face each other
            return o["client_id"] == order["client_id"] and bool(parent) and (
                o["order_id"] == parent or o.get("parent_id") == parent)

        return any(
            o["contract"]["con_id"] == con_id and o["action"] != order["action"]
            and o.get("account", self.account) == (order.get("account") or self.account)
            and not related(o)
            for o in self.open_orders()
        )

    def _modify(self, existing: dict[str, Any], order: dict[str, Any]) -> list[Event]:
        if existing["status"] in DONE:
            return [self._reject_event(order, 104, codes.text(104))
                    if existing["status"] == "Filled" else
                    self._reject_event(order, 10148, "OrderId that needs to be modified can not"
                                       " be modified, state: Cancelled.")]
        for k in ("lmt_price", "aux_price", "qty", "tif", "order_ref"):
            if order.get(k) is not None:
                existing[k] = order[k]
        if existing["status"] == "PendingSubmit" and order.get("transmit", True):
            existing["status"] = "Submitted"
        self.save()
        return [Event("order", dict(existing), existing["client_id"])]

    def cancel(self, client_id: int, order_id: int) -> list[Event]:
        o = self.find(client_id, order_id)
        if o is None:
            return [Event("error", {"id": order_id, "code": 10147, "message":
                                    codes.text(10147, order_id=order_id)}, client_id)]
        if o["status"] in ("Cancelled", "Inactive", "PendingCancel"):
            # Not in a cancellable state (IB: 161); a filled one gets 10148 below.
            return [Event("error", {"id": order_id, "code": 161, "message":
                                    codes.text(161, perm_id=o["perm_id"])}, client_id)]
        if o["status"] in DONE:
            return [Event("error", {"id": order_id, "code": 10148, "message": codes.text(
                10148, order_id=order_id, state=o["status"])}, client_id)]
        return self._cancel(o, "Order Canceled - reason:")

    def _cancel(self, o: dict[str, Any], reason: str) -> list[Event]:
        o["status"] = "Cancelled"
        self.save()
        return [Event("order", dict(o), o["client_id"]),
                Event("error", {"id": o["order_id"], "code": 202, "message": reason},
                      o["client_id"])]

    def cancel_all(self) -> list[Event]:
        events: list[Event] = []
        for o in self.open_orders():
            events += self._cancel(o, "Order Canceled - reason: global cancel")
        return events
