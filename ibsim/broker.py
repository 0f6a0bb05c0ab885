"""The IB side of the simulator: orders, matching, positions, executions, accounts.

It lives on the server's asyncio loop and knows nothing about sockets: it returns
`Event`s (who must hear what) that the server turns into wire messages. Orders
and positions survive client disconnects and simulated gateway restarts, and
with a state file, process restarts too; ids never repeat.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from ibsim import calendar, combos, sessions, universe
from ibsim.fills import BuyersModel
from ibsim.market import (
    ET,
    SPY_CON_ID,
    Market,
    expiry_close,
    option_contract,
    stock_contract,
)

OPTION_COMMISSION = 0.65
STOCK_COMMISSION_MIN = 1.0
PRUNE_KEEP_DONE = 500
DONE = ("Filled", "Cancelled", "Inactive")
SETTLE_AT = dtime(2, 0)  # ET, on the next session's date: OCC's overnight processing


@dataclass
class Event:
    """Something clients must hear: `kind` in order/exec/position/account; `client_id`
    None means every client of the account that subscribed."""

    kind: str
    data: dict[str, Any]
    client_id: int | None = None


@dataclass
class RejectRule:
    count: int
    code: int
    message: str
    action: str | None = None
    order_type: str | None = None

    def matches(self, order: dict[str, Any]) -> bool:
        return (self.action in (None, order["action"])) and (
            self.order_type in (None, order["order_type"])
        )


@dataclass
class Broker:
    market: Market
    account: str = "DU1234567"
    state_file: str | None = None
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # key "client:order"
    positions: dict[int, dict[str, Any]] = field(default_factory=dict)
    executions: list[dict[str, Any]] = field(default_factory=list)
    cash: float = 100_000.0
    realized: float = 0.0
    next_order_id: int = 1
    next_perm_id: int = 0
    next_exec: int = 0
    hold_fills_until: float = 0.0
    defer_saves: bool = False  # a batch of orders saves once, at its end
    rejects: list[RejectRule] = field(default_factory=list)
    settled: list[dict[str, Any]] = field(default_factory=list)
    # /fault/partial_fills: the next `count` orders of qty >= 2 fill in `slices` slices.
    expiring: dict[str, dict[str, Any]] = field(default_factory=dict)  # con_id -> close
    partial_count: int = 0
    partial_slices: int = 2
    slice_gap: float = 0.15  # seconds between slices ("moments apart")
    # --fill-model buyers: limits inside the spread wait for a counterparty (ibsim/fills.py);
    # None is the kind model (a seeded fair price each tick).
    fill_model: BuyersModel | None = None

    def __post_init__(self) -> None:
        # Time-based prefixes keep perm and exec ids unique across restarts without a file.
        self.run_prefix = int(time.time()) % 100_000_000
        if self.next_perm_id == 0:
            self.next_perm_id = self.run_prefix * 10 + 1
        self.load()

    # ---- persistence -------------------------------------------------------------------

    def load(self) -> None:
        if not self.state_file or not Path(self.state_file).exists():
            return
        data = json.loads(Path(self.state_file).read_text())
        self.orders = data["orders"]
        self.positions = {int(k): v for k, v in data["positions"].items()}
        self.executions = data["executions"]
        self.cash, self.realized = data["cash"], data["realized"]
        self.next_order_id = data["next_order_id"]
        self.next_perm_id = max(self.next_perm_id, data["next_perm_id"])
        self.next_exec = data["next_exec"]
        self.settled = data.get("settled", [])
        self.expiring = data.get("expiring", {})
        self.market.spot = data.get("spot", self.market.spot)

    def prune(self, keep_done: int = 2000) -> None:
        """Forget the oldest finished orders past `keep_done` (as a gateway's completed
        orders list is bounded): every tick's matching walks the orders, and every save
        writes them, so an unbounded dict made a long run quadratic (bench.memory)."""
        done = [k for k, o in self.orders.items() if o["status"] in DONE]
        for k in done[:max(0, len(done) - keep_done)]:
            del self.orders[k]

    def save(self) -> None:
        """Persist the state file on every change, as IB keeps orders server-side: a
        gateway killed at any moment loses nothing. Finished orders and old executions
        are trimmed first, so its cost stays flat over a long run (it grew with the
        history before: bench.exits)."""
        if self.defer_saves:
            return
        if len(self.orders) > 2 * PRUNE_KEEP_DONE:
            self.prune(PRUNE_KEEP_DONE)
        if not self.state_file:
            return
        data = {
            "orders": self.orders, "positions": {str(k): v for k, v in self.positions.items()},
            "executions": self.executions[-500:], "cash": self.cash, "realized": self.realized,
            "next_order_id": self.next_order_id, "next_perm_id": self.next_perm_id,
            "next_exec": self.next_exec, "settled": self.settled, "spot": self.market.spot,
            "expiring": self.expiring,
        }
        tmp = f"{self.state_file}.tmp"
        Path(tmp).write_text(json.dumps(data))
        os.replace(tmp, self.state_file)

    # ---- queries -----------------------------------------------------------------------

    def open_orders(self, client_id: int | None = None) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["status"] not in DONE
                and (client_id is None or o["client_id"] == client_id)]

    def find(self, client_id: int, order_id: int) -> dict[str, Any] | None:
        return self.orders.get(f"{client_id}:{order_id}")

    def quote_of(self, contract: dict[str, Any]) -> tuple[float, float, float]:
        """(bid, ask, mark) of a contract now."""
        other = universe.quote(contract, self.market)  # QQQ, IWM, stocks, VIX, forex
        if other is not None:
            return other
        if contract["sec_type"] == "STK":
            return self.market.stock_quote()
        q = self.market.option_quote(contract["expiry"], contract["strike"], contract["right"])
        return q.bid, q.ask, q.model

    # ---- orders ------------------------------------------------------------------------

    def place(self, order: dict[str, Any], outage: bool) -> list[Event]:
        """A placeOrder from a client: new, or a modification of the same id."""
        cid = order["client_id"]
        existing = self.find(cid, order["order_id"])
        self.next_order_id = max(self.next_order_id, order["order_id"] + 1)
        if existing is not None:
            if (existing["contract"]["con_id"] != order["contract"]["con_id"]
                    or existing["action"] != order["action"]):
                # Not a modification: another order under a used id (IB: 103).
                return [self._reject_event(order, 103, "Duplicate order id")]
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
        if order.get("outside_rth") and order["contract"]["sec_type"] in ("OPT", "BAG"):
            # Options have no extended session: IB ignores the flag and says so (a warning).
            events.append(Event("error", {"id": order["order_id"], "code": 2109, "message":
                                          "Order Event Warning:Attribute \"Outside Regular"
                                          " Trading Hours\" is ignored based on the order type"
                                          " and destination. PlaceOrder is now being"
                                          " processed."}, cid))
        if warning:  # a warning: the order stays working (ib_insync keeps it active)
            events.append(Event("error", {"id": order["order_id"], "code": 399,
                                          "message": warning}, cid))
        self.save()
        return events

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
            return [self._reject_event(order, 104, "Can't modify a filled order")
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

    def fill_before(self, o: dict[str, Any]) -> list[Event]:
        """A cancel or modify that arrives too late: the order fills first, whole, at its
        limit (a LMT reached at the exchange) or at the market (MKT, STP)."""
        bid, ask, _mark = self.quote_of(o["contract"])
        market = ask if o["action"] == "BUY" else bid
        price = o["lmt_price"] if o["order_type"] == "LMT" and o.get("lmt_price") else market
        return self._fill(o, max(price, 0.01))

    def cancel(self, client_id: int, order_id: int) -> list[Event]:
        o = self.find(client_id, order_id)
        if o is None:
            return [Event("error", {"id": order_id, "code": 10147, "message":
                                    f"OrderId {order_id} that needs to be cancelled is not"
                                    " found."}, client_id)]
        if o["status"] in DONE:
            return [Event("error", {"id": order_id, "code": 10148, "message":
                                    f"OrderId {order_id} that needs to be cancelled cannot be"
                                    f" cancelled, state: {o['status']}."}, client_id)]
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

    # ---- matching ----------------------------------------------------------------------

    def match(self) -> list[Event]:
        """Fill what the market reaches now (called every tick and after each order)."""
        if time.time() < self.hold_fills_until:
            return []
        events: list[Event] = []
        now = self.market.now()
        for o in list(self.open_orders()):
            in_session = sessions.in_session(o["contract"], now, o.get("outside_rth", False))
            if o.get("session_hold") and in_session:
                o["status"], o["session_hold"] = "Submitted", False  # the session opened
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
        self._apply_position(c, signed, price * mult)
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
        events.append(Event("position", {"con_id": c["con_id"]}))
        self.save()
        return events

    def _apply_position(self, c: dict[str, Any], signed: float, unit_cost: float) -> None:
        pos = self.positions.get(c["con_id"])
        if pos is None:
            pos = {"contract": c, "position": 0.0, "avg_cost": 0.0}
            self.positions[c["con_id"]] = pos
        old = pos["position"]
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            pos["avg_cost"] = (abs(old) * pos["avg_cost"] + abs(signed) * unit_cost) / abs(new)
        else:
            closed = min(abs(old), abs(signed))
            direction = 1 if old > 0 else -1
            self.realized += direction * closed * (unit_cost - pos["avg_cost"])
            if abs(signed) > abs(old):
                pos["avg_cost"] = unit_cost
        pos["position"] = new
        if new == 0:
            pos["avg_cost"] = 0.0

    # ---- expiry ------------------------------------------------------------------------

    def settle_expiries(self) -> list[Event]:
        """OCC's rule, settled overnight: at the expiry's real close (13:00 on a half day)
        the underlying's price is taken; an option in the money by $0.01 or more is
        exercised/assigned, the rest expire. Positions change at SETTLE_AT on the next
        session's date (the harsher reading of "overnight": a Friday expiry shows Monday),
        not at the close."""
        now = self.market.now()
        events: list[Event] = []
        for con_id, pos in list(self.positions.items()):
            c = pos["contract"]
            if c["sec_type"] != "OPT" or pos["position"] == 0:
                continue
            close_at = expiry_close(c["expiry"])
            if now < close_at:
                continue
            inst = universe.underlying_of(c)  # a QQQ/IWM option settles on its own price
            pending = self.expiring.setdefault(str(con_id), {
                "close": round(universe.price(inst, self.market) if inst else self.market.spot,
                               2),
                "settle_at": datetime.combine(calendar.next_session(close_at.date()),
                                              SETTLE_AT, ET).isoformat()})
            if now < datetime.fromisoformat(pending["settle_at"]):
                continue
            del self.expiring[str(con_id)]
            spot = pending["close"]
            shares_of = universe.stock_contract(inst) if inst else stock_contract("SMART")
            itm_by = c["strike"] - spot if c["right"] == "P" else spot - c["strike"]
            itm = round(itm_by, 2) >= 0.01  # OCC exercise by exception: $0.01 or more
            qty = pos["position"]
            if itm:
                events += self._deliver(c, shares_of, qty)
            else:
                self.realized += -qty * pos["avg_cost"]  # the premium is kept (or lost)
            del self.positions[con_id]
            outcome = "assigned" if itm and qty < 0 else "exercised" if itm else "expired"
            self.settled.append({"con_id": con_id, "local_symbol": c["local_symbol"],
                                 "qty": qty, "outcome": outcome, "spot": spot,
                                 "time": now.isoformat()})
            for o in self.open_orders():
                if o["contract"]["con_id"] == con_id:
                    events += self._cancel(o, f"Order Canceled - reason: option {outcome}")
            events.append(Event("position", {"con_id": con_id}))
        if events:
            self.save()
        return events

    def _deliver(self, c: dict[str, Any], shares_of: dict[str, Any], qty: float
                 ) -> list[Event]:
        """Exercise or assignment of `qty` contracts (signed: < 0 short): 100 shares each
        at the strike. A short put buys them, a short call sells them. No execution is
        reported: IB books it overnight, the API sees only positions change."""
        shares = 100 * qty * (1 if c["right"] == "C" else -1)
        self._apply_position(shares_of, shares, c["strike"])
        self.cash -= shares * c["strike"]
        return [Event("position", {"con_id": shares_of["con_id"]})]

    def assign(self, con_id: int, qty: int) -> list[Event]:
        """Early assignment of `qty` contracts of a short option (POST /assign): the option
        position shrinks, the shares arrive at the strike, open orders on the option stay
        open (IB does not cancel them). ValueError when nothing that short is held."""
        pos = self.positions.get(con_id)
        if pos is None or pos["contract"]["sec_type"] != "OPT" or pos["position"] > -qty:
            raise ValueError(f"no short option position of {qty} on con_id {con_id}")
        c = pos["contract"]
        inst = universe.underlying_of(c)
        shares_of = universe.stock_contract(inst) if inst else stock_contract("SMART")
        events = self._deliver(c, shares_of, -qty)
        self.realized += qty * pos["avg_cost"]  # the option closes at 0: its premium kept
        pos["position"] += qty
        if pos["position"] == 0:
            pos["avg_cost"] = 0.0
        self.settled.append({"con_id": con_id, "local_symbol": c["local_symbol"], "qty": -qty,
                             "outcome": "assigned_early", "spot": round(self.market.spot, 2),
                             "time": self.market.now().isoformat()})
        events.append(Event("position", {"con_id": con_id}))
        self.save()
        return events

    # ---- contracts ---------------------------------------------------------------------

    def resolve(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Contracts matching a (partial) contract from the client: SPY stock or options."""
        from ibsim.market import expirations, option_con_id

        other = universe.resolve(spec, self.market)  # QQQ, IWM, stocks, VIX, forex
        if other is not None:
            return other
        if spec.get("con_id"):
            cid = spec["con_id"]
            if cid == SPY_CON_ID:
                return [stock_contract(spec.get("exchange") or "SMART")]
            for e in expirations(self.market.now()) + [p["contract"]["expiry"] for p in
                                                       self.positions.values()
                                                       if p["contract"]["sec_type"] == "OPT"]:
                for right in ("P", "C"):
                    k = ((cid - 800_000_000) // 2) % 4000
                    if option_con_id(e, float(k), right) == cid:
                        return [option_contract(e, float(k), right)]
            return []
        if spec.get("symbol", "").upper() != "SPY":
            return []
        sec = spec.get("sec_type") or "STK"
        if sec == "STK":
            return [stock_contract(spec.get("exchange") or "SMART")]
        if sec != "OPT":
            return []
        exps = expirations(self.market.now())
        want_exp = spec.get("expiry") or ""
        if want_exp:
            exps = [e for e in exps if e.startswith(want_exp[:8])]
        strikes = self.market.strikes()
        if spec.get("strike"):
            k = float(spec["strike"])
            strikes = [k] if k == int(k) and 1 <= k <= 5000 else []
        rights = [spec["right"][0].upper()] if spec.get("right") else ["P", "C"]
        if len(exps) * len(strikes) * len(rights) > 5000:
            exps = exps[:4]
        return [option_contract(e, k, r) for e in exps for k in strikes for r in rights]

    # ---- control -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        def order_view(o: dict[str, Any]) -> dict[str, Any]:
            return {
                "order_id": o["order_id"], "perm_id": o["perm_id"], "client_id": o["client_id"],
                "order_ref": o.get("order_ref", ""), "action": o["action"],
                "order_type": o["order_type"], "qty": o["qty"], "lmt_price": o.get("lmt_price"),
                "aux_price": o.get("aux_price"), "oca_group": o.get("oca_group", ""),
                "status": o["status"], "con_id": o["contract"]["con_id"],
                "local_symbol": o["contract"].get("local_symbol", ""),
                "parent_id": o.get("parent_id", 0), "filled": o.get("filled", 0.0),
                "created": o.get("created"),
            }

        return {
            "positions": [
                {"con_id": k, "local_symbol": p["contract"].get("local_symbol", ""),
                 "sec_type": p["contract"]["sec_type"], "position": p["position"],
                 "avg_cost": round(p["avg_cost"], 4)}
                for k, p in self.positions.items() if p["position"] != 0
            ],
            "open_orders": [order_view(o) for o in self.open_orders()],
            "executions": [
                {k: e[k] for k in ("exec_id", "order_id", "client_id", "perm_id", "order_ref",
                                   "con_id", "local_symbol", "side", "qty", "price", "time",
                                   "commission")}
                for e in self.executions[-500:]
            ],
            "cash": round(self.cash, 2), "realized": round(self.realized, 2),
            "settled": self.settled[-50:], "expiring": self.expiring,
        }
