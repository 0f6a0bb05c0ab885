"""The dashboard's read models (README "Layout"): plain functions over their inputs.

They take the store, a quote source, the clock's date and the link's facts as
arguments and never reach into an actor; PositionBook wires them to its state and
answers the ZeroMQ reads with them. Reply fields are contracts: add, never rename.

Store reads go through `BookSnapshot`, rebuilt only when the store has committed a
write since (its `version`): a `status` or `positions` read is then a few dict
lookups plus the live quotes, not several SQLite queries (issue 19, bench.dashboard).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from book.store import Store
from trading import pnl as pnl_math
from trading.calendar import ET
from trading.model import ContractInfo, LinkState, LinkStatus, Quote
from trading.records import UNSETTLED_ORDER_STATUSES, EntryAttempt, ExitRole, Lot, OrderRecord

QuoteSource = Callable[[list[int]], dict[int, Quote]]


@dataclass(frozen=True)
class BookSnapshot:
    """What the views read from SQLite, as of one store version."""

    version: int
    open_lots: list[Lot]
    exit_orders: dict[str, OrderRecord]  # order_ref -> order, the open lots' exits only
    paused: bool
    kill_switch: bool
    entries: dict[str, list[EntryAttempt]] = field(default_factory=dict)  # per trade date


class SnapshotCache:
    """One BookSnapshot per store version: rebuilt on the first read after a write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._snap: BookSnapshot | None = None

    def get(self, trade_date: str) -> BookSnapshot:
        with self._lock:
            snap = self._snap
            version = self.store.version
            if snap is None or snap.version != version:
                lots = self.store.open_lots()
                refs = [r for lot in lots for r in (lot.tp_order_ref, lot.sl_order_ref) if r]
                snap = BookSnapshot(
                    version=version,
                    open_lots=lots,
                    exit_orders={o.order_ref: o for o in self.store.orders_by_refs(refs)},
                    paused=bool(self.store.get_kv("paused", False)),
                    kill_switch=bool(self.store.get_kv("kill_switch", False)),
                )
                self._snap = snap
            if trade_date not in snap.entries:  # same version: the day's entries read once
                snap.entries[trade_date] = self.store.entries(trade_date)
            return snap


def days_to_expiry(expiry: str, today: date) -> int | None:
    """Calendar days from the exchange's date to an IB expiry (YYYYMMDD)."""
    try:
        exp = date(int(expiry[:4]), int(expiry[4:6]), int(expiry[6:8]))
    except (ValueError, IndexError):
        return None
    return (exp - today).days


def _r(v: float | None, d: int = 2) -> float | None:
    return None if v is None else round(v, d)


def lot_row(
    lot: Lot,
    q: Quote | None,
    spot: float | None,
    orders: dict[str, OrderRecord],
    today: date,
    now: float,
    started_at: float,
) -> dict[str, Any]:
    mid = q.mid if q is not None else None
    mult = lot.mult
    qty, entry = lot.qty, lot.entry_price
    pnl = pnl_math.unrealized_pnl(entry, mid, qty, mult)
    pct = pnl_math.pnl_percent(pnl, entry, qty, mult)

    def leg(role: ExitRole) -> dict[str, Any]:
        o = orders.get(lot.exit_order_ref(role) or "")
        return {
            "price": lot.exit_level(role),
            "order_id": lot.exit_order_id(role),
            "status": o.status if o else "missing",
        }

    tp, sl = leg("tp"), leg("sl")
    # Why a figure is blank: a blank is never shown as zero (issue 19).
    if q is None:
        why = ("no quote yet since the engine started"
               if now - started_at < 600 else "no quote for this contract")
    elif mid is None:
        why = "no bid/ask"
    else:
        why = ""
    und = (q.und_price if q is not None and q.und_price else None) or spot
    strike = lot.strike
    otm = (und - strike) if (und and lot.right == "P") else (
        (strike - und) if und else None)
    tp_p, sl_p = tp["price"], sl["price"]
    return {
        "id": lot.id,
        "symbol": lot.symbol,
        "expiry": lot.expiry,
        "strike": strike,
        "right": lot.right,
        "local_symbol": lot.local_symbol,
        "qty": qty,
        "entry_price": entry,
        "entry_time": lot.entry_time,
        "mid": mid,
        "mid_time": q.time if q is not None else None,
        "mid_age": round(now - q.time, 1) if q is not None and q.time else None,
        "mid_reason": why,
        "pnl": pnl,
        "pnl_pct": pct,
        "age_days": round((now - lot.entry_time) / 86400, 2),
        "state": lot.state,
        "tp": tp,
        "sl": sl,
        "protected": tp["status"] == "submitted" and sl["status"] == "submitted",
        "imported": lot.imported,
        # Issue 19: what a trader reads per lot.
        "dte": days_to_expiry(lot.expiry, today),
        "delta": _r(q.delta, 3) if q is not None and q.delta is not None else None,
        "underlying": _r(und),
        "otm_dollars": _r(otm),
        "otm_pct": _r(otm / und * 100) if otm is not None and und else None,
        # Of the most a short put can earn (its premium), the share already earned.
        "max_profit_pct": pct,
        # Option price still to fall to the TP / to rise to the SL (per share).
        "to_tp": _r(mid - tp_p) if mid is not None and tp_p is not None else None,
        "to_sl": _r(sl_p - mid) if mid is not None and sl_p is not None else None,
        # Premium not yet earned (the cost to buy back now) and the loss if the SL fills.
        "premium_at_risk": _r(mid * mult * qty) if mid is not None else None,
        "loss_at_sl": _r((sl_p - entry) * mult * qty) if sl_p is not None else None,
    }


