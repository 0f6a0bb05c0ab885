"""The repair job: finish what a crash left behind (a sale still resting, an entry left
`started`), compare the broker's positions with the book, cancel exits of closed lots,
and make every open lot protected (adopt a live pair, resize, or place it again)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from actors.order_executor.guard import EntryRefused
from actors.order_executor.part import ExecutorPart
from trading.fills import remaining
from trading.freshness import stale_reason
from trading.model import ContractInfo, LinkState, OrderInfo
from trading.order_refs import is_sale, lot_prefix, parse_exit, parse_sale, sale_prefix
from trading.records import UNSETTLED_ORDER_STATUSES, Lot
from trading.settlement import ANNOUNCED_CLOSES


class RepairMixin(ExecutorPart):
    """Mixed into OrderExecutor (which provides cfg, conn, book, log, alerts …)."""

    _lots_sold_here: set[int]
    _told_unsettled: set[tuple[str, str]]  # entries whose unsettled sale was logged

    if TYPE_CHECKING:  # provided by OrderExecutor and its other mixins
        def _watch(self, contract: ContractInfo) -> None: ...
        def _walk(self, info: OrderInfo, prices: list[float]) -> OrderInfo: ...
        def _check_trading_allowed(self) -> None: ...
        def _check_margin(self, contract: ContractInfo, price: float, spot: float) -> None: ...
        def place_exits(self, lot: Lot,
                        contract: ContractInfo | None = None) -> bool: ...
        def _cancel_legs(self, legs: Iterable[OrderInfo], what: str) -> None: ...

    def repair_exits(self, reason: str = "requested") -> dict[str, int]:
        """Finish what a crash left behind, then make every open lot protected.

        A sale still live at the broker while no entry runs was left by a previous
        run: it is resumed (re-priced at the bid) or cancelled. Then each open lot
        gets its TP+SL pair: a live pair of ours (same OCA group) is adopted, lone
        or duplicate legs are cancelled, missing ones are placed again.
        """
        if self.book.link_status().get(timeout=self._t()).state != LinkState.READY:
            return {"repaired": 0, "checked": 0}
        self._check_positions()
        try:
            live = [o for o in self.conn.open_orders().get(timeout=self._t()) if o.is_live]
        except Exception as exc:
            self.log.warning("repair skipped: {}", exc)
            return {"repaired": 0, "checked": 0}
        resumed = [o for o in live if is_sale(o.order_ref)]
        for order in resumed:
            self._resume_sale(order)
        if resumed:
            live = [o for o in self.conn.open_orders().get(timeout=self._t()) if o.is_live]
        self._release_interrupted_entries(live)
        repaired = checked = resized = 0
        open_lots = self.book.open_lots().get(timeout=self._t())
        self._cancel_legs_of_closed_lots(live, {lot.id for lot in open_lots})
        # Gone at the broker, cause not yet known (an assignment's shares on their way,
        # or a hand close): no new exits there, a BUY on a gone position opens one.
        settling = set(self.book.settling_contracts().get(timeout=self._t()))
        for lot in open_lots:
            if lot.con_id in settling:
                continue
            checked += 1
            mine = [o for o in live if o.order_ref.startswith(lot_prefix(lot.id))]
            pair = self._live_pair(lot, mine)
            current = self.book.lot(lot.id).get(timeout=self._t())
            resize = pair is not None and current is not None and any(
                remaining(o.qty, o.filled) != int(current.qty) for o in pair
            )
            if resize:
                # Part of the lot was closed by hand: the pair is cancelled and placed
                # again for what is left (one alert already said so).
                self.log.warning("lot {}: exits sized {} for {} contracts: resizing",
                                 lot.id, int(pair[0].qty), current.qty)
                pair = None
            for o in mine:
                if pair is None or o.order_id not in (pair[0].order_id, pair[1].order_id):
                    try:
                        self._record(self.conn.cancel_order(o.order_id).get(timeout=self._t()))
                    except Exception as exc:
                        self.log.warning("cancel of stray exit {} failed: {}", o.order_ref, exc)
            current = self.book.lot(lot.id).get(timeout=self._t())
            if current is None or current.state == "closed":
                continue  # a leg filled while we looked
            if pair is not None:
                tp, sl = pair
                if (current.tp_order_ref, current.sl_order_ref, current.state) != (
                    tp.order_ref,
                    sl.order_ref,
                    "open",
                ):
                    self.book.set_exits(
                        lot.id,
                        tp_order_id=tp.order_id,
                        sl_order_id=sl.order_id,
                        tp_order_ref=tp.order_ref,
                        sl_order_ref=sl.order_ref,
                        oca_group=tp.oca_group,
                        state="open",
                    ).get(timeout=self._t())
                    self.log.info(
                        "lot {}: adopted live exits {} / {}", lot.id, tp.order_ref, sl.order_ref
                    )
                continue
            if resize:
                if self.place_exits(current):
                    resized += 1
                continue
            self.log.warning("lot {} lacks live exits: repairing ({})", lot.id, reason)
            if self.place_exits(current):
                repaired += 1
        if repaired:
            self.alerts.raise_alert(
                "exits_repaired",
                f"re-placed exits of {repaired} lot(s) ({reason})",
                severity="warning",
            )
        return {"repaired": repaired, "checked": checked, "resumed_sales": len(resumed),
                "resized": resized}

    def _check_positions(self) -> None:
        """Every repair tick: the broker's positions against the book, so a put closed
        (or sold) by hand is seen even if no position update reached us. Positions are
        asked first: a fill of ours that moved them is then among the executions."""
        try:
            positions = self.conn.positions().get(timeout=self._t())
            fills = self.conn.executions().get(timeout=self._t())
            self.book.reconcile_positions(positions, fills, False).get(timeout=self._t())
        except Exception as exc:
            self.log.warning("position check skipped: {}", exc)

    def _resolve_earlier_sales(self, trade_date: str, slot: str) -> None:
        """Before an entry sells: any sale of ours the book still has unresolved (sent,
        unknown: an entry that gave up on it, another slot's) is settled at the broker
        first, so two sales never work at once (with `entry_times = []` a retry by hand
        is a new slot that _earlier_sale does not look at). A working one is cancelled
        (its entry had given it up); one that filled opens its lot and this entry is
        refused; one still unanswered makes the entry wait (EntryRefused "wait")."""
        own = sale_prefix(trade_date, slot)
        rows = [o for o in self.intents.orders_by_status(
                    UNSETTLED_ORDER_STATUSES)
                if o.role == "sale" and not o.order_ref.startswith(own)]
        # A sale of today's marked filled at its first slice may still work for the rest
        # (a cancel of the rest answered PendingCancel or Unknown): looked up too.
        # One whose stored fills cover its whole quantity has no rest left to work: not
        # asked of the broker (each ask lists every open order: ms per entry by day's end).
        partly = [o for o in self.intents.orders_by_status(["filled"])
                  if o.role == "sale" and o.trade_date == trade_date
                  and not o.order_ref.startswith(own)
                  and sum(f.qty or 0.0 for f in self.intents.fills_of_order(o.order_ref))
                  < o.qty]
        if not rows and not partly:
            return
        refs = {o.order_ref for o in rows}
        try:
            broker = {o.order_ref: o for o in self.conn.open_orders().get(timeout=self._t())
                      if o.order_ref in refs | {p.order_ref for p in partly}}
            sold = {f.order_ref for f in self.conn.executions().get(timeout=self._t())
                    if f.order_ref in refs} if rows else set()
        except Exception as exc:
            raise EntryRefused(f"cannot settle an earlier sale at the broker: {exc}",
                               "wait") from exc
        if sold:
            raise EntryRefused(f"an earlier sale filled ({', '.join(sorted(sold))}): its lot "
                               "is being opened; no second sale beside it", alert="risk_limit")
        rows += [p for p in partly if p.order_ref in broker]  # only a rest still working
        for row in rows:
            info = broker.get(row.order_ref)
            order_id = info.order_id if info is not None else (row.order_id or 0)
            if info is not None and not (info.is_live or info.status == "PendingCancel"):
                continue
            if info is None and row.status == "submitted":
                continue  # acknowledged once and no longer working: done (reconciliation's)
            if not order_id:
                continue  # never reached the gateway under an id: reconciliation's
            self.log.warning("entry {} {}: cancelling earlier sale {} first (unresolved)",
                             trade_date, slot, row.order_ref)
            try:
                done = self.conn.cancel_order(order_id).get(timeout=self._t())
            except Exception as exc:
                if info is None and "not known to this session" in str(exc):
                    continue  # a previous session's order the broker no longer lists
                raise EntryRefused(f"earlier sale {row.order_ref} not settled: {exc}",
                                   "wait") from exc
            self._record(done)
            if row.status == "filled" and done.is_dead:
                continue  # the rest of a sale whose lot holds what filled: ended now
            if done.filled > 0:
                raise EntryRefused(f"earlier sale {row.order_ref} filled "
                                   f"{int(done.filled)}: no second sale beside it",
                                   alert="risk_limit")
            if not done.is_dead:
                raise EntryRefused(f"earlier sale {row.order_ref} still unanswered "
                                   f"({done.status})", "wait")

    def _release_interrupted_entries(self, live: list[OrderInfo]) -> None:
        """Entries a dead run left 'started' with no sale live and none unsettled: the
        slot is free again.

        Runs inside this actor, so no entry of this process is between its claim and
        its end; a sale that filled has already made its entry 'done' (same
        transaction as the lot), and live sales were resumed just before.

        An entry with a sale the book has not settled yet (intent, sent, submitted,
        unknown: the full reconciliation after a connect marks each filled or
        cancelled) is left to that reconciliation: past IB's daily reset a sale that
        filled while the engine was away is neither live nor among the executions, and
        only the reconciliation (the broker's short) tells it from one never sent. A
        repair tick that beat it to the book would free the slot for a second sale.
        """
        unsettled = [o.order_ref for o in self.intents.orders_by_status(
            UNSETTLED_ORDER_STATUSES) if o.role == "sale"]
        for entry in self.book.started_entries().get(timeout=self._t()):
            prefix = sale_prefix(entry.trade_date, entry.slot)
            if any(o.order_ref.startswith(prefix) for o in live):
                continue
            waiting = [ref for ref in unsettled if ref.startswith(prefix)]
            if waiting:
                key = (entry.trade_date, entry.slot)
                if key not in self._told_unsettled:  # once per entry, not every tick
                    self._told_unsettled.add(key)
                    self.log.warning(
                        "entry {} {} stays claimed: its sale {} is not settled in the book "
                        "yet (the reconciliation after a connect settles it)",
                        entry.trade_date, entry.slot, ", ".join(waiting))
                continue
            reason = "interrupted: the engine stopped during the entry; nothing was sold"
            if self.book.interrupt_entry(entry.trade_date, entry.slot, reason).get(
                timeout=self._t()
            ):
                self.log.warning("entry {} {} {}", entry.trade_date, entry.slot, reason)
                self.alerts.raise_alert(
                    "entry_interrupted",
                    f"entry {entry.trade_date} {entry.slot} {reason}; it runs again "
                    "if its catch-up deadline has not passed",
                    severity="warning",
                )

    @staticmethod
    def _live_pair(
        lot: Lot, mine: list[OrderInfo]
    ) -> tuple[OrderInfo, OrderInfo] | None:
        """A live TP and SL of this lot in one OCA group (the lot's own pair first)."""
        groups: dict[str, dict[str, OrderInfo]] = {}
        for o in mine:
            role = o.order_ref.split(":")[2] if o.order_ref.count(":") >= 3 else ""
            if role in ("tp", "sl") and o.oca_group:
                groups.setdefault(o.oca_group, {})[role] = o
        ordered = sorted(groups, key=lambda g: g != (lot.oca_group or ""))
        for g in ordered:
            legs = groups[g]
            if "tp" in legs and "sl" in legs:
                return legs["tp"], legs["sl"]
        return None

    def _resume_refusal(self) -> str:
        """Why a leftover sale may not be resumed now ("" = it may): kill switch, pause,
        market hours and the account check, as for any entry."""
        try:
            self._check_trading_allowed()
        except EntryRefused as exc:
            return str(exc)
        return ""

    def _resume_sale(self, order: OrderInfo) -> None:
        """A previous run's sale is still resting: re-price it at the bid, else cancel."""
        sale = parse_sale(order.order_ref)
        if sale is None:
            self.log.error("resume: {} is not a sale ref of ours", order.order_ref)
            return
        trade_date, slot = sale.trade_date, sale.slot
        refusal = self._resume_refusal()
        if refusal:
            # A sale left resting is an entry like any other: the same guards hold.
            self.log.warning("sale {} left by a previous run is cancelled: {}",
                             order.order_ref, refusal)
            try:
                self._record(self.conn.cancel_order(order.order_id).get(timeout=self._t()))
            except Exception as exc:
                self.log.error("cancel of {} failed: {}", order.order_ref, exc)
            self.alerts.raise_alert(
                "risk_limit",
                f"sale {order.order_ref} left resting by a previous run was cancelled, not "
                f"resumed: {refusal}",
                severity="warning",
            )
            entry = self.book.entry(trade_date, slot).get(timeout=self._t())
            if entry is not None and entry.state == "started":
                self.book.finish_entry(trade_date, slot, "failed",
                                       f"leftover sale cancelled: {refusal}").get(
                    timeout=self._t())
            return
        self.log.warning("resuming sale {} left by a previous run", order.order_ref)
        contract: ContractInfo | None = None
        try:
            contract = self.book.contract(order.con_id).get(timeout=self._t())
            prices = self._resume_prices(order, contract)
            info = self._walk(order, prices)
        except Exception as exc:
            self.log.error("resuming {} failed: {}; cancelling", order.order_ref, exc)
            try:
                info = self.conn.cancel_order(order.order_id).get(timeout=self._t())
                self._record(info)
            except Exception as exc2:
                self.log.error("cancel of {} failed: {}", order.order_ref, exc2)
                return
        if info.is_filled or info.filled > 0:
            lot_id = self.book.open_lot_for_sale(
                info.order_ref, info.avg_fill_price, int(info.filled)
            ).get(timeout=self._t())
            self._lots_sold_here.add(lot_id)
            self.book.finish_entry(trade_date, slot, "done", "resumed sale filled", lot_id).get(
                timeout=self._t()
            )
            lot = self.book.lot(lot_id).get(timeout=self._t())
            if contract is not None:
                self._watch(contract)
            self.place_exits(lot)
            self.alerts.raise_alert(
                "entry_done",
                f"resumed sale {info.order_ref} filled at {info.avg_fill_price} (lot {lot_id})",
                severity="info",
            )
        else:
            entry = self.book.entry(trade_date, slot).get(timeout=self._t())
            if entry is not None and entry.state == "started":
                self.book.finish_entry(
                    trade_date, slot, "failed", "interrupted sale did not fill"
                ).get(timeout=self._t())

    def _resume_prices(self, order: OrderInfo, contract: ContractInfo) -> list[float]:
        """The bid a leftover sale is re-priced at, under the rules of any sale: a quote
        within strategy.max_quote_age and the broker's margin check. [] (the sale is
        then cancelled) when either says no: a silent line keeps old values."""
        max_age = self.cfg.strategy.max_quote_age
        quote = self.conn.quotes([contract], 2.0, False, max_age).get(timeout=self._t(3))[0]
        why = stale_reason(quote, time.time(), max_age, contract.local_symbol)
        if why or not quote.bid:
            self.log.warning("sale {} not re-priced: {}", order.order_ref, why or "no bid")
            return []
        d = self.directory
        spy = d.quotes.get(d.spy_con_id) if d.spy_con_id else None
        spot = (spy.mid or spy.last) if spy is not None else None
        try:
            self._check_margin(contract, quote.bid, spot or 0.0)
        except EntryRefused as exc:
            self.log.warning("sale {} not re-priced: {}", order.order_ref, exc)
            return []
        return [quote.bid]

    def _cancel_legs_of_closed_lots(self, live: list[OrderInfo], open_ids: set[int]) -> None:
        """An exit order of ours whose lot is closed protects nothing and could open a
        position if it fills: cancel it."""
        strays, outside = [], []
        for o in live:
            ref = parse_exit(o.order_ref)
            if ref is not None and ref.lot_id not in open_ids:
                lot = self.book.lot(ref.lot_id).get(timeout=self._t())
                if lot is None or lot.state != "closed":
                    continue
                # A lot closed by hand was announced with its close ("closed_outside"):
                # its exits go without a second alert.
                announced = lot.close_reason in ANNOUNCED_CLOSES  # issue 16 too
                (outside if announced else strays).append(o)
        if outside:
            self._cancel_legs(outside, "exit of a lot closed outside the engine")
        if strays:
            self._cancel_legs(strays, "exit of a closed lot")
            self.alerts.raise_alert(
                "stray_exits_cancelled",
                f"cancelled {len(strays)} exit order(s) left on closed lots: "
                + ", ".join(o.order_ref for o in strays),
                severity="warning",
            )
