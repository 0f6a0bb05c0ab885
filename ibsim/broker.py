"""The IB side of the simulator: orders, matching, positions, executions, accounts.

It lives on the server's asyncio loop and knows nothing about sockets: it returns
`Event`s (who must hear what) that the server turns into wire messages. Orders
and positions survive client disconnects and simulated gateway restarts, and
with a state file, process restarts too; ids never repeat.

The work is split by concern: ibsim/orders.py (the order desk), ibsim/matching.py
(fills), ibsim/expiry.py (settlement, assignment), ibsim/contracts.py (resolution);
this module holds the state, its persistence and its views.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ibsim import contracts, universe
from ibsim.events import DONE, Event
from ibsim.expiry import SETTLE_AT, Expiries
from ibsim.fills import BuyersModel
from ibsim.market import Market
from ibsim.matching import OPTION_COMMISSION, STOCK_COMMISSION_MIN, Matching
from ibsim.orders import OrderDesk, RejectRule

__all__ = ["DONE", "OPTION_COMMISSION", "PRUNE_KEEP_DONE", "SETTLE_AT", "STOCK_COMMISSION_MIN",
           "Broker", "Event", "RejectRule"]


PRUNE_KEEP_DONE = 500


@dataclass
class Broker(OrderDesk, Matching, Expiries):
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
    save_deferred: bool = False  # a save was asked for while deferred
    rejects: list[RejectRule] = field(default_factory=list)
    settled: list[dict[str, Any]] = field(default_factory=list)
    # /fault/partial_fills: the next `count` orders of qty >= 2 fill in `slices` slices.
    expiring: dict[str, dict[str, Any]] = field(default_factory=dict)  # con_id -> close
    partial_count: int = 0
    partial_slices: int = 2
    slice_gap: float = 0.15  # seconds between slices ("moments apart")
    # An assignment's leg kept for later (POST /assign with "first" and "gap").
    late_legs: list[Callable[[], list[Event]]] = field(default_factory=list)
    # --fill-model buyers: limits inside the spread wait for a counterparty (ibsim/fills.py);
    # None is the kind model (a seeded fair price each tick).
    fill_model: BuyersModel | None = None
    # --accounts: every account the login manages (managedAccounts); the first is
    # `account`. Positions and executions are kept per account; cash, margin and the
    # account values are modelled for the first account only.
    accounts: list[str] = field(default_factory=list)
    others: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # --tif-preset: TWS's API order preset for the time in force ("DAY"): an order with
    # another TIF is placed with this one and warned of it (10349). None: no preset.
    tif_preset: str | None = None

    def __post_init__(self) -> None:
        # Time-based prefixes keep perm and exec ids unique across restarts without a file.
        self.run_prefix = int(time.time()) % 100_000_000
        if self.next_perm_id == 0:
            self.next_perm_id = self.run_prefix * 10 + 1
        if not self.accounts:
            self.accounts = [self.account]
        self.account = self.accounts[0]
        self.load()
        for acct in self.accounts[1:]:
            self.others.setdefault(acct, {})

    # ---- persistence -------------------------------------------------------------------

    def load(self) -> None:
        if not self.state_file or not Path(self.state_file).exists():
            return
        data = json.loads(Path(self.state_file).read_text())
        self.orders = data["orders"]
        self.positions = {int(k): v for k, v in data["positions"].items()}
        self.others = {a: {int(k): v for k, v in book.items()}
                       for a, book in data.get("others", {}).items()}
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
            self.save_deferred = True
            return
        self.save_deferred = False
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
            "others": {a: {str(k): v for k, v in book.items()} for a, book in self.others.items()},
        }
        tmp = f"{self.state_file}.tmp"
        # orjson: ~10x json's speed, and a save is on every answer's path (the answers
        # wait for it: bench.entry's cancels, bench.exits' fill and legs); plain JSON out,
        # read back with json.loads. NaN becomes null, as no IB field carries a NaN.
        Path(tmp).write_bytes(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
        os.replace(tmp, self.state_file)

    # ---- queries -----------------------------------------------------------------------

    def open_orders(self, client_id: int | None = None) -> list[dict[str, Any]]:
        return [o for o in self.orders.values() if o["status"] not in DONE
                and (client_id is None or o["client_id"] == client_id)]

    def find(self, client_id: int, order_id: int) -> dict[str, Any] | None:
        return self.orders.get(f"{client_id}:{order_id}")

    def book(self, account: str | None = None) -> dict[int, dict[str, Any]]:
        """An account's positions by con_id (the first account's: `positions`)."""
        if not account or account == self.account:
            return self.positions
        return self.others.setdefault(account, {})

    def books(self) -> list[tuple[str, dict[int, dict[str, Any]]]]:
        return [(self.account, self.positions), *self.others.items()]

    def position_of(self, account: str, con_id: int) -> float:
        """The account's signed position in a contract (0 if none)."""
        pos = self.book(account).get(con_id)
        return float(pos["position"]) if pos is not None else 0.0

    def quote_of(self, contract: dict[str, Any]) -> tuple[float, float, float]:
        """(bid, ask, mark) of a contract now."""
        other = universe.quote(contract, self.market)  # QQQ, IWM, stocks, VIX, forex
        if other is not None:
            return other
        if contract["sec_type"] == "STK":
            return self.market.stock_quote()
        q = self.market.option_quote(contract["expiry"], contract["strike"], contract["right"])
        return q.bid, q.ask, q.model


    def resolve(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        """Contracts matching a (partial) contract from the client."""
        held = {k: v for _a, book in reversed(self.books()) for k, v in book.items()}
        return contracts.resolve(self.market, held, spec)

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
                 "avg_cost": round(p["avg_cost"], 4), "account": acct}
                for acct, book in self.books() for k, p in book.items() if p["position"] != 0
            ],
            "open_orders": [order_view(o) for o in self.open_orders()],
            "executions": [
                {k: e[k] for k in ("exec_id", "order_id", "client_id", "perm_id", "order_ref",
                                   "con_id", "local_symbol", "side", "qty", "price", "time",
                                   "commission", "account")}
                for e in self.executions[-500:]
            ],
            "cash": round(self.cash, 2), "realized": round(self.realized, 2),
            "settled": self.settled[-50:], "expiring": self.expiring,
        }
