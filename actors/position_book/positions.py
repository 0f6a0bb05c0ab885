"""The broker's positions vs the book (issues 16 and 25): lots whose contracts are gone
at the broker (closed by hand, assigned, expired, or an exit that filled unseen) and
positions the book lacks (puts sold outside the engine, stray long options)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors.position_book.base import BookState
from trading import pnl as pnl_math
from trading import settlement as rules
from trading.calendar import TradingCalendar
from trading.records import UNSETTLED_ORDER_STATUSES, Lot, StoredFill

# An assignment reaches the API as two position updates (the option's, the shares'), in
# no documented order and not always in the same message batch: a contract gone with no
# shares to explain it yet is looked at again this much later before it is taken for a
# hand close. Its exits are left as they are meanwhile, and the repair job places none
# on it (settling_contracts).
ASSIGNMENT_SETTLE_SECONDS = 2.0


class PositionsMixin(BookState):
    """Mixed into PositionBook."""

    if TYPE_CHECKING:  # provided by the other mixins
        def _quotes(self, con_ids: list[int]) -> dict[int, Any]: ...
        def _spot(self) -> float | None: ...
        def _now_ts(self) -> float: ...
        def _today(self) -> str: ...
        def _unwatch(self, con_id: int) -> None: ...
        def _check_daily_loss(self) -> None: ...
        def remember_contract(self, info: Any) -> None: ...
        def _split(self, lot: Lot, qty: int) -> int | None: ...
        def _commissions(self, lot_id: int) -> float: ...
        def _closed(self, lot: Lot, piece_id: int) -> None: ...
        def _close_expired(self, lot: Lot, close: float) -> bool: ...
        def _close_assigned(
            self, lot: Lot, qty: int, spot: float | None, estimated: bool
        ) -> bool: ...
        def _assigned_contracts(
            self, missing: dict[int, int], by_con: dict[int, list[Lot]],
            positions: list[Any],
        ) -> set[int]: ...
        def _underlying_close(
            self, lot: Lot, now: datetime, cal: TradingCalendar
        ) -> tuple[float, bool] | None: ...
        def _recheck_positions_later(self, delay: float) -> None: ...

    # ---- the broker's positions vs the book ---------------------------------------------

    def _match_positions(
        self, positions: list[Any], exits_known: bool = False
    ) -> tuple[int, int]:
        """Lots vs the broker's positions. Contracts gone at the broker end as `assigned`
        (shares of the underlying arrived at the strike, matched by quantity since the
        last check), `expired` (past expiry, out of the money), `reconciled_estimated`
        (`exits_known`: our exits are gone from the broker too, so one filled unseen) or
        `closed_outside` (by hand). A short put the book lacks was sold outside it."""
        closed = imported = 0
        broker: dict[int, Any] = {}
        for p in positions:
            c = p.contract
            if c.sec_type == "OPT" and c.symbol == self.cfg.strategy.symbol and p.qty != 0:
                broker[c.con_id] = p
        now = self.clock.now()
        cal = self.calendar
        by_con: dict[int, list[Lot]] = {}
        for lot in self.db.open_lots():
            by_con.setdefault(lot.con_id, []).append(lot)
        # A sale of ours still working may have filled in part (its lot has the full
        # size already): not a hand close.
        selling = {
            o.con_id
            for o in self.db.orders_by_status(UNSETTLED_ORDER_STATUSES)
            if o.role == "sale"
        }
        missing: dict[int, int] = {}
        for con_id, lots in by_con.items():
            if con_id in selling:
                continue
            short = max(0, -int(broker[con_id].qty)) if con_id in broker else 0
            gone = sum(lot.qty for lot in lots) - short
            if gone > 0:
                missing[con_id] = gone
        assigned = self._assigned_contracts(missing, by_con, positions)
        for con_id in self._settling(missing, assigned, by_con, now, cal, exits_known):
            del missing[con_id]
        for con_id, gone in missing.items():
            # Newest lots go first: they are the ones the operator most likely closed.
            for lot in sorted(by_con[con_id], key=lambda x: x.entry_time, reverse=True):
                if gone <= 0:
                    break
                take = min(gone, lot.qty)
                if self._close_gone(lot, take, con_id in assigned, exits_known, now, cal):
                    closed += 1
                gone -= take
        longs: set[int] = set()  # long options held now (each said once per change)
        for con_id, p in broker.items():
            c = p.contract
            book_qty = sum(lot.qty for lot in by_con.get(con_id, []))
            extra = -int(p.qty) - book_qty
            key = f"outside_position:{con_id}"
            if con_id in selling or (c.expiry and rules.past_expiry(c.expiry, now, cal)):
                continue  # an expired option stays listed until the broker settles it
            long_key = f"long_position:{con_id}"
            if p.qty > 0 and c.sec_type == "OPT":
                longs.add(con_id)
                # Nobody sold this: a BUY filled on a position that was gone (an exit
                # after an assignment or a hand close). It is risk the engine never
                # takes on by itself: said once per change, never traded.
                if self.db.get_kv(long_key) != p.qty:
                    self.db.set_kv(long_key, p.qty)
                    self.log.error("long {} x{} held, not ours", c.local_symbol, p.qty)
                    self.alerts.raise_alert(
                        "outside_position",
                        f"{c.local_symbol} x{p.qty:g} is held LONG and no lot explains it "
                        "(an exit that filled after its position was gone?): check it and "
                        "close it by hand",
                        severity="critical",
                        details={"con_id": con_id, "qty": p.qty},
                    )
            elif self.db.get_kv(long_key) is not None:
                self.db.set_kv(long_key, None)
            if extra <= 0 or c.right != "P":
                if self.db.get_kv(key) is not None:
                    self.db.set_kv(key, None)
                continue
            if not self.cfg.strategy.adopt_outside_positions:
                if self.db.get_kv(key) != extra:  # one alert per change, not per check
                    self.db.set_kv(key, extra)
                    self.log.warning("outside sale of {} x{} not adopted", c.local_symbol, extra)
                    self.alerts.raise_alert(
                        "outside_position",
                        f"{c.local_symbol} x{extra} was sold outside the engine: not adopted "
                        "(strategy.adopt_outside_positions = false), no exits placed",
                        severity="warning",
                        details={"con_id": con_id, "qty": extra},
                    )
                continue
            lot_id = self._import_position(p, extra)
            imported += 1
            self.alerts.raise_alert(
                "outside_position",
                f"{c.local_symbol} x{extra} was sold outside the engine: imported as lot "
                f"{lot_id} (unprotected, exits being placed)",
                severity="warning",
                details={"lot_id": lot_id, "con_id": con_id, "qty": extra},
            )
        self._forget_flat_longs(longs)
        return closed, imported

    def _forget_flat_longs(self, longs: set[int]) -> None:
        """A long option reported before and flat now is forgotten: held again, it is
        reported again (its alert memory is per change, not for ever)."""
        known = set(self.db.get_kv("long_positions") or [])
        for con_id in known - longs:
            self.db.set_kv(f"long_position:{con_id}", None)
        if known != longs:
            self.db.set_kv("long_positions", sorted(longs))

    def _settling(
        self, missing: dict[int, int], assigned: set[int], by_con: dict[int, list[Lot]],
        now: datetime, cal: TradingCalendar, exits_known: bool,
    ) -> set[int]:
        """The contracts gone without an explanation for less than the settle time (the
        shares of an assignment may still be on their way): left for a check a little
        later, which is asked for here. Not when the exits are known gone too (one of
        them filled unseen: an assignment leaves them working), a buy-back executed
        outside the engine, or the option expired out of the money (in the money, its
        shares are what is awaited)."""
        first_seen = self._gone_since
        for con_id in [c for c in first_seen if c not in missing or c in assigned]:
            del first_seen[con_id]
        wait: set[int] = set()
        mono = time.monotonic()
        for con_id in missing:
            lot = by_con[con_id][0]
            if con_id in assigned or self._expired_worthless(lot, now, cal) \
                    or (exits_known and self._exits_gone(lot)) \
                    or self._bought_back_outside(con_id):
                continue  # explained otherwise: a buy-back executed outside the engine
            since = first_seen.setdefault(con_id, mono)
            if mono - since < ASSIGNMENT_SETTLE_SECONDS:
                wait.add(con_id)
        if wait:
            left = ASSIGNMENT_SETTLE_SECONDS - (mono - min(first_seen[c] for c in wait))
            self._recheck_positions_later(max(0.05, left) + 0.05)
        return wait

    def _bought_back_outside(self, con_id: int) -> bool:
        """A buy on this contract executed outside the engine (a hand close)."""
        return any(f.side == "BOT" for f in self.db.outside_fills(con_id, 0.0))

    def _expired_worthless(self, lot: Lot, now: datetime, cal: TradingCalendar) -> bool:
        if not lot.expiry or not rules.past_expiry(lot.expiry, now, cal):
            return False
        close = self._underlying_close(lot, now, cal)
        return bool(close) and rules.occ_outcome(lot.put_call, lot.strike, close[0]) == (
            "expired")

    def settling_contracts(self) -> list[int]:
        """Contracts gone at the broker whose cause is still awaited (see _settling): the
        repair job places no exits on them (a BUY on a position that is gone opens one)."""
        return sorted(self._gone_since)

    def _close_gone(
        self, lot: Lot, qty: int, assigned: bool, exits_known: bool,
        now: datetime, cal: TradingCalendar,
    ) -> bool:
        expired = bool(lot.expiry) and rules.past_expiry(lot.expiry, now, cal)
        if assigned:
            if expired:
                close = self._underlying_close(lot, now, cal)
                spot, estimated = close if close else (self._spot(), True)
            else:
                spot, estimated = self._spot(), False
            return self._close_assigned(lot, qty, spot, estimated)
        has_outside = self._bought_back_outside(lot.con_id)
        if expired and not has_outside:
            close = self._underlying_close(lot, now, cal)
            if close and rules.occ_outcome(lot.put_call, lot.strike, close[0]) == (
                    "expired"):
                return self._close_expired(lot, close[0])
        if exits_known and not has_outside and self._exits_gone(lot):
            return self._close_unseen_exit(lot, qty)
        return self._close_outside(lot, qty)

    def _exits_gone(self, lot: Lot) -> bool:
        refs = [lot.tp_order_ref, lot.sl_order_ref]
        if not all(refs):
            return False  # never protected: nothing of ours could have closed it
        rows = self.db.orders_by_refs(refs)
        return len(rows) == 2 and all(r.status in ("cancelled", "filled") for r in rows)

    def _close_unseen_exit(self, lot: Lot, qty: int) -> bool:
        """The position is gone and so are our exits, and neither the executions nor the
        completed orders say which filled: estimate from the exit order that is gone."""
        piece_id = self._split(lot, qty)
        if piece_id is None:
            return False
        q = self._quotes([lot.con_id]).get(lot.con_id)
        mid = (q.mid or q.last) if q is not None else None
        role, price = rules.estimated_exit_price(lot.tp_price, lot.sl_price, mid)
        realized = (
            pnl_math.realized_pnl(lot.entry_price, price, qty,
                                  self._commissions(piece_id), lot.mult)
            if price is not None else None
        )
        if not self.db.close_lot(piece_id, price, self._now_ts(), "reconciled_estimated",
                                 realized, estimated="exit"):
            return False
        pnl = "unknown" if realized is None else f"{realized:+.2f}"
        msg = (
            f"lot {lot.id} {lot.local_symbol} x{qty} is gone at the broker and so are "
            f"its exits, but no execution or completed order shows which filled: closed as "
            f"reconciled_estimated at the {'TP limit' if role == 'tp' else 'SL stop'} "
            f"{price}, realized P&L {pnl} (estimated): please confirm from the statement"
        )
        self.log.warning(msg)
        self.alerts.raise_alert(
            "reconciled_estimated", msg, severity="warning",
            details={"lot_id": lot.id, "closed_lot_id": piece_id, "qty": qty,
                     "role": role, "price": price},
        )
        self._closed(lot, piece_id)
        return True

    def _import_position(self, p: Any, qty: int) -> int:
        from trading.pricing import exit_prices

        c = p.contract
        mult = c.multiplier or 100
        entry = round(p.avg_cost / mult, 4) if p.avg_cost else 0.0
        self.remember_contract(c)
        tp, sl = exit_prices(
            entry, self.cfg.strategy.take_profit_ratio, self.cfg.strategy.stop_loss_ratio,
            c.min_tick,
        )
        return int(self.db.open_lot(
            trade_date=self._today(), slot="", con_id=c.con_id, symbol=c.symbol,
            expiry=c.expiry, strike=c.strike, right=c.right, local_symbol=c.local_symbol,
            multiplier=mult, qty=qty, entry_price=entry, entry_time=time.time(), order_ref="",
            tp_price=tp, sl_price=sl, state="unprotected", imported=True,
        ))

    def _close_outside(self, lot: Lot, qty: int) -> bool:
        """`qty` contracts of the lot are gone at the broker: close them as
        `closed_outside`, priced by the outside execution when the engine saw it, else
        estimated from the quote now (and marked so). A part closes a split-off piece;
        the lot keeps the rest and the executor resizes its exits."""
        partial = qty < lot.qty
        piece_id = self.db.split_lot(lot.id, qty) if partial else lot.id
        if piece_id is None:
            return False
        mult = lot.mult
        outside = [
            # No time bound: they are kept only while a lot on the contract is open, and
            # a gateway on a simulated clock stamps them in its own time.
            f for f in self.db.outside_fills(lot.con_id, 0.0)
            if f.side == "BOT"
        ]
        used: list[StoredFill] = []
        got = 0.0
        for f in outside:
            if got >= qty:
                break
            used.append(f)
            got += f.qty or 0
        estimated = not used
        if used:
            price: float | None = round(
                sum(f.price * f.qty for f in used) / sum(f.qty for f in used), 4
            )
            self.db.attach_fills([f.exec_id for f in used], piece_id)
        else:
            q = self._quotes([lot.con_id]).get(lot.con_id)
            price = None
            if q is not None:
                price = q.mid or q.last or q.ask or q.bid
        commissions = sum(f.commission or 0.0 for f in self.db.fills(piece_id))
        realized = (
            pnl_math.realized_pnl(
                lot.entry_price, price, qty, commissions=commissions, multiplier=mult
            )
            if price is not None
            else None
        )
        when = used[-1].time if used else time.time()
        if not self.db.close_lot(piece_id, price, when, "closed_outside", realized,
                                 estimated="exit" if estimated else ""):
            return False
        pnl = "unknown" if realized is None else f"{realized:+.2f}"
        how = "estimated from the quote" if estimated else "from the outside execution"
        left = lot.qty - qty
        what = (
            f"{qty} of {lot.qty} contracts of lot {lot.id} {lot.local_symbol} were "
            f"closed outside the engine (as lot {piece_id}); {left} remain, exits resized"
            if partial
            else f"lot {lot.id} {lot.local_symbol} x{qty} was closed outside the "
            "engine; its exits are cancelled"
        )
        self.log.warning("{} at {}: realized {} ({})", what, price, pnl, how)
        self.alerts.raise_alert(
            "closed_outside",
            f"{what}: at {price if price is not None else '?'}, realized P&L {pnl} ({how})",
            severity="warning",
            details={"lot_id": lot.id, "closed_lot_id": piece_id, "qty": qty,
                     "estimated": estimated},
        )
        if not partial:
            self._unwatch(lot.con_id)
        self._check_daily_loss()
        return True
