"""The soak's money invariants, sampled all along while faults run (issue "Money paths
hold under IB's real behaviour"): each check takes ibsim's state (and the book's fills)
and returns what is wrong; `Sampler` runs them on a thread and keeps the worst
naked-short time."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

_EXIT = re.compile(r"^tb:lot(\d+):(tp|sl):")
_SALE = re.compile(r"^tb:(\d{4}-\d{2}-\d{2}):(\d{4}):sale:\d+$")


def ours(state: dict[str, Any], account: str) -> dict[str, Any]:
    """ibsim's state with only `account`'s positions and executions ('' : every
    account's): a login may manage several, and the other's are never the engine's."""
    if not account:
        return state
    return {**state,
            "positions": [p for p in state["positions"]
                          if p.get("account", account) == account],
            "executions": [e for e in state["executions"]
                           if e.get("account", account) == account]}


def _live_exits(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in state["open_orders"]
            if o["action"] == "BUY" and _EXIT.match(o.get("order_ref") or "")]


def _shorts(state: dict[str, Any]) -> dict[int, float]:
    return {p["con_id"]: -p["position"] for p in state["positions"]
            if p["sec_type"] == "OPT" and p["position"] < 0}


def exit_qty_over_position(state: dict[str, Any]) -> list[str]:
    """Live BUY exit quantity per contract <= the short position. The legs of one OCA
    group count once (their largest remainder): only one of them can fill it."""
    per_group: dict[tuple[int, str], float] = defaultdict(float)
    for o in _live_exits(state):
        key = (o["con_id"], o["oca_group"] or f"id{o['order_id']}")
        per_group[key] = max(per_group[key], o["qty"] - (o.get("filled") or 0.0))
    live: Counter[int] = Counter()
    for (con_id, _), qty in per_group.items():
        live[con_id] += int(qty)
    shorts = _shorts(state)
    return [f"con_id {c}: live exits for {q}, short {shorts.get(c, 0):g}"
            for c, q in sorted(live.items()) if q > shorts.get(c, 0)]


def pairs_per_lot(state: dict[str, Any]) -> list[str]:
    """At most one live exit pair (OCA group) per lot."""
    groups: dict[str, set[str]] = defaultdict(set)
    for o in _live_exits(state):
        m = _EXIT.match(o["order_ref"])
        assert m is not None
        groups[m.group(1)].add(o["oca_group"])
    return [f"lot {lot}: {len(g)} live exit groups" for lot, g in sorted(groups.items())
            if len(g) > 1]


def naked_shorts(state: dict[str, Any]) -> set[int]:
    """Short options with no live TP (LMT) + SL (STP) pair of ours in one OCA group."""
    covered: dict[tuple[int, str], set[str]] = defaultdict(set)
    for o in _live_exits(state):
        if o["oca_group"]:
            covered[(o["con_id"], o["oca_group"])].add(o["order_type"])
    protected = {c for (c, _), types in covered.items() if {"LMT", "STP"} <= types}
    return {c for c in _shorts(state) if c not in protected}


def sales_per_slot(state: dict[str, Any], quantity: int) -> list[str]:
    """One sale per slot: one orderRef with executions, no more than the quantity."""
    refs: dict[tuple[str, str], set[str]] = defaultdict(set)
    qty: Counter[tuple[str, str]] = Counter()
    for e in state["executions"]:
        m = _SALE.match(e.get("order_ref") or "")
        if m and e["side"] in ("SLD", "SELL"):
            refs[(m.group(1), m.group(2))].add(e["order_ref"])
            qty[(m.group(1), m.group(2))] += int(e["qty"])
    out = [f"slot {d} {s}: {len(r)} sales {sorted(r)}" for (d, s), r in sorted(refs.items())
           if len(r) > 1]
    out += [f"slot {d} {s}: {q} sold, quantity {quantity}" for (d, s), q in sorted(qty.items())
            if q > quantity]
    return out


def fills_once(state: dict[str, Any], stored: list[dict[str, Any]]) -> list[str]:
    """Every fill stored once, with its own slice's quantity and price."""
    count = Counter(f["exec_id"] for f in stored)
    out = [f"fill {x} stored {n} times" for x, n in count.items() if n > 1]
    by_id = {f["exec_id"]: f for f in stored}
    for e in state["executions"]:
        f = by_id.get(e["exec_id"])
        if f is not None and (abs(f["qty"] - e["qty"]) > 1e-9
                              or abs(f["price"] - e["price"]) > 1e-6):
            out.append(f"fill {e['exec_id']} stored as {f['qty']} @ {f['price']}, "
                       f"the broker's slice is {e['qty']} @ {e['price']}")
    return out


class Sampler:
    """Samples the invariants every `every` real seconds on a thread. Naked time counts
    only while the engine can act (gateway answering, no outage, logout or stall, link
    READY): a short that stays naked longer than `naked_limit` is a violation."""

    def __init__(self, broker: Callable[[], dict[str, Any] | None],
                 stored_fills: Callable[[], list[dict[str, Any]]],
                 link_ready: Callable[[], bool], quantity: int, naked_limit: float,
                 violate: Callable[[str], None], every: float = 0.5,
                 account: str = "") -> None:
        self.broker, self.stored_fills, self.link_ready = broker, stored_fills, link_ready
        self.quantity, self.naked_limit, self.violate = quantity, naked_limit, violate
        self.every = every
        self.account = account  # the engine's account: the invariants look at it only
        self.samples = 0
        self.worst_naked = 0.0  # seconds a short stayed naked while the engine could act
        self.worst_naked_wall = 0.0  # the same, counting outages and kills too
        self._since: dict[int, float] = {}  # con_id -> when seen naked (wall)
        self._acting: dict[int, float] = {}  # con_id -> naked seconds while able to act
        self._reported: set[str] = set()
        # con_id -> when the soak posted its early assignment (monotonic)
        self.assigned: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = time.monotonic()

    def start(self) -> None:
        self._stop.clear()
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._since.clear()
        self._acting.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a sampling hiccup is not a violation
                print(f"sampler: {exc}", flush=True)
            self._stop.wait(self.every)

    def _once(self, what: str) -> None:
        if what not in self._reported:  # one line per distinct problem, not per sample
            self._reported.add(what)
            self.violate(what)

    def sample(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        state = self.broker()
        if state is None:
            return
        state = ours(state, self.account)
        self.samples += 1
        for p in exit_qty_over_position(state):
            con_id = int(p.split(":")[0].removeprefix("con_id "))
            if now - self.assigned.get(con_id, -1e9) <= self.naked_limit:
                # IB leaves the exits of an assigned option open: the engine has its
                # repair interval (+ slack) to see the assignment and cancel them.
                continue
            self._once(f"exit quantity over the position: {p}")
        for p in pairs_per_lot(state):
            self._once(f"more than one exit pair: {p}")
        for p in sales_per_slot(state, self.quantity):
            self._once(f"more than one sale per slot: {p}")
        for p in fills_once(state, self.stored_fills()):
            self._once(p)
        f = state["faults"]
        blocked = f["outage"] or f["logged_out"] or f["stalled"] or f["frozen"] or (
            f["refusing"])
        naked = naked_shorts(state)
        able = not blocked and bool(naked) and self.link_ready()
        for c in naked:
            seen = c in self._since  # naked since an earlier sample: dt counts
            self._since.setdefault(c, now)
            if able and seen:
                self._acting[c] = self._acting.get(c, 0.0) + dt
            self.worst_naked_wall = max(self.worst_naked_wall, now - self._since[c])
            self.worst_naked = max(self.worst_naked, self._acting.get(c, 0.0))
            if self._acting.get(c, 0.0) > self.naked_limit:
                self._once(f"con_id {c} short with no live TP+SL pair for "
                           f"{self._acting[c]:.1f} s while the engine could act")
        for c in list(self._since):
            if c not in naked:
                del self._since[c]
                self._acting.pop(c, None)
