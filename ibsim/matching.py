"""The broker's matching: what the market reaches fills (whole, or in slices), at
which price, and what a fill does to executions, positions, cash, OCA siblings and
bracket children. Mixed into `Broker` (ibsim/broker.py), whose state it works on."""

from __future__ import annotations

import time
from typing import Any

from ibsim import combos, sessions
from ibsim.events import Event
from ibsim.market import ET

OPTION_COMMISSION = 0.65
STOCK_COMMISSION_MIN = 1.0


class Matching:
    """Fills and their consequences (a mixin of Broker)."""

    def fill_before(self, o: dict[str, Any]) -> list[Event]:
        """A cancel or modify that arrives too late: the order fills first, whole, at its
        limit (a LMT reached at the exchange) or at the market (MKT, STP)."""
        bid, ask, _mark = self.quote_of(o["contract"])
        market = ask if o["action"] == "BUY" else bid
        price = o["lmt_price"] if o["order_type"] == "LMT" and o.get("lmt_price") else market
        return self._fill(o, max(price, 0.01))

    def match(self) -> list[Event]:
        """Fill what the market reaches now (called every tick and after each order)."""
        if time.time() < self.hold_fills_until:
            return []
        events: list[Event] = []
        now = self.market.now()
        for o in list(self.open_orders()):
            in_session = sessions.in_session(o["contract"], now, o.get("outside_rth", False))
            if o.get("session_hold") and in_session and o["status"] == "PreSubmitted":
                # The session opened. (Only a held order: an OCA sibling cancelled by a
                # fill earlier in this pass stays cancelled.)
                o["status"], o["session_hold"] = "Submitted", False
                events.append(Event("order", dict(o), o["client_id"]))
            if o["status"] != "Submitted" or not in_session:
                continue  # outside its session: stops do not trigger, limits do not fill
            if o["contract"]["sec_type"] == "BAG":  # a combo fills on its legs' net
                events += combos.fill_if_reached(self, o)
                continue
            if time.time() < o.get("next_slice_at", 0.0):
                continue  # a sliced fill: the next slice comes moments later
            bid, ask, _mark = self.quote_of(o["contract"])
            price = self._fill_price(o, bid, ask)
            if price is not None:
                events += self._fill(o, price, self._slice_qty(o))
        return events

    def _slice_qty(self, o: dict[str, Any]) -> float | None:
        """The quantity of this fill: the whole rest, or one slice of a sliced order."""
        if "slices_left" not in o:
            if self.partial_count <= 0 or o["qty"] < 2:
                return None
            self.partial_count -= 1
            o["slices_left"] = int(min(self.partial_slices, o["qty"]))
        left = o["slices_left"]
        rest = o["qty"] - o["filled"]
        if left <= 1:
            return None
        o["slices_left"] = left - 1
        o["next_slice_at"] = time.time() + self.slice_gap
        return float(max(1, int(rest // left)))

    def _fill_price(self, o: dict[str, Any], bid: float, ask: float) -> float | None:
        kind, side = o["order_type"], o["action"]
        if side == "SELL" and bid <= 0:
            return None  # nobody bids
        if kind == "MKT":
            return ask if side == "BUY" else bid
        if kind == "STP":
            stop = o["aux_price"]
            if side == "BUY" and ask >= stop:
                return ask
            if side == "SELL" and bid <= stop:
                return bid
            return None
        limit = o["lmt_price"]
        cid, model = o["contract"]["con_id"], self.fill_model
        if side == "BUY":
            if ask <= limit:
                return ask
            if model is not None:
                fills = bid < limit and model.buy_fills(cid, self.market.tick_no, limit, bid, ask)
                return limit if fills else None
            fair = bid + (ask - bid) * self.market.fair_fraction(o["contract"]["con_id"])
            return limit if bid < limit and fair <= limit else None
        if limit <= bid:
            return bid  # marketable: fills at once at the bid
        if model is not None:
            fills = limit < ask and model.sell_fills(cid, self.market.tick_no, limit, bid, ask)
            return limit if fills else None
        fair = bid + (ask - bid) * self.market.fair_fraction(o["contract"]["con_id"])
        return limit if limit < ask and fair >= limit else None

    def _fill(self, o: dict[str, Any], price: float, part: float | None = None) -> list[Event]:
        qty = o["qty"] - o["filled"] if part is None else min(part, o["qty"] - o["filled"])
        price = round(price, 2)
        c = o["contract"]
        mult = float(c.get("multiplier") or 1)
        self.next_exec += 1
        exec_id = f"0000{self.run_prefix:08x}.{self.next_exec:08x}.01.01"
        commission = (OPTION_COMMISSION * qty if c["sec_type"] == "OPT"
                      else max(STOCK_COMMISSION_MIN, 0.005 * qty))
        signed = qty if o["action"] == "BUY" else -qty
        o["avg_price"] = (o["avg_price"] * o["filled"] + price * qty) / (o["filled"] + qty)
        o["filled"] += qty
        o["last_price"] = price
        done = o["filled"] >= o["qty"]
        o["status"] = "Filled" if done else "Submitted"  # a slice: the rest keeps working
        # The gateway's own clock: a simulated day's fills carry that day's time, as the
        # engine (on the same simulated clock) books P&L by the fill's New York date.
        # "time" stays the wall clock: the control API's record of when it happened.
        now = self.market.now()
        execution = {
            "exec_id": exec_id, "order_id": o["order_id"], "client_id": o["client_id"],
            "perm_id": o["perm_id"], "order_ref": o.get("order_ref", ""), "contract": c,
            "con_id": c["con_id"], "local_symbol": c.get("local_symbol", ""),
            "side": "BOT" if o["action"] == "BUY" else "SLD", "qty": qty, "price": price,
            "cum_qty": o["filled"], "avg_price": o["avg_price"], "account": o["account"],
            "time": time.time(), "time_str": now.astimezone(ET).strftime("%Y%m%d %H:%M:%S")
            + " US/Eastern", "commission": commission, "sim_time": now.isoformat(),
        }
        self.executions.append(execution)
        mine = o["account"] in ("", self.account)  # cash and margin: the first account's
        self._apply_position(c, signed, price * mult, o["account"])
        if mine:
            self.cash -= signed * price * mult + commission
        events = [Event("exec", execution, o["client_id"]), Event("order", dict(o), o["client_id"])]
        # OCA: ocaType 1 cancels the siblings at the first fill, even a partial one (IB:
        # "cancel all remaining orders"); 2 and 3 reduce them by the quantity filled.
        if o.get("oca_group"):
            for sib in self.open_orders():
                if sib["oca_group"] != o["oca_group"] or sib is o or (
                        sib.get("account") != o.get("account")):
                    continue
                if o.get("oca_type") in (2, 3) and sib["qty"] - sib["filled"] > qty:
                    sib["qty"] -= qty
                    events.append(Event("order", dict(sib), sib["client_id"]))
                else:
                    events += self._cancel(sib, "Order Canceled - reason: OCA group fill")
        # A filled parent releases its children.
        for child in self.open_orders() if done else []:
            if child.get("parent_id") == o["order_id"] and child["client_id"] == o["client_id"]:
                child["status"] = "Submitted"
                events.append(Event("order", dict(child), child["client_id"]))
        events.append(Event("position", {"con_id": c["con_id"], "account": o["account"]}))
        self.save()
        return events

    def _apply_position(self, c: dict[str, Any], signed: float, unit_cost: float,
                        account: str | None = None) -> None:
        book = self.book(account)
        pos = book.get(c["con_id"])
        if pos is None:
            pos = {"contract": c, "position": 0.0, "avg_cost": 0.0}
            book[c["con_id"]] = pos
        old = pos["position"]
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            pos["avg_cost"] = (abs(old) * pos["avg_cost"] + abs(signed) * unit_cost) / abs(new)
        else:
            closed = min(abs(old), abs(signed))
            direction = 1 if old > 0 else -1
            if book is self.positions:  # realized P&L: the first account's
                self.realized += direction * closed * (unit_cost - pos["avg_cost"])
            if abs(signed) > abs(old):
                pos["avg_cost"] = unit_cost
        pos["position"] = new
        if new == 0:
            pos["avg_cost"] = 0.0
