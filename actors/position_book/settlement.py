"""Settlement (issue 16): expiry by OCC's rule at the expiry's real close, and exits
found filled only among the completed orders. The rules are trading/settlement.py's;
this mixin gives them the book's store, quotes and clock. Nothing here waits on the
broker: the broker's side arrives in a snapshot fetched off the book's thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors.messages import ProtectLot, RepairExits
from actors.position_book.base import BookState
from trading import pnl as pnl_math
from trading import settlement as rules
from trading.calendar import ET, TradingCalendar
from trading.freshness import stale_reason
from trading.model import FillInfo, LinkState, OrderInfo
from trading.order_refs import is_ours
from trading.records import Lot, OrderRecord

if TYPE_CHECKING:
    from book.alert_rows import AlertRow

SETTLE_POLL_SECONDS = 60.0  # position checks while an in-the-money expiry awaits the broker


def _next_open(d: Any, cal: TradingCalendar) -> datetime:
    d += timedelta(days=1)
    while not cal.is_session(d):
        d += timedelta(days=1)
    return cal.session_open_close(d)[0]


class SettlementMixin(BookState):
    """Mixed into PositionBook; also the closing helpers the other endings share."""

    _settle_polled: float = 0.0
    _stale_close_logged: set[str]  # set by PositionBook: expiries not judged yet (logged)

    if TYPE_CHECKING:  # provided by the other mixins
        def _quotes(self, con_ids: list[int]) -> dict[int, Any]: ...
        def _spy(self) -> Any: ...
        def _unwatch(self, con_id: int) -> None: ...
        def _check_daily_loss(self) -> None: ...
        def _fetch_for_reconcile(self, attempt: int, full: bool = True) -> None: ...
        def _open_lot_from_sale(self, order: OrderRecord, fill: FillInfo,
                                entry_estimated: bool = False) -> int: ...
        def contract(self, con_id: int) -> Any: ...

    def _now_ts(self) -> float:
        # The engine's clock: the daily loss limit and the P&L history count by its date.
        return float(self.clock.now().timestamp())

    def _spot(self) -> float | None:
        spy = self._spy()
        return (spy.mid or spy.last) if spy else None

    def _split(self, lot: Lot, qty: int) -> int | None:
        return self.db.split_lot(lot.id, qty) if qty < lot.qty else lot.id

    def _commissions(self, lot_id: int) -> float:
        return sum(f.commission or 0.0 for f in self.db.fills(lot_id))

    def _closed(self, lot: Lot, piece_id: int) -> None:
        if piece_id == lot.id:
            self._unwatch(lot.con_id)
        self._check_daily_loss()

    def _close_announced(
        self, lot_id: int, price: float | None, when: float, reason: str,
        realized: float | None, kind: str, message: str, severity: str,
        details: dict[str, Any], estimated: str = "",
    ) -> bool:
        """Close the lot and write the alert that announces it in one transaction: a
        crash between the two can no longer leave a closed lot nobody was told of.
        `estimated`: how far the price is a guess (Lots.close_lot), in the same write."""
        return self._write_announced(kind, message, severity, details, lambda row: (
            self.db.close_lot_with_alert(lot_id, price, when, reason, realized, row,
                                         estimated) if row is not None
            else self.db.close_lot(lot_id, price, when, reason, realized, estimated)))

    def _write_announced(
        self, kind: str, message: str, severity: str, details: dict[str, Any],
        write: Callable[[AlertRow | None], Any],
    ) -> bool:
        """A book write and the alert that announces it. `write` gets the alert's row
        (None for an alerter without an outbox in this file) and stores it in its own
        transaction, returning (alert id, folded) then; falsy when it wrote nothing, and
        then nobody is told. Without an outbox the alert is raised once the write is
        done. True when written."""
        prepare = getattr(self.alerts, "prepare", None)
        row = prepare(kind, message, severity, details) if prepare else None
        written = write(row)
        if not written:
            return False
        if row is None:
            self.alerts.raise_alert(kind, message, severity=severity, details=details)
        elif isinstance(written, tuple):
            self.alerts.announced(written[0], written[1], row)
        return True

    def _close_expired(self, lot: Lot, close: float) -> bool:
        mult = lot.mult
        realized = rules.expired_pnl(
            lot.entry_price, lot.qty, mult, self._commissions(lot.id))
        if not self._close_announced(
            lot.id, 0.0, self._now_ts(), "expired", realized, "lot_closed",
            f"lot {lot.id} {lot.local_symbol} expired worthless ({lot.symbol} "
            f"closed at {close}): realized P&L {realized:+.2f}",
            "info", {"lot_id": lot.id, "reason": "expired"},
            # A stop that filled before the close, its execution not yet applied,
            # re-prices it when that comes.
            estimated="unconfirmed",
        ):
            return False
        self.log.info("lot {} expired worthless ({} closed at {}): realized {}",
                      lot.id, lot.symbol, close, realized)
        self._closed(lot, lot.id)
        return True

    def _apply_completed(
        self, completed: list[OrderInfo], positions: list[Any] | None = None
    ) -> set[str]:
        """Orders filled while the engine was away whose executions are no longer
        reported (IB answers reqExecutions only since the daily reset): the completed
        orders still say so. An exit closes its lot at the order's own price (the TP's
        limit; the SL's stop, marked estimated); a sale the broker's short confirms
        opens its lot (then protected). Returns the refs found filled."""
        filled: set[str] = set()
        for info in completed:
            if not is_ours(info.order_ref):
                continue
            if info.status != "Filled":
                # A sale partly filled, its rest cancelled (a DAY order at the close, a
                # cancel by hand) while the engine was away: what filled is ours too.
                row = self.db.order_by_ref(info.order_ref) if info.filled > 0 else None
                if (row is not None and row.role == "sale"
                        and self.db.lot_by_order_ref(info.order_ref) is None):
                    filled.add(info.order_ref)
                    self._open_lot_from_completed(row, info, positions or [])
                continue
            row = self.db.order_by_ref(info.order_ref)
            if row is None:
                continue
            filled.add(info.order_ref)
            if row.role == "sale" and self.db.lot_by_order_ref(info.order_ref) is None:
                self._open_lot_from_completed(row, info, positions or [])
            if row.status == "filled":
                continue
            self.db.mark_order(info.order_ref, status="filled",
                               error="filled (completed orders; no execution reported)")
            lot = self.db.lot(row.lot_id) if row.lot_id else None
            if row.role not in ("tp", "sl") or lot is None or lot.state == "closed":
                continue
            role = row.role
            price = row.lmt_price if role == "tp" else row.aux_price
            if price is None:
                continue
            # The lot closes by what the exit filled (an exit sized for fewer than the
            # lot leaves the rest open; the position check sees it held).
            qty = min(int(info.filled), lot.qty) if info.filled else lot.qty
            piece_id = self._split(lot, qty)
            if piece_id is None:
                continue
            if piece_id != lot.id:
                # Its executions, if they are reported later, are the piece's: never the
                # rest's, which is still held (they would close it, or re-price it).
                self.db.mark_order(info.order_ref, lot_id=piece_id)
            realized = pnl_math.realized_pnl(
                lot.entry_price, price, qty, self._commissions(piece_id), lot.mult)
            reason = "take_profit" if role == "tp" else "stop_loss"
            part = f" ({qty} of {lot.qty}, as lot {piece_id})" if piece_id != lot.id else ""
            if not self._close_announced(
                piece_id, price, self._now_ts(), reason, realized, "lot_closed",
                f"lot {lot.id} {lot.local_symbol}{part} closed by {reason} at {price} "
                f"while the engine was away (from the completed orders): realized P&L "
                f"{realized:+.2f}" + (" (estimated from the stop)" if role == "sl" else ""),
                "info", {"lot_id": lot.id, "reason": reason},
                # A stop fills at the market: an estimate. A limit fills at it or better:
                # unconfirmed. Either is re-priced by its execution if that comes.
                estimated="exit" if role == "sl" else "unconfirmed",
            ):
                continue
            self.log.warning("lot {} closed by {} at {} from the completed orders ({} of "
                             "{})", lot.id, reason, price, qty, lot.qty)
            self._closed(lot, piece_id)
        return filled

    def _open_lot_from_completed(
        self, row: OrderRecord, info: OrderInfo, positions: list[Any],
        source: str = "the completed orders",
    ) -> None:
        """Our sale filled while the engine was away and its executions are gone (the
        daily reset): the completed order (by orderRef) and the broker's short on its
        contract make it our lot, whatever the executions say. Sized by what the
        broker holds beyond the book's lots on that contract (never more than the order
        filled); priced by the broker's average cost when the lot is the whole position,
        else by the order's limit (a floor for a sale: marked estimated)."""
        short = 0
        avg_cost = 0.0
        for p in positions:
            c = p.contract
            if c.con_id == row.con_id and c.sec_type == "OPT" and p.qty < 0:
                short += -int(p.qty)
                avg_cost = float(p.avg_cost or 0.0)
        held = sum(lot.qty for lot in self.db.open_lots() if lot.con_id == row.con_id)
        filled = int(info.filled or 0) or int(row.qty)
        qty = min(filled, short - held)
        if qty <= 0:
            self.log.warning("sale {} filled (completed orders) but the broker holds no "
                             "short for it: no lot", info.order_ref)
            return
        mult = 100
        known = self.contract(row.con_id)
        if known is not None and known.multiplier:
            mult = int(known.multiplier)
        whole = held == 0 and qty == short and avg_cost > 0
        price = round(avg_cost / mult, 4) if whole else (info.lmt_price or row.lmt_price)
        if not price:
            self.log.error("sale {} filled (completed orders) with no price known: no lot",
                           info.order_ref)
            return
        self.db.mark_order(info.order_ref, status="filled",
                           error="filled (completed orders; no execution reported)")
        fill = FillInfo(exec_id="", order_id=info.order_id or row.order_id or 0,
                        perm_id=info.perm_id, order_ref=info.order_ref, con_id=row.con_id,
                        local_symbol=info.local_symbol, side="SLD", qty=qty,
                        price=float(price), time=time.time())
        lot_id = self._open_lot_from_sale(row, fill, entry_estimated=not whole)
        how = "the broker's average cost" if whole else "its limit (estimated)"
        self.log.warning("sale {} filled while the engine was away: lot {} x{} at {} ({})",
                         info.order_ref, lot_id, qty, price, how)
        self.alerts.raise_alert(
            "entry_done",
            f"sale {info.order_ref} filled while the engine was away (found in "
            f"{source}, its execution no longer reported): lot {lot_id} "
            f"{info.local_symbol} x{qty} at {price} ({how}); exits being placed",
            severity="warning", details={"lot_id": lot_id, "order_ref": info.order_ref},
        )
        self.directory.tell("order_executor", ProtectLot(lot_id, "sale filled while away"))

    # ---- expiry ------------------------------------------------------------------------

    def _underlying_close(
        self, lot: Lot, now: datetime, cal: TradingCalendar
    ) -> tuple[float, bool] | None:
        """The underlying's price at the expiry's real close, taken from the quote on the
        first look after that close (estimated when the engine first looks after the next
        session opened). None while no quote is known."""
        key = f"underlying_close:{lot.symbol}:{lot.expiry}"
        stored = self.db.get_kv(key)
        if stored:
            return float(stored["price"]), bool(stored["estimated"])
        spy = self._spy()
        if spy is None:
            return None
        # Judged on a live quote only: a line silent since before the close keeps its
        # last value (the quote-age rule of the sale, strategy.max_quote_age).
        why = stale_reason(spy, time.time(), self.cfg.strategy.max_quote_age, lot.symbol)
        spot = (spy.mid or spy.last) if not why else None
        if spot is None:
            if key not in self._stale_close_logged:
                self._stale_close_logged.add(key)
                self.log.warning("expiry {} not judged yet: {}", key, why or "no price")
            return None
        close_at = rules.expiry_close(lot.expiry, cal)
        estimated = now.astimezone(ET) >= _next_open(close_at.date(), cal)
        self.db.set_kv(key, {"price": round(spot, 2), "estimated": estimated})
        self.log.info("{} close for expiry {}: {}{}", lot.symbol, lot.expiry,
                      round(spot, 2), " (estimated: taken after the next open)"
                      if estimated else "")
        return round(spot, 2), estimated

    def settle_expired(self, now_iso: str) -> int:
        """Lots past their expiry's real close (half days included): out of the money at
        the close -> `expired` now (its exits are cancelled); in the money -> assignment,
        seen when the broker's position changes overnight (position checks meanwhile,
        no more once every lot is settled). Never waits on the broker."""
        now = datetime.fromisoformat(now_iso)
        cal = self.calendar
        due = [lot for lot in self.db.open_lots()
               if lot.expiry and rules.past_expiry(lot.expiry, now, cal)]
        if not due:
            return 0
        closed, pending = 0, False
        for lot in due:
            close = self._underlying_close(lot, now, cal)
            if close is None:
                continue
            if rules.occ_outcome(lot.put_call, lot.strike, close[0]) == "expired":
                closed += self._close_expired(lot, close[0])
            else:
                pending = True
        if closed:
            self.directory.tell("order_executor", RepairExits("expired"))
        if (pending and self.link.state == LinkState.READY and not self._checking
                and time.monotonic() - self._settle_polled >= SETTLE_POLL_SECONDS):
            self._settle_polled = time.monotonic()
            self._fetch_for_reconcile(1, full=False)
        return closed
