"""Assignment (issue 16): shares of the underlying that explain a contract gone at the
broker close its lot `assigned`; with strategy.on_assignment = "close_shares" the
shares are queued for sale at the next open (the executor sells them)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors.position_book.base import BookState
from actors.position_book.settlement import _next_open
from trading import settlement as rules
from trading.calendar import ET
from trading.records import Lot


class AssignmentMixin(BookState):
    """Mixed into PositionBook."""

    if TYPE_CHECKING:  # provided by SettlementMixin
        def _now_ts(self) -> float: ...
        def _split(self, lot: Lot, qty: int) -> int | None: ...
        def _commissions(self, lot_id: int) -> float: ...
        def _closed(self, lot: Lot, piece_id: int) -> None: ...

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
        before = rules.Shares(*seen) if seen else after
        if seen is None or (after.qty, after.avg_cost) != tuple(seen):
            self.db.set_kv(key, [after.qty, after.avg_cost])
        if not missing or before == after:
            return set()

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
        if not self.db.close_lot(piece_id, value, self._now_ts(), "assigned", realized):
            return False
        if estimated or value is None:
            self.db.mark_pnl_estimated(piece_id)
        symbol = self.cfg.strategy.symbol
        shares = int(mult * qty)
        held = self.db.get_kv(f"shares_seen:{symbol}") or [0, 0]
        pnl = "unknown" if realized is None else f"{realized:+.2f}"
        msg = (
            f"lot {lot.id} {lot.local_symbol} x{qty} assigned: {shares} {symbol} shares "
            f"{'bought' if lot.put_call == 'P' else 'sold'} at {lot.strike}, "
            f"{int(held[0])} {symbol} shares now held; option P&L {pnl} (intrinsic "
            f"{value if value is not None else '?'}); its exits are cancelled"
        )
        if self.cfg.strategy.on_assignment == "close_shares":
            at = self._queue_share_sale(
                piece_id, symbol, shares if lot.put_call == "P" else -shares)
            msg += f"; the shares will be sold at the open {at:%Y-%m-%d %H:%M} ET"
        else:
            msg += " (strategy.on_assignment = alert: the shares are left to the operator)"
        self.log.warning(msg)
        self.alerts.raise_alert(
            "assigned", msg, severity="warning",
            details={"lot_id": lot.id, "closed_lot_id": piece_id, "qty": qty,
                     "shares": shares, "shares_held": held[0], "strike": lot.strike,
                     "symbol": symbol},
        )
        self._closed(lot, piece_id)
        return True

    # ---- strategy.on_assignment = "close_shares" -----------------------------------------

    def _queue_share_sale(self, lot_id: int, symbol: str, qty: int) -> datetime:
        now = self.clock.now().astimezone(ET)
        cal = self.calendar
        today = now.date()
        if cal.is_session(today) and now < cal.session_open_close(today)[0]:
            at = cal.session_open_close(today)[0]
        else:
            at = _next_open(today, cal)
        self.db.set_kv(f"share_sale:{lot_id}", {
            "lot_id": lot_id, "symbol": symbol, "qty": qty, "not_before": at.timestamp(),
            "state": "pending", "attempts": 1, "note": ""})
        self.db.set_kv("share_sales", sorted({*(self.db.get_kv("share_sales") or []), lot_id}))
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