def positions_view(
    snap: BookSnapshot,
    quotes: QuoteSource,
    spot: float | None,
    today: date,
    started_at: float,
) -> dict[str, Any]:
    lots = snap.open_lots
    qs = quotes([lot.con_id for lot in lots])
    now = time.time()
    rows = [lot_row(lot, qs.get(lot.con_id), spot, snap.exit_orders, today, now, started_at)
            for lot in lots]
    tot_prem = sum(lot.entry_price * lot.mult * lot.qty for lot in lots)
    tot_pnl = sum(r["pnl"] for r in rows if r["pnl"] is not None)
    missing = [r for r in rows if r["pnl"] is None]
    return {
        "lots": rows,
        "totals": {
            "qty": sum(lot.qty for lot in lots),
            # Partial sums would read as a figure: blank when any lot's P&L is unknown.
            "pnl": None if missing else round(tot_pnl, 2),
            "premium": round(tot_prem, 2),
            "pnl_pct": (round(tot_pnl / tot_prem * 100, 2) if tot_prem and not missing
                        else None),
            "pnl_missing": len(missing),
            "pnl_reason": (f"{len(missing)} lot(s) without a quote: {missing[0]['mid_reason']}"
                           if missing else ""),
            "premium_at_risk": (None if missing else
                                round(sum(r["premium_at_risk"] or 0 for r in rows), 2)),
        },
        "as_of": now,
    }


def orders_view(store: Store, contract: Callable[[int], ContractInfo | None]) -> dict[str, Any]:
    rows = []
    for o in store.orders_by_status(UNSETTLED_ORDER_STATUSES):
        lot = store.lot(o.lot_id) if o.lot_id else None
        info = contract(o.con_id)
        rows.append(
            {
                "order_id": o.order_id,
                "perm_id": o.perm_id,
                "order_ref": o.order_ref,
                "action": o.action,
                "order_type": o.order_type,
                "qty": o.qty,
                "lmt_price": o.lmt_price,
                "aux_price": o.aux_price,
                "status": o.status,
                "local_symbol": (lot.local_symbol if lot else None)
                or (info.local_symbol if info else ""),
                "oca_group": o.oca_group,
                "lot_id": o.lot_id,
                "role": o.role,
            }
        )
    return {"orders": rows}


def trades_view(store: Store) -> dict[str, Any]:
    rows = [
        {
            "lot_id": lot.id,
            "local_symbol": lot.local_symbol,
            "qty": lot.qty,
            "entry_price": lot.entry_price,
            "entry_time": lot.entry_time,
            "exit_price": lot.exit_price,
            "exit_time": lot.exit_time,
            "close_reason": lot.close_reason,
            "realized_pnl": lot.realized_pnl,
            "pnl_estimated": lot.pnl_estimated,
        }
        for lot in store.lots(["closed"])
    ]
    rows.sort(key=lambda r: r["exit_time"] or 0, reverse=True)
    return {"trades": rows}


