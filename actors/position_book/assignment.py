"""Assignment (issue 16): shares of the underlying that explain a contract gone at the
broker close its lot `assigned`; with strategy.on_assignment = "close_shares" the
shares are queued for sale at the next open (the executor sells them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from actors.position_book.base import BookState
from actors.position_book.positions import ASSIGNMENT_SETTLE_SECONDS
from actors.position_book.settlement import _next_open
from trading import settlement as rules
from trading.calendar import ET
from trading.records import Lot

if TYPE_CHECKING:
    from book.alert_rows import AlertRow


class AssignmentMixin(BookState):
    """Mixed into PositionBook."""

    if TYPE_CHECKING:  # provided by SettlementMixin
        def _now_ts(self) -> float: ...
        def _split(self, lot: Lot, qty: int) -> int | None: ...
        def _commissions(self, lot_id: int) -> float: ...
        def _closed(self, lot: Lot, piece_id: int) -> None: ...
        def _close_announced(
            self, lot_id: int, price: float | None, when: float, reason: str,
            realized: float | None, kind: str, message: str, severity: str,
            details: dict[str, Any], estimated: str = "",
        ) -> bool: ...
        def _write_announced(
            self, kind: str, message: str, severity: str, details: dict[str, Any],
            write: Callable[[AlertRow | None], Any],
        ) -> bool: ...
        def _spot(self) -> float | None: ...
        def _check_daily_loss(self) -> None: ...

    def _stock(self, positions: list[Any]) -> rules.Shares:
        qty = cost = 0.0
        for p in positions:
            c = p.contract
            if c.sec_type == "STK" and c.symbol == self.cfg.strategy.symbol and p.qty:
                qty += p.qty
                cost += p.qty * p.avg_cost
        return rules.Shares(qty, round(cost / qty, 6) if qty else 0.0)

    def _assigned_contracts(
        self, missing: dict[int, int], by_con: dict[int, list[Lot]],
        positions: list[Any],
    ) -> set[int]:
        """The contracts whose missing quantity the new shares explain (all of them
        together, else one alone); the share count seen is remembered for the next check
        (shares that arrived earlier, or bought by hand, explain nothing)."""
        key = f"shares_seen:{self.cfg.strategy.symbol}"
        after = self._stock(positions)
        seen = self.db.get_kv(key)
        if seen is None:  # the first look: what is held now explains nothing
            self.db.set_kv(key, [after.qty, after.avg_cost])
            return set()
        before = rules.Shares(*seen)
        if before == after:
            self._shares_changed = None
            return set()
        if not missing and self._late_assignment(before, after):
            self.db.set_kv(key, [after.qty, after.avg_cost])
            self._shares_changed = None
            return set()
        if not missing:
            # Shares moved and no option is gone (yet: an assignment's option update may
            # come after its shares'): taken as the new count only once settled.
            pending = self._shares_changed
            mono = time.monotonic()
            if pending is None or pending[0] != after:
                self._shares_changed = (after, mono)
            elif mono - pending[1] >= ASSIGNMENT_SETTLE_SECONDS:
                self.db.set_kv(key, [after.qty, after.avg_cost])
                self._shares_changed = None
            return set()
        # Whatever the new shares explain below, they are counted from now on.
        self.db.set_kv(key, [after.qty, after.avg_cost])
        self._shares_changed = None

        def explains(con_ids: list[int]) -> bool:
            deliveries = []
            for cid in con_ids:
                lot = by_con[cid][0]
                sign = 1 if lot.put_call == "P" else -1
                n = sign * lot.mult * missing[cid]
                deliveries.append((float(n), float(lot.strike)))
            return rules.shares_explained(deliveries, before, after)

        ids = [c for c in missing if by_con[c][0].strike]
        if ids and explains(ids):
            return set(ids)
        for cid in ids:
            if explains([cid]):
                return {cid}
        return set()

    def _late_assignment(self, before: rules.Shares, after: rules.Shares) -> bool:
        """Shares that arrive after their option was gone long enough to be taken for a
        hand close (IB books the legs apart, sometimes seconds apart), or after it was
        called expired worthless (exercised after the close, assigned overnight): a lot
        closed `closed_outside` with no outside execution (estimated), or `expired`, in
        the last four days that these shares explain was assigned. Its close is
        corrected and announced."""
        # By the engine's clock (an expiry is closed on it); a weekend for an expiry
        # called worthless on Friday and assigned overnight.
        horizon = self._now_ts() - 4 * 86400
        candidates = [
            lot for lot in self.db.lots(["closed"])
            if ((lot.close_reason == "closed_outside" and lot.exit_estimated)
                or lot.close_reason == "expired")
            and lot.strike and (lot.exit_time or 0) >= horizon
        ]
        for lot in sorted(candidates, key=lambda x: x.exit_time or 0, reverse=True):
            sign = 1 if lot.put_call == "P" else -1
            if not rules.shares_explained(
                    [(float(sign * lot.mult * lot.qty), float(lot.strike))], before, after):
                continue
            spot = self._spot()
            value = rules.intrinsic(lot.put_call, lot.strike, spot) if spot else None
            realized = (rules.assigned_pnl(lot.entry_price, value, lot.qty, lot.mult,
                                           self._commissions(lot.id))
                        if value is not None else None)
            # The share count the alert states is the one that explained it.
            self.db.set_kv(f"shares_seen:{self.cfg.strategy.symbol}",
                           [after.qty, after.avg_cost])
            note = (" (its shares arrived after the option was gone: first taken as "
                    f"{lot.close_reason}, corrected)")
            msg, details, queue = self._assigned_alert(lot, lot.id, lot.qty, value, realized,
                                                       note)
            # The correction, its alert and the share sale it promises in one transaction:
            # a crash between them would leave the lot `assigned` (no longer a candidate),
            # the shares held, and nobody told or nothing queued.
            job = self._share_sale_job(lot.id, self.cfg.strategy.symbol, queue) if queue \
                else {}
            # (reclose_lot's next argument is the alert's row)
            if not self._write_announced("assigned", msg, "warning", details, partial(
                    self.db.reclose_lot, lot.id, value, "assigned", realized, True,
                    str(lot.close_reason), kv=job)):
                continue
            if queue:
                self.log.warning("lot {}: {} {} shares to be sold at the open", lot.id, queue,
                                 self.cfg.strategy.symbol)
            self.log.warning(msg)
            self._check_daily_loss()
            return True
        return False

    def _close_assigned(
        self, lot: Lot, qty: int, spot: float | None, estimated: bool
    ) -> bool:
        piece_id = self._split(lot, qty)
        if piece_id is None:
            return False
        mult = lot.mult
        value = rules.intrinsic(lot.put_call, lot.strike, spot) if spot else None
        realized = (
            rules.assigned_pnl(lot.entry_price, value, qty, mult,
                               self._commissions(piece_id))
            if value is not None else None
        )
        msg, details, queue = self._assigned_alert(lot, piece_id, qty, value, realized, "")
        # The close and its alert in one transaction (a crash cannot lose the alert).
        if not self._close_announced(piece_id, value, self._now_ts(), "assigned", realized,
                                     "assigned", msg, "warning", details,
                                     "exit" if estimated or value is None else ""):
            return False
        if queue:
            self._queue_share_sale(piece_id, self.cfg.strategy.symbol, queue)
        self.log.warning(msg)
        self._closed(lot, piece_id)
        return True

    def _assigned_alert(
        self, lot: Lot, piece_id: int, qty: int, value: float | None,
        realized: float | None, note: str,
    ) -> tuple[str, dict[str, Any], int]:
        """The `assigned` alert's text and details, and the shares to queue for sale
        (strategy.on_assignment = "close_shares"; 0 = none)."""
        mult = lot.mult
        symbol = self.cfg.strategy.symbol
        shares = int(mult * qty)
        held = self.db.get_kv(f"shares_seen:{symbol}") or [0, 0]
        pnl = "unknown" if realized is None else f"{realized:+.2f}"
        msg = (
            f"lot {lot.id} {lot.local_symbol} x{qty} assigned: {shares} {symbol} shares "
            f"{'bought' if lot.put_call == 'P' else 'sold'} at {lot.strike}, "
            f"{int(held[0])} {symbol} shares now held; option P&L {pnl} (intrinsic "
            f"{value if value is not None else '?'}); its exits are cancelled{note}"
        )
        queue = 0
        if self.cfg.strategy.on_assignment == "close_shares":
            queue = shares if lot.put_call == "P" else -shares
            at = self._share_sale_open()
            msg += f"; the shares will be sold at the open {at:%Y-%m-%d %H:%M} ET"
        else:
            msg += " (strategy.on_assignment = alert: the shares are left to the operator)"
        details = {"lot_id": lot.id, "closed_lot_id": piece_id, "qty": qty,
                   "shares": shares, "shares_held": held[0], "strike": lot.strike,
                   "symbol": symbol}
        return msg, details, queue

    # ---- strategy.on_assignment = "close_shares" -----------------------------------------

    def _share_sale_open(self) -> datetime:
        """The open a share sale queued now waits for (today's if still to come)."""
        now = self.clock.now().astimezone(ET)
        cal = self.calendar
        today = now.date()
        if cal.is_session(today) and now < cal.session_open_close(today)[0]:
            return cal.session_open_close(today)[0]
        return _next_open(today, cal)

    def _share_sale_job(self, lot_id: int, symbol: str, qty: int) -> dict[str, Any]:
        """The settings rows that queue a share sale (written by the caller)."""
        at = self._share_sale_open()
        return {
            f"share_sale:{lot_id}": {
                "lot_id": lot_id, "symbol": symbol, "qty": qty, "not_before": at.timestamp(),
                "state": "pending", "attempts": 1, "note": ""},
            "share_sales": sorted({*(self.db.get_kv("share_sales") or []), lot_id}),
        }

    def _queue_share_sale(self, lot_id: int, symbol: str, qty: int) -> datetime:
        at = self._share_sale_open()
        for key, value in self._share_sale_job(lot_id, symbol, qty).items():
            self.db.set_kv(key, value)
        self.log.warning("lot {}: {} {} shares to be sold at the open {:%Y-%m-%d %H:%M} ET",
                         lot_id, qty, symbol, at)
        return at

    def due_share_sales(self, now_ts: float) -> list[int]:
        """Share sales pending whose open has come (the scheduler asks every tick)."""
        due = []
        for lot_id in self.db.get_kv("share_sales") or []:
            job = self.db.get_kv(f"share_sale:{lot_id}")
            if job and job["state"] == "pending" and now_ts >= job["not_before"]:
                due.append(int(lot_id))
        return due

    def claim_share_sale(self, lot_id: int) -> dict[str, Any] | None:
        job = self.db.get_kv(f"share_sale:{lot_id}")
        if not job or job["state"] != "pending":
            return None
        job["state"] = "selling"
        self.db.set_kv(f"share_sale:{lot_id}", job)
        return dict(job)

    def finish_share_sale(
        self, lot_id: int, state: str, note: str, max_attempts: int
    ) -> dict[str, Any] | None:
        job = self.db.get_kv(f"share_sale:{lot_id}")
        if not job:
            return None
        if state == "pending" and job["attempts"] >= max_attempts:
            state = "failed"
        job.update(state=state, note=note, attempts=job["attempts"] + (state == "pending"))
        self.db.set_kv(f"share_sale:{lot_id}", job)
        if state != "pending":
            self.db.set_kv("share_sales",
                           [x for x in self.db.get_kv("share_sales") or [] if x != lot_id])
        return dict(job)

    def _shares_sold(self, side: str, qty: float) -> None:
        """A share sale of ours filled: the share count the next assignment is matched
        against moves with it (IB keeps the basis of what is left)."""
        key = f"shares_seen:{self.cfg.strategy.symbol}"
        seen = self.db.get_kv(key)
        if not seen:
            return
        left = seen[0] + (qty if side == "BOT" else -qty)
        self.db.set_kv(key, [left, seen[1] if left else 0.0])
