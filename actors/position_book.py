"""PositionBook: the SQLite book of lots, exit orders, fills, entries and alerts.

It applies broker events (fills, order updates) to the book exactly once (fills
are unique by execution id), reconciles with the broker whenever the link
becomes READY, and answers the dashboard's queries over ZeroMQ.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import pykka
from loguru import logger

from actors.book_settlement import SettlementMixin
from actors.context import EngineContext
from actors.messages import (
    CommissionReceived,
    FillReceived,
    LinkChanged,
    OrderUpdated,
    PositionChanged,
    ProtectLot,
    RepairExits,
)
from actors.supervisor import SupervisedActor
from book import views
from book.store import Store
from config.loader import schedule_warnings
from ops.backoff import backoff_delay
from trading import pnl as pnl_math
from trading.calendar import ET
from trading.fills import exit_slice, vwap
from trading.model import ContractInfo, FillInfo, LinkState, LinkStatus, OrderInfo, PositionInfo
from trading.order_refs import PREFIX, parse_sale


def _status_name(info: OrderInfo) -> str:
    if info.is_filled:
        return "filled"
    if info.error_code == 201 or (info.is_dead and info.error_code not in (0, 202, 10147)):
        return "rejected"
    if info.is_dead:
        return "cancelled"
    if info.status == "Unknown":
        return "unknown"
    return "submitted"


def contract_key(con_id: int) -> str:
    return f"contract:{con_id}"


@dataclass(frozen=True)
class _BrokerSnapshot:
    """The broker's side for a reconciliation, fetched off the book's thread."""

    fills: list[FillInfo]
    open_orders: list[OrderInfo]
    positions: list[Any]
    fetched_at: float  # monotonic, taken before the first request
    attempt: int
    full: bool = True  # False: a position check (no open orders, no order statuses)
    completed: tuple[OrderInfo, ...] = ()  # the day's completed orders (full only)


class PositionBook(SettlementMixin, SupervisedActor):
    name = "position_book"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.calendar = ctx.calendar
        self.started_at = ctx.started_at
        self.store: Store | None = None
        self.link = LinkStatus(LinkState.DISCONNECTED, time.time(), "engine starting")
        self.reconciled_at = 0.0
        self.last_broker_event = 0.0
        self._checking = False  # a position check is being fetched
        self._views_cache: views.SnapshotCache | None = None
        self._warnings = schedule_warnings(self.cfg)  # the config does not change while running

    # ---- lifecycle ---------------------------------------------------------------------

    def on_start(self) -> None:
        self.log = logger.bind(actor=self.name)
        self.store = Store(self.cfg.storage.path)
        for kind in (FillReceived, CommissionReceived, OrderUpdated, LinkChanged, PositionChanged):
            self.directory.subscribe(kind, self.name)
        if self.directory.link is not None:  # restarted while the link was up
            self.link = self.directory.link
            if self.link.state == LinkState.READY:
                self.actor_ref.tell(LinkChanged(self.link, LinkState.DISCONNECTED))
        self.directory.views = self.query

    def on_stop(self) -> None:
        self._withdraw_views()
        if self.store is not None:
            self.store.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._withdraw_views()
        super().on_failure(exception_type, exception_value, traceback)

    def _withdraw_views(self) -> None:
        if self.directory.views == self.query:
            self.directory.views = None

    @property
    def db(self) -> Store:
        assert self.store is not None
        return self.store

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, (FillReceived, CommissionReceived, OrderUpdated)):
            self.last_broker_event = time.monotonic()
        if isinstance(message, FillReceived):
            self.apply_fill(message.fill)
        elif isinstance(message, CommissionReceived):
            self.db.set_commission(message.exec_id, message.commission)  # and realized P&L
        elif isinstance(message, OrderUpdated):
            self.apply_order(message.order)
        elif isinstance(message, PositionChanged):
            self._on_position(message.position)
        elif isinstance(message, LinkChanged):
            old, self.link = self.link, message.status
            problem = message.status.account_problem
            if problem and (problem, message.status.generation) != (
                old.account_problem, old.generation
            ):
                # Once per gateway session: the gateway is not the account the config
                # trades (issue 21). Nothing is sent and nothing reconciled against it.
                self.alerts.raise_alert(
                    "risk_limit", f"gateway account check failed: {problem}", "critical",
                    {"configured": self.cfg.gateway.account,
                     "managed": list(message.status.accounts), "mode": self.cfg.gateway.mode},
                )
            if message.status.state == LinkState.READY and not problem:
                self._fetch_for_reconcile(1)
        elif isinstance(message, _BrokerSnapshot):
            if not message.full:
                self._checking = False
            if message.fetched_at < self.last_broker_event:
                # Events came in while it was fetched: it may be older than the book.
                if message.attempt < 3:
                    self._fetch_for_reconcile(message.attempt + 1, message.full)
                elif message.full:
                    self.reconcile()  # in the actor: nothing interleaves
                return None
            if message.full:
                self._apply_snapshot(message.fills, message.open_orders, message.positions,
                                     list(message.completed))
            else:
                self.reconcile_positions(message.positions, message.fills)
        return None

    def _on_position(self, pos: PositionInfo) -> None:
        """A position update no fill of ours explains: check the broker at once."""
        c = pos.contract
        if c.sec_type != "OPT" or c.symbol != self.cfg.strategy.symbol:
            return
        if self.link.state != LinkState.READY:
            return  # the reconciliation at READY covers it
        book_qty = sum(lot["qty"] for lot in self.db.open_lots() if lot["con_id"] == c.con_id)
        if -int(pos.qty) == book_qty or self._checking:
            return
        if self.db.get_kv(f"outside_position:{c.con_id}") == -int(pos.qty) - book_qty:
            return  # a hand sale already reported and not adopted
        self._checking = True
        self._fetch_for_reconcile(1, full=False)

    def _fetch_for_reconcile(self, attempt: int, full: bool = True) -> None:
        """Ask the broker on a helper thread, so that the dashboard's reads are not
        queued behind three gateway round trips after every reconnect; the answer
        comes back as a message and is applied only if no broker event overtook it."""
        conn = self.directory.ref("connection")
        if conn is None:
            return
        timeout = self.cfg.gateway.request_timeout + 2
        fetched_at = time.monotonic()
        me = self.actor_ref

        def fetch() -> None:
            # A full reconciliation (after a connect) is what resumes or cancels leftover
            # sales and repairs exits: a busy gateway's timeout must not postpone it to
            # the next repair tick. Tried again with backoff while the link stays READY.
            tries = 5 if full else 1
            started = fetched_at
            for i in range(1, tries + 1):
                started = time.monotonic() if i > 1 else fetched_at
                try:
                    proxy = conn.proxy()
                    # Positions first: a fill that moved them is then among the
                    # executions, so an exit of ours is never taken for a close by hand.
                    positions = proxy.positions().get(timeout=timeout)
                    fills = proxy.executions().get(timeout=timeout)
                    open_orders = proxy.open_orders().get(timeout=timeout) if full else []
                    # Executions first, then completed orders: an exit filled before the
                    # daily reset is only among the latter (issue 16).
                    completed = proxy.completed_orders().get(timeout=timeout) if full else []
                    break
                except Exception as exc:
                    link = self.directory.link
                    again = i < tries and link is not None and link.state == LinkState.READY
                    self.log.warning("reconciliation skipped: {}{}", exc,
                                     "; trying again" if again else "")
                    if again:
                        time.sleep(backoff_delay(i, 1.0, 8.0))
                        continue
                    if not full:  # let the next update try again
                        with contextlib.suppress(pykka.ActorDeadError):
                            me.tell(_BrokerSnapshot([], [], [], -1.0, 99, False))
                    return
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(
                    _BrokerSnapshot(fills, open_orders, positions, started, attempt, full,
                                    tuple(completed))
                )

        threading.Thread(target=fetch, name="reconcile-fetch", daemon=True).start()

    # ---- intents (written before the broker hears of them) -----------------------------

    def mark_order(self, order_ref: str, **kwargs: Any) -> None:
        self.db.mark_order(order_ref, **kwargs)

    def remember_contract(self, info: ContractInfo) -> None:
        self.db.set_kv(contract_key(info.con_id), asdict(info))

    def contract(self, con_id: int) -> ContractInfo | None:
        data = self.db.get_kv(contract_key(con_id))
        return ContractInfo(**data) if data else None

    def start_entry(self, trade_date: str, slot: str) -> bool:
        return self.db.start_entry(trade_date, slot)

    def finish_entry(
        self, trade_date: str, slot: str, state: str, reason: str = "", lot_id: int | None = None
    ) -> None:
        self.db.finish_entry(trade_date, slot, state, reason=reason, lot_id=lot_id)

    def entry(self, trade_date: str, slot: str) -> dict[str, Any] | None:
        return self.db.entry(trade_date, slot)

    def interrupt_entry(self, trade_date: str, slot: str, reason: str) -> bool:
        return self.db.interrupt_entry(trade_date, slot, reason)

    def reclaim_entry(self, trade_date: str, slot: str) -> bool:
        return self.db.reclaim_entry(trade_date, slot)

    def started_entries(self) -> list[dict[str, Any]]:
        return self.db.entries_in_state("started")

    def entries(self, trade_date: str | None = None) -> list[dict[str, Any]]:
        return self.db.entries(trade_date)

    def order_by_ref(self, ref: str) -> dict[str, Any] | None:
        return self.db.order_by_ref(ref)

    def lot(self, lot_id: int) -> dict[str, Any] | None:
        return self.db.lot(lot_id)

    def open_lots(self) -> list[dict[str, Any]]:
        return self.db.open_lots()

    def held_contracts(self) -> list[ContractInfo]:
        """The contracts of the open lots (MarketData streams them from its start)."""
        out: dict[int, ContractInfo] = {}
        for lot in self.db.open_lots():
            info = self.contract(lot["con_id"])
            if info is not None:
                out[info.con_id] = info
        return list(out.values())

    def lots(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        return self.db.lots(states)

    def fills(self, lot_id: int | None = None) -> list[dict[str, Any]]:
        return self.db.fills(lot_id)

    def set_exits(self, lot_id: int, **kwargs: Any) -> None:
        self.db.set_exits(lot_id, **kwargs)

    def set_lot_state(self, lot_id: int, state: str) -> None:
        self.db.set_lot_state(lot_id, state)

    def get_kv(self, key: str, default: Any = None) -> Any:
        return self.db.get_kv(key, default)

    def set_kv(self, key: str, value: Any) -> None:
        self.db.set_kv(key, value)

    def contracts_sold_on(self, trade_date: str) -> int:
        return self.db.contracts_sold_on(trade_date)

    def realized_on_date(self, trade_date: str) -> float:
        """Realized P&L of lots closed on `trade_date` (New York day)."""
        day = datetime.fromisoformat(trade_date).replace(tzinfo=ET)
        start = day.timestamp()
        return self.db.realized_on(start, start + 86400)

    def link_status(self) -> LinkStatus:
        return self.link

    # ---- broker events -----------------------------------------------------------------

    def next_sale_serial(self, trade_date: str, slot: str) -> int:
        return self.db.next_sale_serial(trade_date, slot)

    def apply_fill(self, fill: FillInfo) -> int | None:
        """Store the fill once; a sale fill opens its lot, an exit fill closes its lot."""
        if not fill.order_ref.startswith(PREFIX):
            self._store_outside_fill(fill)
            return None
        order = self.db.order_by_ref(fill.order_ref)
        if order is None:
            self.log.warning("fill {} for unknown order ref {}", fill.exec_id, fill.order_ref)
            return None
        lot_id = order.get("lot_id")
        opened = False
        if order["role"] == "sale" and lot_id is None:
            existing = self.db.lot_by_order_ref(fill.order_ref)
            if existing:
                lot_id = existing["id"]
            else:
                lot_id = self._open_lot_from_sale(order, fill)
                opened = True
                # Whoever sold it may have given up already: protection must not wait
                # for the repair tick (the executor ignores this if it placed exits).
                self.directory.tell("order_executor", ProtectLot(lot_id, "sale fill"))
        new = self.db.add_fill(
            exec_id=fill.exec_id,
            order_ref=fill.order_ref,
            order_id=fill.order_id,
            perm_id=fill.perm_id,
            con_id=fill.con_id,
            side=fill.side,
            qty=fill.qty,
            price=fill.price,
            commission=fill.commission,
            time=fill.time,
            lot_id=lot_id,
        )
        if not new:
            if fill.commission is not None:
                self.db.set_commission(fill.exec_id, fill.commission)  # and realized P&L
            return lot_id
        self.log.info(
            "fill {} {} {} x{} @ {} ref={}",
            fill.exec_id,
            fill.side,
            fill.local_symbol,
            fill.qty,
            fill.price,
            fill.order_ref,
        )
        # add_fill marked the order filled in its own transaction.
        if order["role"] == "shares":
            self._shares_sold(fill.side, fill.qty)
        if order["role"] == "sale" and lot_id is not None and not opened:
            self._size_sale_lot(lot_id, fill.order_ref)  # a further slice of the sale
        if order["role"] in ("tp", "sl") and lot_id is not None:
            self._close_lot_on_exit(lot_id, order["role"], fill)
        return lot_id

    def _size_sale_lot(self, lot_id: int, order_ref: str, qty: int = 0,
                       avg_price: float = 0.0) -> None:
        """A lot is what its sale filled, at the volume-weighted price of the slices (or
        the broker's figures for the order, `qty` at `avg_price`, when they say more than
        the slices stored so far). Exit prices follow while no exits are placed."""
        from trading.pricing import exit_prices

        lot = self.db.lot(lot_id)
        if lot is None or lot["state"] == "closed":
            return
        got, price = vwap(self.db.fills_of_order(order_ref))
        if qty > got:
            got, price = qty, avg_price
        if got <= 0 or (got == lot["qty"] and abs(price - lot["entry_price"]) < 1e-9):
            return
        got = max(got, int(lot["qty"]))  # never below what a slice already made it
        tp, sl = lot["tp_price"], lot["sl_price"]
        if not lot.get("tp_order_ref"):
            info = self.contract(lot["con_id"])
            tp, sl = exit_prices(price, self.cfg.strategy.take_profit_ratio,
                                 self.cfg.strategy.stop_loss_ratio,
                                 info.min_tick if info else 0.01)
        self.db.resize_sale_lot(lot_id, got, price, tp, sl)
        self.log.info("lot {} is {} contracts at {} (sale slices)", lot_id, got, price)

    def _store_outside_fill(self, fill: FillInfo) -> None:
        """An execution of an order that is not ours (entered in TWS or the app): kept
        (once, by execution id) so that a lot it closed gets its real price."""
        if not fill.exec_id or fill.con_id not in {
            lot["con_id"] for lot in self.db.open_lots()
        }:
            return
        if self.db.add_fill(
            exec_id=fill.exec_id, order_ref=fill.order_ref, order_id=fill.order_id,
            perm_id=fill.perm_id, con_id=fill.con_id, side=fill.side, qty=fill.qty,
            price=fill.price, commission=fill.commission, time=fill.time, lot_id=None,
        ):
            self.log.info(
                "outside fill {} {} {} x{} @ {}",
                fill.exec_id, fill.side, fill.local_symbol, fill.qty, fill.price,
            )

    def open_lot_for_sale(self, order_ref: str, fill_price: float, filled: int = 0) -> int:
        """The executor saw its sale fill (`filled` contracts, all of the order when 0):
        make sure the lot exists and has that size (the fill events may lag)."""
        existing = self.db.lot_by_order_ref(order_ref)
        if existing is not None:
            self._size_sale_lot(int(existing["id"]), order_ref, filled, fill_price)
            return int(existing["id"])
        order = self.db.order_by_ref(order_ref)
        if order is None:
            raise KeyError(f"no intent row for {order_ref}")
        fill = FillInfo(
            exec_id="",
            order_id=order.get("order_id") or 0,
            perm_id=0,
            order_ref=order_ref,
            con_id=order["con_id"],
            local_symbol="",
            side="SLD",
            qty=filled or order["qty"],
            price=fill_price,
            time=time.time(),
        )
        return self._open_lot_from_sale(order, fill)

    def _open_lot_from_sale(self, order: dict[str, Any], fill: FillInfo) -> int:
        from trading.pricing import exit_prices

        info = self.contract(fill.con_id) or ContractInfo(
            con_id=fill.con_id,
            symbol=self.cfg.strategy.symbol,
            sec_type="OPT",
            local_symbol=fill.local_symbol,
            multiplier=100,
        )
        tp, sl = exit_prices(
            fill.price,
            self.cfg.strategy.take_profit_ratio,
            self.cfg.strategy.stop_loss_ratio,
            info.min_tick,
        )
        trade_date = order.get("trade_date") or self._today()
        sale = parse_sale(order["order_ref"])
        entry = (sale.trade_date, sale.slot) if sale else None
        lot_id = self.db.open_lot(
            entry=entry,
            trade_date=trade_date,
            slot=entry[1] if entry else "",
            con_id=info.con_id,
            symbol=info.symbol,
            expiry=info.expiry,
            strike=info.strike,
            right=info.right or "P",
            local_symbol=info.local_symbol or fill.local_symbol,
            multiplier=info.multiplier or 100,
            qty=int(fill.qty),  # this slice; further slices grow it (_size_sale_lot)
            entry_price=fill.price,
            entry_time=fill.time,
            order_ref=order["order_ref"],
            tp_price=tp,
            sl_price=sl,
            state="unprotected",
        )
        self.log.info(
            "lot {} opened: {} x{} @ {} (TP {} SL {})",
            lot_id,
            info.local_symbol,
            fill.qty,
            fill.price,
            tp,
            sl,
        )
        return lot_id

    def _close_lot_on_exit(self, lot_id: int, role: str, fill: FillInfo) -> None:
        lot = self.db.lot(lot_id)
        if lot is None or lot["state"] == "closed":
            return
        take = exit_slice(lot["qty"], fill.qty)
        if 0 < take < lot["qty"]:
            # A slice of the exit: it closes a piece of its own (realized P&L per slice);
            # the lot keeps the rest, still protected by the OCA group's remainder.
            piece_id = self.db.split_lot(lot_id, take)
            if piece_id is not None:
                self.db.attach_fills([fill.exec_id], piece_id)
                self.log.info("lot {}: exit slice of {} at {} closes piece {}; {} left",
                              lot_id, take, fill.price, piece_id, lot["qty"] - take)
                lot_id, lot = piece_id, {**lot, "qty": take, "id": piece_id}
        commissions = sum(f.get("commission") or 0.0 for f in self.db.fills(lot_id))
        realized = pnl_math.realized_pnl(
            lot["entry_price"],
            fill.price,
            lot["qty"],
            commissions=commissions,
            multiplier=lot.get("multiplier") or 100,
        )
        reason = "take_profit" if role == "tp" else "stop_loss"
        if self.db.close_lot(lot_id, fill.price, fill.time, reason, realized):
            self.log.info(
                "lot {} closed by {} @ {}: realized {}", lot_id, reason, fill.price, realized
            )
            self.alerts.raise_alert(
                "lot_closed",
                f"lot {lot_id} {lot['local_symbol']} closed by {reason} at {fill.price}: "
                f"realized P&L {realized:+.2f}",
                severity="info",
                details={"lot_id": lot_id, "reason": reason},
            )
            self._unwatch(lot["con_id"])
            self._check_daily_loss()

    def _check_daily_loss(self) -> None:
        """Past the day's loss limit: say so once; the executor refuses entries today."""
        limit = self.cfg.risk.daily_loss_limit
        if limit <= 0:
            return
        day = self._today()
        realized = self.realized_on_date(day)
        key = f"daily_loss_limit:{day}"
        if realized > -limit or self.db.get_kv(key):
            return
        self.db.set_kv(key, realized)
        self.log.error("daily loss limit hit on {}: realized {:.2f}", day, realized)
        self.alerts.raise_alert(
            "daily_loss_limit",
            f"realized P&L {realized:+.2f} on {day} is past the daily loss limit "
            f"-{limit:.2f}: no more entries today (exits stay in place)",
            severity="error",
        )

    def _unwatch(self, con_id: int) -> None:
        if any(lot["con_id"] == con_id for lot in self.db.open_lots()):
            return
        md = self.directory.ref("market_data")
        if md is not None:
            md.proxy().unwatch([con_id])

    def apply_order(self, info: OrderInfo) -> None:
        if not info.order_ref.startswith(PREFIX):
            return
        row = self.db.order_by_ref(info.order_ref)
        if row is None:
            return
        status = _status_name(info)
        if row["status"] == "filled" and status != "filled":
            return  # a late status never undoes a fill
        error = f"{info.error_code}: {info.error_message}" if info.error_code else None
        if (
            row["status"] == status
            and (not info.order_id or row["order_id"] == info.order_id)
            and (not info.perm_id or row["perm_id"] == info.perm_id)
            and (error is None or row["error"] == error)
        ):
            # Nothing new (openOrder and orderStatus repeat each other): no durable
            # commit, which was a third of the book's time in bench.memory.
            return
        self.db.mark_order(
            info.order_ref,
            status=status,
            order_id=info.order_id or None,
            perm_id=info.perm_id or None,
            error=error,
        )

    # ---- reconciliation ----------------------------------------------------------------

    def reconcile(self) -> dict[str, int]:
        """Match the broker's executions, open orders and positions to the book."""
        conn = self.directory.ref("connection")
        if conn is None:
            return {}
        proxy = conn.proxy()
        timeout = self.cfg.gateway.request_timeout + 2
        counts = {"fills": 0, "orders": 0, "closed": 0, "imported": 0}
        try:
            fills: list[FillInfo] = proxy.executions().get(timeout=timeout)
            open_orders: list[OrderInfo] = proxy.open_orders().get(timeout=timeout)
            positions = proxy.positions().get(timeout=timeout)
        except Exception as exc:
            self.log.warning("reconciliation skipped: {}", exc)
            return counts
        return self._apply_snapshot(fills, open_orders, positions)

    def _apply_snapshot(
        self, fills: list[FillInfo], open_orders: list[OrderInfo], positions: list[Any],
        completed: list[OrderInfo] | None = None,
    ) -> dict[str, int]:
        counts = {"fills": 0, "orders": 0, "closed": 0, "imported": 0}
        for fill in sorted(fills, key=lambda f: f.time):
            before = self.db.fill_count()
            self.apply_fill(fill)
            counts["fills"] += self.db.fill_count() - before
        done_refs = self._apply_completed(completed or [])
        live_refs = set()
        for info in open_orders:
            if not info.order_ref.startswith(PREFIX):
                continue
            live_refs.add(info.order_ref)
            row = self.db.order_by_ref(info.order_ref)
            if row is None:
                continue
            self.apply_order(info)
            counts["orders"] += 1
        filled_refs = {f.order_ref for f in fills} | done_refs
        for row in self.db.orders_by_status(["intent", "sent", "submitted", "unknown"]):
            ref = row["order_ref"]
            if ref not in live_refs and ref not in filled_refs:
                self.db.mark_order(ref, status="cancelled", error="not live at the broker")
        # Open orders are known here: a lot whose exits are gone too had one fill unseen.
        counts["closed"], counts["imported"] = self._match_positions(positions, True)
        self.reconciled_at = time.time()
        self.set_kv("last_reconciled_at", self.reconciled_at)
        self.log.info("reconciled with the broker: {}", counts)
        self.directory.tell("order_executor", RepairExits("reconciled"))
        return counts

    def reconcile_positions(
        self, positions: list[Any], fills: list[FillInfo], notify: bool = True
    ) -> dict[str, int]:
        """The position check (a position update, every repair tick): our fills first,
        then lots the broker no longer holds are closed or reduced as `closed_outside`.
        Tells the executor to cancel or resize exits when something changed."""
        counts = {"fills": 0, "closed": 0, "imported": 0}
        for fill in sorted(fills, key=lambda f: f.time):
            before = self.db.fill_count()
            self.apply_fill(fill)
            counts["fills"] += self.db.fill_count() - before
        counts["closed"], counts["imported"] = self._match_positions(positions)
        if notify and (counts["closed"] or counts["imported"]):
            self.directory.tell("order_executor", RepairExits("closed_outside"))
        return counts

    # ---- queries for the dashboard ------------------------------------------------------

    def _today(self) -> str:

        return self.clock.now().astimezone(ET).date().isoformat()

    def _quotes(self, con_ids: list[int]) -> dict[int, Any]:
        # Shared by MarketData (never a call into its mailbox: a view must not wait
        # behind a subscription that waits behind the gateway).
        shared = self.directory.quotes
        return {c: shared[c] for c in con_ids if c in shared}

    def _spy(self) -> Any:
        return self.directory.quotes.get(self.directory.spy_con_id)

    # The read models live in book/views.py; the book gives them their inputs.

    def _snap(self) -> views.BookSnapshot:
        if self._views_cache is None or self._views_cache.store is not self.db:
            self._views_cache = views.SnapshotCache(self.db)
        return self._views_cache.get(self._today())

    def positions_view(self) -> dict[str, Any]:
        spy = self._spy()
        return views.positions_view(
            self._snap(), self._quotes, spy.mid if spy else None,
            self.clock.now().astimezone(ET).date(), self.started_at,
        )

    def orders_view(self) -> dict[str, Any]:
        return views.orders_view(self.db, self.contract)

    def trades_view(self) -> dict[str, Any]:
        return views.trades_view(self.db)

    def status_view(self) -> dict[str, Any]:
        d = self.directory
        link = views.LinkFacts(self.link, d.link_verified_at, d.last_message_at,
                               sorted(d.farms_broken), d.link_note)
        eng = views.EngineFacts(
            entry_times=self.cfg.schedule.entry_times,
            mode=self.cfg.gateway.mode,
            configured_account=self.cfg.gateway.account,
            warnings=self._warnings,
            started_at=self.started_at,
            clock_iso=self.clock.now().isoformat(),
            kill_switch_config=self.cfg.risk.kill_switch,
            reconciled_at=self.reconciled_at,
            alert_delivery=self.alerts.delivery_status(),
        )
        return views.status_view(self._snap(), self._spy(), self._today(), link, eng)

    def pnl_history_view(self) -> dict[str, Any]:
        return views.pnl_history_view(self.db)

    def query(self, op: str, args: dict[str, Any]) -> Any:
        views = {
            "status": self.status_view,
            "positions": self.positions_view,
            "orders": self.orders_view,
            "trades": self.trades_view,
            "pnl_history": self.pnl_history_view,
        }
        return views[op]()

    def set_paused(self, paused: bool) -> dict[str, Any]:
        self.db.set_kv("paused", paused)
        self.log.warning("trading {} by operator", "paused" if paused else "resumed")
        return {"paused": paused}

    def set_kill_switch(self, on: bool) -> dict[str, Any]:
        """Stops entries; cancels nothing: exits and repairs keep running."""
        self.db.set_kv("kill_switch", on)
        self.log.warning("kill switch {} by operator", "ON" if on else "off")
        self.alerts.raise_alert(
            "kill_switch",
            "kill switch ON: no new entries; exits stay in place"
            if on
            else "kill switch off: entries allowed again",
            severity="warning",
        )
        return {"kill_switch": on}

    def kill_switch_on(self) -> bool:
        # The config's switch cannot be turned off from outside; the operator's can.
        return self.cfg.risk.kill_switch or bool(self.db.get_kv("kill_switch", False))

    def is_paused(self) -> bool:
        return bool(self.db.get_kv("paused", False))

    def snapshot(self) -> None:
        view = self.positions_view()
        # An unknown open P&L is stored as unknown (NULL), never as 0.
        self.db.snapshot_pnl(
            self._today(), self.db.realized_total(), view["totals"]["pnl"], len(view["lots"])
        )
