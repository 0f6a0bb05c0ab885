"""Expiry and assignment: OCC's overnight settlement of expired options and early
assignment by hand (POST /assign). Mixed into `Broker` (ibsim/broker.py)."""

from __future__ import annotations

from datetime import datetime
from datetime import time as dtime
from typing import Any

from ibsim import calendar, universe
from ibsim.events import Event
from ibsim.market import ET, expiry_close, stock_contract

SETTLE_AT = dtime(2, 0)  # ET, on the next session's date: OCC's overnight processing


class Expiries:
    """Settlement of expired options and early assignment (a mixin of Broker)."""

    def settle_expiries(self) -> list[Event]:
        """OCC's rule, settled overnight: at the expiry's real close (13:00 on a half day)
        the underlying's price is taken; an option in the money by $0.01 or more is
        exercised/assigned, the rest expire. Positions change at SETTLE_AT on the next
        session's date (the harsher reading of "overnight": a Friday expiry shows Monday),
        not at the close."""
        now = self.market.now()
        events: list[Event] = []
        settled: set[str] = set()
        for acct, book in self.books():  # every account's positions settle alike
            for con_id, pos in list(book.items()):
                events += self._settle_one(acct, book, con_id, pos, now, settled)
        for key in settled:
            self.expiring.pop(key, None)
        if events:
            self.save()
        return events

    def _settle_one(self, acct: str, book: dict[int, dict[str, Any]], con_id: int,
                    pos: dict[str, Any], now: datetime, settled: set[str]) -> list[Event]:
        c = pos["contract"]
        if c["sec_type"] != "OPT" or pos["position"] == 0:
            return []
        close_at = expiry_close(c["expiry"])
        if now < close_at:
            return []
        inst = universe.underlying_of(c)  # a QQQ/IWM option settles on its own price
        pending = self.expiring.setdefault(str(con_id), {
            "close": round(universe.price(inst, self.market) if inst else self.market.spot,
                           2),
            "settle_at": datetime.combine(calendar.next_session(close_at.date()),
                                          SETTLE_AT, ET).isoformat()})
        if now < datetime.fromisoformat(pending["settle_at"]):
            return []
        settled.add(str(con_id))
        spot = pending["close"]
        shares_of = universe.stock_contract(inst) if inst else stock_contract("SMART")
        itm_by = c["strike"] - spot if c["right"] == "P" else spot - c["strike"]
        itm = round(itm_by, 2) >= 0.01  # OCC exercise by exception: $0.01 or more
        qty = pos["position"]
        events: list[Event] = []
        if itm:
            events += self._deliver(c, shares_of, qty, acct)
        elif book is self.positions:
            self.realized += -qty * pos["avg_cost"]  # the premium is kept (or lost)
        del book[con_id]
        outcome = "assigned" if itm and qty < 0 else "exercised" if itm else "expired"
        self.settled.append({"con_id": con_id, "local_symbol": c["local_symbol"],
                             "qty": qty, "outcome": outcome, "spot": spot,
                             "time": now.isoformat(), "account": acct})
        for o in self.open_orders():
            if o["contract"]["con_id"] == con_id and o.get("account", acct) in ("", acct):
                events += self._cancel(o, f"Order Canceled - reason: option {outcome}")
        events.append(Event("position", {"con_id": con_id, "account": acct}))
        return events

    def _deliver(self, c: dict[str, Any], shares_of: dict[str, Any], qty: float,
                 account: str | None = None) -> list[Event]:
        """Exercise or assignment of `qty` contracts (signed: < 0 short): 100 shares each
        at the strike. A short put buys them, a short call sells them. No execution is
        reported: IB books it overnight, the API sees only positions change."""
        shares = 100 * qty * (1 if c["right"] == "C" else -1)
        self._apply_position(shares_of, shares, c["strike"], account)
        if account in (None, "", self.account):
            self.cash -= shares * c["strike"]
        return [Event("position", {"con_id": shares_of["con_id"], "account": account})]

    def assign(self, con_id: int, qty: int, first: str = "both") -> list[Event]:
        """Early assignment of `qty` contracts of a short option (POST /assign): the option
        position shrinks, the shares arrive at the strike, open orders on the option stay
        open (IB does not cancel them). ValueError when nothing that short is held.

        IB books the two legs as separate position updates in no documented order:
        `first` = "option" or "shares" books only that leg now and keeps the other for
        `finish_assignment()`; "both" books them together."""
        pos = self.positions.get(con_id)
        if pos is None or pos["contract"]["sec_type"] != "OPT" or pos["position"] > -qty:
            raise ValueError(f"no short option position of {qty} on con_id {con_id}")
        c = pos["contract"]
        inst = universe.underlying_of(c)
        shares_of = universe.stock_contract(inst) if inst else stock_contract("SMART")
        legs = [lambda: self._deliver(c, shares_of, -qty), lambda: self._close_assigned(
            con_id, qty)]
        if first == "option":
            legs.reverse()
        now, later = (legs, []) if first == "both" else (legs[:1], legs[1:])
        self.late_legs.extend(later)
        events = [e for leg in now for e in leg()]
        self.save()
        return events

    def finish_assignment(self) -> list[Event]:
        """Book the legs an assignment kept for later."""
        legs, self.late_legs = self.late_legs, []
        events = [e for leg in legs for e in leg()]
        self.save()
        return events

    def _close_assigned(self, con_id: int, qty: int) -> list[Event]:
        pos = self.positions.get(con_id)
        if pos is None or pos["position"] > -qty:
            # Bought back in the gap before this leg was booked: nothing left to assign.
            return []
        c = pos["contract"]
        self.realized += qty * pos["avg_cost"]  # the option closes at 0: its premium kept
        pos["position"] += qty
        if pos["position"] == 0:
            pos["avg_cost"] = 0.0
        self.settled.append({"con_id": con_id, "local_symbol": c["local_symbol"], "qty": -qty,
                             "outcome": "assigned_early", "spot": round(self.market.spot, 2),
                             "time": self.market.now().isoformat()})
        return [Event("position", {"con_id": con_id})]
