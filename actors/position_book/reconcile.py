"""Reconciliation: the broker's executions, open and completed orders and positions,
fetched off the book's thread, then matched to the book (a full one after every
connect; a position check when a position moved with no fill of ours)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pykka

from actors.messages import RepairExits
from actors.position_book.base import BookState
from ops.backoff import backoff_delay
from trading.model import FillInfo, LinkState, OrderInfo, PositionInfo
from trading.order_refs import is_ours
from trading.records import UNSETTLED_ORDER_STATUSES


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


class ReconcileMixin(BookState):
    """Mixed into PositionBook."""

    if TYPE_CHECKING:  # provided by PositionBook and the other mixins
        actor_ref: pykka.ActorRef[Any]
        def apply_fill(self, fill: FillInfo) -> int | None: ...
        def apply_orders(self, infos: Sequence[OrderInfo]) -> int: ...
        def _reprice_estimated_exits(self) -> None: ...
        def set_kv(self, key: str, value: Any) -> None: ...
        def _apply_completed(
            self, completed: list[OrderInfo], positions: list[Any] | None = None
        ) -> set[str]: ...
        def _match_positions(
            self, positions: list[Any], exits_known: bool = False
        ) -> tuple[int, int]: ...
        def _open_lot_from_completed(
            self, row: Any, info: OrderInfo, positions: list[Any],
            source: str = "the completed orders",
        ) -> None: ...

    def _on_position(self, pos: PositionInfo) -> None:
        """A position update no fill of ours explains: check the broker at once."""
        c = pos.contract
        if c.symbol != self.cfg.strategy.symbol or c.sec_type not in ("OPT", "STK"):
            return
        if self.link.state != LinkState.READY:
            return  # the reconciliation at READY covers it
        if c.sec_type == "STK":
            # Shares of the underlying moved: an assignment's shares may come after its
            # option leg (whenever they arrive, they are matched: _late_assignment).
            seen = self.db.get_kv(f"shares_seen:{c.symbol}")
            if seen is not None and float(seen[0]) == float(pos.qty):
                return
            if self._checking:
                self._check_again = True
                return
            self._fetch_for_reconcile(1, full=False)
            return
        book_qty = sum(lot.qty for lot in self.db.open_lots() if lot.con_id == c.con_id)
        if -int(pos.qty) == book_qty:
            return
        if self._checking:
            # The check in flight may have read the positions before this change: one
            # more check follows it (not the repair tick, minutes away).
            self._check_again = True
            return
        if self.db.get_kv(f"outside_position:{c.con_id}") == -int(pos.qty) - book_qty:
            return  # a hand sale already reported and not adopted
        self._fetch_for_reconcile(1, full=False)

    def _fetch_for_reconcile(self, attempt: int, full: bool = True) -> None:
        """Ask the broker on a helper thread, so that the dashboard's reads are not
        queued behind three gateway round trips after every reconnect; the answer
        comes back as a message and is applied only if no broker event overtook it.
        A position check (not `full`) is in flight until its snapshot comes back."""
        conn = self.directory.ref("connection")
        if not full:
            self._checking = conn is not None  # none started: the next update may ask
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

    def reconcile(self) -> dict[str, int]:
        """Match the broker's executions, open orders and positions to the book."""
        conn = self.directory.ref("connection")
        if conn is None:
            return {}
        proxy = conn.proxy()
        timeout = self.cfg.gateway.request_timeout + 2
        counts = {"fills": 0, "orders": 0, "closed": 0, "imported": 0}
        try:
            # Positions first, as the fetch asks them: a fill that moved them is then
            # among the executions (an exit filling in between is never taken for a
            # position gone unseen, closed at a guessed price).
            positions = proxy.positions().get(timeout=timeout)
            fills: list[FillInfo] = proxy.executions().get(timeout=timeout)
            open_orders: list[OrderInfo] = proxy.open_orders().get(timeout=timeout)
            completed: list[OrderInfo] = proxy.completed_orders().get(timeout=timeout)
        except Exception as exc:
            self.log.warning("reconciliation skipped: {}", exc)
            return counts
        return self._apply_snapshot(fills, open_orders, positions, completed)

    def _apply_snapshot(
        self, fills: list[FillInfo], open_orders: list[OrderInfo], positions: list[Any],
        completed: list[OrderInfo] | None = None,
    ) -> dict[str, int]:
        counts = {"fills": 0, "orders": 0, "closed": 0, "imported": 0}
        for fill in sorted(fills, key=lambda f: f.time):
            before = self.db.fill_count()
            self.apply_fill(fill)
            counts["fills"] += self.db.fill_count() - before
        done_refs = self._apply_completed(completed or [], positions)
        self._reprice_estimated_exits()  # a kill between an exit fill and its re-pricing
        live_refs = {info.order_ref for info in open_orders if is_ours(info.order_ref)}
        # One transaction, as the Connection's batches are (orders not in the book skipped).
        counts["orders"] += self.apply_orders(open_orders)
        filled_refs = {f.order_ref for f in fills} | done_refs
        filled_refs |= self._sales_shown_by_positions(live_refs, filled_refs, positions)
        for row in self.db.orders_by_status(UNSETTLED_ORDER_STATUSES):
            ref = row.order_ref
            if ref not in live_refs and ref not in filled_refs:
                self.db.mark_order(ref, status="cancelled", error="not live at the broker")
        # Open orders are known here: a lot whose exits are gone too had one fill unseen.
        counts["closed"], counts["imported"] = self._match_positions(positions, True)
        self.reconciled_at = time.time()
        self.set_kv("last_reconciled_at", self.reconciled_at)
        self.log.info("reconciled with the broker: {}", counts)
        self.directory.tell("order_executor", RepairExits("reconciled"))
        return counts

    def _sales_shown_by_positions(
        self, live_refs: set[str], filled_refs: set[str], positions: list[Any]
    ) -> set[str]:
        """Sales of ours the broker may have taken (written as an intent, sent,
        acknowledged or of unknown fate), no longer live, that neither an execution nor
        a completed order explains: past IB's daily reset both forget a fill made while
        the engine was away. A short on the sale's contract beyond the book's lots is
        then that sale: our lot (sized by what is held beyond the book, priced as
        _open_lot_from_completed says), not an outside sale. An `intent` counts: a kill
        between the send and the recorded ack leaves the row there, and the order lives
        on at IB (an API client's orders outlive its connection). Returns the refs so
        taken."""
        found: set[str] = set()
        for row in self.db.orders_by_status(UNSETTLED_ORDER_STATUSES):
            ref = row.order_ref
            if (row.role != "sale" or ref in live_refs or ref in filled_refs
                    or self.db.lot_by_order_ref(ref) is not None):
                continue
            short = sum(-int(p.qty) for p in positions if p.contract.con_id == row.con_id
                        and p.contract.sec_type == "OPT" and p.qty < 0)
            held = sum(lot.qty for lot in self.db.open_lots() if lot.con_id == row.con_id)
            if short <= held:
                continue  # nothing unexplained on its contract: it did not fill
            info = OrderInfo(
                order_id=row.order_id or 0, perm_id=row.perm_id or 0, order_ref=ref,
                con_id=row.con_id, local_symbol=next(
                    (p.contract.local_symbol for p in positions
                     if p.contract.con_id == row.con_id), ""),
                action=row.action, order_type=row.order_type, qty=float(row.qty),
                lmt_price=row.lmt_price, aux_price=row.aux_price,
                oca_group=row.oca_group or "", status="Filled")
            before = self.db.lot_by_order_ref(ref)
            self._open_lot_from_completed(row, info, positions, "the broker's position")
            if before is None and self.db.lot_by_order_ref(ref) is not None:
                found.add(ref)
        return found

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
