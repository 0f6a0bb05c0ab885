"""Broker events on the book: fills open, size and close lots (exactly once, by
execution id), order statuses update the order rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from actors.messages import FitExits, ProtectLot
from actors.position_book.base import BookState
from trading import pnl as pnl_math
from trading.fills import exit_slice, first_contracts_vwap, sale_lot_fields, vwap
from trading.model import ContractInfo, FillInfo, OrderInfo
from trading.order_refs import is_ours
from trading.records import OrderRecord, StoredFill

if TYPE_CHECKING:
    from book.alert_rows import AlertRow


class _OrderView(NamedTuple):
    """What apply_orders compares an update with: the stored row, as a batch's earlier
    updates have marked it."""

    status: str
    order_id: int | None
    perm_id: int | None
    error: str | None


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


class FillsMixin(BookState):
    """Mixed into PositionBook."""

    if TYPE_CHECKING:  # provided by the other mixins
        def contract(self, con_id: int) -> ContractInfo | None: ...
        def _today(self) -> str: ...
        def _shares_sold(self, side: str, qty: float) -> None: ...
        def _check_daily_loss(self) -> None: ...
        def _close_announced(
            self, lot_id: int, price: float | None, when: float, reason: str,
            realized: float | None, kind: str, message: str, severity: str,
            details: dict[str, Any], estimated: str = "",
        ) -> bool: ...
        def _write_announced(
            self, kind: str, message: str, severity: str, details: dict[str, Any],
            write: Callable[[AlertRow | None], Any],
        ) -> bool: ...

    def apply_fill(self, fill: FillInfo) -> int | None:
        """Store the fill once; a sale fill opens its lot, an exit fill closes its lot."""
        if not is_ours(fill.order_ref):
            self._store_outside_fill(fill)
            return None
        order = self.db.order_by_ref(fill.order_ref)
        if order is None:
            self.log.warning("fill {} for unknown order ref {}", fill.exec_id, fill.order_ref)
            return None
        lot_id = order.lot_id
        opened = False
        if order.role == "sale" and lot_id is None:
            existing = self.db.lot_by_order_ref(fill.order_ref)
            if existing:
                lot_id = existing.id
            else:
                # The executor may open it on its own connection at this very moment
                # (it saw the order filled): only the first of the two opens it.
                lot_id, opened = self._open_sale_lot(order, fill)
                if opened:
                    # Whoever sold it may have given up already: protection must not
                    # wait for the repair tick (the executor ignores this if it placed
                    # exits).
                    self.directory.tell("order_executor", ProtectLot(lot_id, "sale fill"))
        new = self.db.add_fill(StoredFill.of(fill, lot_id))
        if not new:
            if fill.commission is not None:
                self.db.set_commission(fill.exec_id, fill.commission)  # and realized P&L
            if order.role in ("tp", "sl"):
                # Again on a repeat: a kill between the store and the close (or the
                # re-pricing) below left the lot as it was; the completed orders skip an
                # order the store marked filled. On the lot the stored fill names (a
                # slice attached to its piece closed that piece already).
                stored = next((f for f in self.db.fills_of_order(fill.order_ref)
                               if f.exec_id == fill.exec_id), None)
                at = stored.lot_id if stored is not None else lot_id
                if at is not None and not self._close_lot_on_exit(at, order.role, fill):
                    self._exit_fill_after_close(at)
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
        if order.role == "shares":
            self._shares_sold(fill.side, fill.qty)
        if order.role == "sale" and lot_id is not None and not opened:
            self._size_sale_lot(lot_id, fill.order_ref)  # a further slice of the sale
        if (order.role in ("tp", "sl") and lot_id is not None
                and not self._close_lot_on_exit(lot_id, order.role, fill)):
            self._exit_fill_after_close(lot_id)
        return lot_id

    def _exit_fill_after_close(self, lot_id: int) -> None:
        """An exit's fill stored onto a lot whose exit the engine did not price from its
        execution: an estimate (the completed orders' SL at its stop, a position check,
        a hand close priced from the quote) or unconfirmed (the completed orders' TP at
        its limit, a lot called expired). The fills are the truth: once the lot's buys
        cover it, its exit price is theirs, its reason the exit that filled, and its
        realized P&L (which the daily loss limit reads) follows. Before, the estimate
        stayed: a stop at 1.92 that filled at 32.78 after a jump read a loss of 129.30,
        not 3,215.30 (the soak, seed 14). A lot whose exit came from a fill is never
        touched (a second leg of an overfilled OCA pair is a long held, not its exit),
        nor one assigned (the shares' accounting). Idempotent: re-priced once
        (exit_estimated cleared)."""
        lot = self.db.lot(lot_id)
        if (lot is None or lot.state != "closed" or not lot.exit_estimated
                or lot.close_reason == "assigned"):
            return
        fills = self.db.fills(lot_id)
        buys = [f for f in fills if f.side == "BOT" and f.con_id == lot.con_id]
        roles = {ref: (row.role if (row := self.db.order_by_ref(ref)) else "")
                 for ref in {f.order_ref for f in buys if f.order_ref}}
        # A close that named its exit (the completed orders said which filled) is priced
        # by that exit's executions alone: the other leg of an overfilled pair may be
        # reported first, or in the same second with an exec id that sorts first.
        named = {"take_profit": "tp", "stop_loss": "sl"}.get(lot.close_reason or "")
        if named is not None:
            buys = [f for f in buys if roles.get(f.order_ref or "") == named]
        price = first_contracts_vwap(buys, lot.qty)
        if price is None:
            return  # a slice: the rest is still to come
        reason = {"tp": "take_profit", "sl": "stop_loss"}.get(
            roles.get(buys[0].order_ref or "", ""), lot.close_reason or "closed_outside")
        commissions = sum(f.commission or 0.0 for f in fills)
        realized = pnl_math.realized_pnl(lot.entry_price, price, lot.qty,
                                         commissions=commissions, multiplier=lot.mult)
        if (lot.exit_price is not None and abs(price - lot.exit_price) < 5e-5
                and reason == lot.close_reason):
            # Confirmed as it stood (a limit filled at it): nothing to tell anyone.
            if self.db.reprice_estimated_exit(lot.id, price, reason, realized):
                self.log.info("lot {}: its exit at {} confirmed by its execution", lot.id,
                              price)
            return
        how = {"take_profit": "its limit", "expired": "expired worthless"}.get(
            lot.close_reason or "", "estimated")
        was = f"{lot.close_reason} at {lot.exit_price} ({how})" + (
            f", realized {lot.realized_pnl:+.2f}" if lot.realized_pnl is not None else "")
        message = (f"lot {lot.id} {lot.local_symbol} x{lot.qty} re-priced from its exit "
                   f"fills: {reason} at {price}, realized P&L {realized:+.2f}"
                   + (" (its entry still estimated from the sale's limit)"
                      if lot.entry_estimated else "")
                   + f"; it was closed as {was}")
        details = {"lot_id": lot.id, "reason": reason, "price": price,
                   "realized_pnl": realized, "was_price": lot.exit_price,
                   "was_realized_pnl": lot.realized_pnl}
        # A loss larger than the book said is a warning; a better price, news.
        worse = lot.realized_pnl is None or realized < lot.realized_pnl
        severity = "warning" if worse else "info"
        if not self._write_announced("lot_repriced", message, severity, details, lambda row: (
                self.db.reprice_estimated_exit(lot.id, price, reason, realized, alert=row))):
            return  # re-priced meanwhile
        (self.log.warning if worse else self.log.info)(message)
        self._check_daily_loss()

    def _reprice_estimated_exits(self) -> None:
        """Every closed lot whose exit is an estimate, judged against its stored fills:
        an exit fill stored by an engine killed before it re-priced the lot, and never
        reported again (IB's executions start at its daily reset), is not left out."""
        for lot in self.db.closed_lots_with_estimated_exit():
            self._exit_fill_after_close(lot.id)

    def _size_sale_lot(self, lot_id: int, order_ref: str, qty: int = 0,
                       avg_price: float = 0.0) -> None:
        """A lot is what its sale filled, at the volume-weighted price of the slices (or
        the broker's figures for the order, `qty` at `avg_price`, when they say more than
        the slices stored so far). Exit prices follow while no exits are placed."""
        from trading.pricing import exit_prices

        lot = self.db.lot(lot_id)
        if lot is None or lot.state == "closed":
            return
        got, price = vwap(self.db.fills_of_order(order_ref))
        if qty > got:
            got, price = qty, avg_price
        elif got < lot.qty:
            # The lot was sized by the broker's figures for the whole order (the executor
            # opens it so when the order says Filled): the slices stored so far are only
            # the first of them; their price would undo the broker's average.
            return
        if got <= 0 or (got == lot.qty and abs(price - lot.entry_price) < 1e-9):
            return
        got = max(got, int(lot.qty))  # never below what a slice already made it
        tp, sl = lot.tp_price, lot.sl_price
        if not lot.tp_order_ref:
            info = self.contract(lot.con_id)
            tp, sl = exit_prices(price, self.cfg.strategy.take_profit_ratio,
                                 self.cfg.strategy.stop_loss_ratio,
                                 info.min_tick if info else 0.01)
        self.db.resize_sale_lot(lot_id, got, price, tp, sl)
        self.log.info("lot {} is {} contracts at {} (sale slices)", lot_id, got, price)
        if lot.tp_order_ref and got != lot.qty:
            # Its exits were placed for fewer: they grow with it now, not at the repair tick.
            self.directory.tell("order_executor", FitExits(lot_id))

    def _store_outside_fill(self, fill: FillInfo) -> None:
        """An execution of an order that is not ours (entered in TWS or the app): kept
        (once, by execution id) so that a lot it closed gets its real price."""
        if not fill.exec_id or fill.con_id not in {
            lot.con_id for lot in self.db.open_lots()
        }:
            return
        if self.db.add_fill(StoredFill.of(fill, None)):
            self.log.info(
                "outside fill {} {} {} x{} @ {}",
                fill.exec_id, fill.side, fill.local_symbol, fill.qty, fill.price,
            )

    def open_lot_for_sale(self, order_ref: str, fill_price: float, filled: int = 0) -> int:
        """The executor saw its sale fill (`filled` contracts, all of the order when 0):
        make sure the lot exists and has that size (the fill events may lag)."""
        existing = self.db.lot_by_order_ref(order_ref)
        if existing is not None:
            self._size_sale_lot(int(existing.id), order_ref, filled, fill_price)
            return int(existing.id)
        order = self.db.order_by_ref(order_ref)
        if order is None:
            raise KeyError(f"no intent row for {order_ref}")
        fill = FillInfo(
            exec_id="",
            order_id=order.order_id or 0,
            perm_id=0,
            order_ref=order_ref,
            con_id=order.con_id,
            local_symbol="",
            side="SLD",
            qty=filled or order.qty,
            price=fill_price,
            time=time.time(),
        )
        lot_id, opened = self._open_sale_lot(order, fill)
        if not opened:  # the executor opened it meanwhile
            self._size_sale_lot(lot_id, order_ref, filled, fill_price)
        return lot_id

    def _open_lot_from_sale(self, order: OrderRecord, fill: FillInfo,
                            entry_estimated: bool = False) -> int:
        return self._open_sale_lot(order, fill, entry_estimated)[0]

    def _open_sale_lot(self, order: OrderRecord, fill: FillInfo,
                       entry_estimated: bool = False) -> tuple[int, bool]:
        """The sale's lot, opened from `fill` unless the sale has one already (opened by
        the executor on its own connection): (lot id, opened here). `entry_estimated`:
        the fill's price is the sale's limit, not its execution's (flagged in the same
        write)."""
        info = self.contract(fill.con_id) or ContractInfo(
            con_id=fill.con_id,
            symbol=self.cfg.strategy.symbol,
            sec_type="OPT",
            local_symbol=fill.local_symbol,
            multiplier=100,
        )
        s = self.cfg.strategy
        entry, fields = sale_lot_fields(
            order.order_ref, order.trade_date or self._today(), info, int(fill.qty),
            fill.price, fill.time, s.take_profit_ratio, s.stop_loss_ratio,
            fill.local_symbol)  # this slice; further slices grow it (_size_sale_lot)
        if entry_estimated:
            fields.update(pnl_estimated=1, entry_estimated=1)
        lot, opened = self.db.open_sale_lot(entry=entry, **fields)
        if not opened:
            return lot.id, False  # the caller sizes it (a slice, or the broker's figures)
        self.log.info(
            "lot {} opened: {} x{} @ {} (TP {} SL {})",
            lot.id,
            lot.local_symbol,
            fill.qty,
            fill.price,
            lot.tp_price,
            lot.sl_price,
        )
        return lot.id, True

    def _close_lot_on_exit(self, lot_id: int, role: str, fill: FillInfo) -> bool:
        """Close the lot (or a piece of it) by its exit's fill; False if it was closed
        already."""
        lot = self.db.lot(lot_id)
        if lot is None or lot.state == "closed":
            return False
        take = exit_slice(lot.qty, fill.qty)
        if 0 < take < lot.qty:
            # A slice of the exit: it closes a piece of its own (realized P&L per slice);
            # the lot keeps the rest, still protected by the OCA group's remainder.
            piece_id = self.db.split_lot(lot_id, take)
            if piece_id is not None:
                self.db.attach_fills([fill.exec_id], piece_id)
                self.log.info("lot {}: exit slice of {} at {} closes piece {}; {} left",
                              lot_id, take, fill.price, piece_id, lot.qty - take)
                lot_id, lot = piece_id, replace(lot, qty=take, id=piece_id)
        commissions = sum(f.commission or 0.0 for f in self.db.fills(lot_id))
        realized = pnl_math.realized_pnl(
            lot.entry_price,
            fill.price,
            lot.qty,
            commissions=commissions,
            multiplier=lot.mult,
        )
        reason = "take_profit" if role == "tp" else "stop_loss"
        if not self._close_announced(
            lot_id, fill.price, fill.time, reason, realized, "lot_closed",
            f"lot {lot_id} {lot.local_symbol} closed by {reason} at {fill.price}: "
            f"realized P&L {realized:+.2f}", "info", {"lot_id": lot_id, "reason": reason},
        ):
            return False  # closed meanwhile by another path
        self.log.info("lot {} closed by {} @ {}: realized {}", lot_id, reason, fill.price,
                      realized)
        self._unwatch(lot.con_id)
        self._check_daily_loss()
        return True

    def _unwatch(self, con_id: int) -> None:
        if any(lot.con_id == con_id for lot in self.db.open_lots()):
            return
        md = self.directory.ref("market_data")
        if md is not None:
            md.proxy().unwatch([con_id])

    def apply_orders(self, infos: Sequence[OrderInfo]) -> int:
        """The broker's order updates, in order, stored in one transaction: an entry's
        exit cancels answer by the dozen at once, and a commit for each, beside the
        entry's own writes, held up its sale. Each is judged against the row as the
        earlier ones of the batch left it. Returns how many were of orders in the
        book."""
        rows: dict[str, _OrderView] = {}
        marks: list[tuple[str, dict[str, Any]]] = []
        known = 0
        for info in infos:
            if not is_ours(info.order_ref):
                continue
            row = rows.get(info.order_ref)
            if row is None:
                stored = self.db.order_by_ref(info.order_ref)
                if stored is None:
                    continue
                row = _OrderView(stored.status, stored.order_id, stored.perm_id, stored.error)
            known += 1
            status = _status_name(info)
            if row.status == "filled" and status != "filled":
                continue  # a late status never undoes a fill
            error = f"{info.error_code}: {info.error_message}" if info.error_code else None
            if (
                row.status == status
                and (not info.order_id or row.order_id == info.order_id)
                and (not info.perm_id or row.perm_id == info.perm_id)
                and (error is None or row.error == error)
            ):
                # Nothing new (openOrder and orderStatus repeat each other): no durable
                # commit, which was a third of the book's time in bench.memory.
                continue
            marks.append((info.order_ref, {"status": status, "order_id": info.order_id or None,
                                           "perm_id": info.perm_id or None, "error": error}))
            rows[info.order_ref] = _OrderView(
                status, info.order_id or row.order_id, info.perm_id or row.perm_id,
                error if error is not None else row.error)
        if marks:
            self.db.mark_orders(marks)
        return known