def pnl_history_view(store: Store) -> dict[str, Any]:
    """Realized P&L per day and the equity curve: realized cumulative + the open P&L of
    the day's end-of-day snapshot (no snapshot, or one without a figure: equity None)."""
    snaps = store.pnl_snapshots()
    points = []
    for p in store.pnl_history():
        s = snaps.get(p.date)
        unreal = s.unrealized if s else None
        points.append({
            "date": p.date,
            "realized": p.realized,
            "cumulative": p.cumulative,
            "unrealized": unreal,
            "open_lots": s.open_lots if s else None,
            "equity": round(p.cumulative + unreal, 2) if unreal is not None else None,
        })
    return {"points": points}


@dataclass(frozen=True)
class LinkFacts:
    """The link's state and evidence of life, as the actors last saw them."""

    status: LinkStatus
    verified_at: float
    last_message_at: float
    farms_broken: Sequence[str]
    note: str


@dataclass(frozen=True)
class EngineFacts:
    """The engine's settings and state the status view shows (from config and actors)."""

    entry_times: Sequence[str]
    mode: str
    configured_account: str
    warnings: Sequence[str]
    started_at: float
    clock_iso: str
    kill_switch_config: bool
    reconciled_at: float
    alert_delivery: Any


def slot_row(slot: str, entry: EntryAttempt | None) -> dict[str, Any]:
    """A day's entry slot as the status shows it ('pending' before it is claimed)."""
    return {
        "slot": slot,
        "state": entry.state if entry else "pending",
        "reason": (entry.reason if entry else None) or "",
        "updated_at": entry.updated_at if entry else None,
    }


def status_view(
    snap: BookSnapshot,
    spy: Quote | None,
    today: str,
    link: LinkFacts,
    eng: EngineFacts,
) -> dict[str, Any]:
    entries = {e.slot: e for e in snap.entries.get(today, [])}
    slots = [slot_row(s, entries.get(s)) for s in eng.entry_times]
    lots = snap.open_lots
    paused = snap.paused
    kill = eng.kill_switch_config or snap.kill_switch
    st = link.status
    now = time.time()
    heard = max(link.last_message_at, link.verified_at) or None
    quote = spy.time if spy else None
    return {
        "link": {
            "state": st.state.value,
            "since": st.since,
            "reason": st.reason,
            "gateway_linked": st.gateway_linked,
            "logged_in": st.logged_in,
            # The newer of the last change and the last answered heartbeat.
            "updated_at": max(st.updated_at or st.since, link.verified_at),
            # Evidence of life, with its age: a frozen status shows as an old figure.
            "last_message_at": heard,
            "last_message_age": round(now - heard, 3) if heard else None,
            "last_quote_at": quote,
            "last_quote_age": round(now - quote, 3) if quote else None,
            "farms_broken": sorted(link.farms_broken),
            # Why, when the outage is an expected one (the Sunday re-authentication).
            "note": link.note if st.state != LinkState.READY else "",
        },
        # What the gateway reports, never the config (issue 21).
        "account": st.account or ", ".join(st.accounts),
        "mode": eng.mode,
        "ready_to_trade": (
            st.state == LinkState.READY and not paused and not kill and not st.account_problem
        ),
        "managed_accounts": list(st.accounts),
        "configured_account": eng.configured_account,
        "account_reason": st.account_problem,  # why orders are refused ("" = none)
        "paused": paused,
        "kill_switch": kill,
        "spy": {
            "price": spy.mid if spy else None,
            "bid": spy.bid if spy else None,
            "ask": spy.ask if spy else None,
            "last": spy.last if spy else None,
            "time": spy.time if spy else None,
            "age": round(now - spy.time, 1) if spy and spy.time else None,
        },
        "entry": {"trade_date": today, "slots": slots},
        "warnings": list(eng.warnings),
        "engine": {
            "started_at": eng.started_at,
            "now": now,
            "clock": eng.clock_iso,
            # Every time on the page is exchange time (issue 19).
            "timezone": ET.key,
        },
        "open_lots": len(lots),
        "unprotected_lots": sum(1 for lot in lots if lot.state == "unprotected"),
        "reconciled_at": eng.reconciled_at or None,
        # Per webhook target: alerts pending, parked (refused for good), last error.
        "alert_delivery": eng.alert_delivery,
    }
