"""The book's side of the endings no exit fill of ours explains (issues 16 and 25):
contracts gone at the broker (closed by hand, assigned, expired, or an exit that filled
while the engine did not see it), puts sold outside the engine, expiry by OCC's rule and
exits found only among the completed orders. The rules are trading/settlement.py's; this
mixin gives them the book's store, quotes and clock. Nothing here waits on the broker:
the broker's side arrives in a snapshot fetched off the book's thread."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from actors.messages import RepairExits
from trading import pnl as pnl_math
from trading import settlement as rules
from trading.calendar import ET, TradingCalendar
from trading.model import LinkState, OrderInfo
from trading.order_refs import PREFIX

SETTLE_POLL_SECONDS = 60.0  # position checks while an in-the-money expiry awaits the broker


def _next_open(d: Any, cal: TradingCalendar) -> datetime:
    d += timedelta(days=1)
    while not cal.is_session(d):
        d += timedelta(days=1)
    return cal.session_open_close(d)[0]


class SettlementMixin:
    """Mixed into PositionBook (which provides db, cfg, alerts, log, clock, link …)."""

    db: Any
    cfg: Any
    alerts: Any
    log: Any
    clock: Any
    link: Any
    directory: Any
    _checking: bool
    _settle_polled: float = 0.0
    calendar: TradingCalendar

    if TYPE_CHECKING:  # provided by PositionBook
        def _quotes(self, con_ids: list[int]) -> dict[int, Any]: ...
        def _spy(self) -> Any: ...
        def _unwatch(self, con_id: int) -> None: ...
        def _check_daily_loss(self) -> None: ...
        def _today(self) -> str: ...
        def remember_contract(self, info: Any) -> None: ...
        def _fetch_for_reconcile(self, attempt: int, full: bool = True) -> None: ...

    def _now_ts(self) -> float:
        # The engine's clock: the daily loss limit and the P&L history count by its date.
        return float(self.clock.now().timestamp())

    def _spot(self) -> float | None:
        spy = self._spy()
        return (spy.mid or spy.last) if spy else None

    # ---- the broker's positions vs the book ---------------------------------------------

    def _stock(self, positions: list[Any]) -> rules.Shares:
        qty = cost = 0.0
        for p in positions:
            c = p.contract
            if c.sec_type == "STK" and c.symbol == self.cfg.strategy.symbol and p.qty:
                qty += p.qty
                cost += p.qty * p.avg_cost
        return rules.Shares(qty, round(cost / qty, 6) if qty else 0.0)

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
        by_con: dict[int, list[dict[str, Any]]] = {}
        for lot in self.db.open_lots():
            by_con.setdefault(lot["con_id"], []).append(lot)
        # A sale of ours still working may have filled in part (its lot has the full
        # size already): not a hand close.
        selling = {
            o["con_id"]
            for o in self.db.orders_by_status(["intent", "sent", "submitted", "unknown"])
            if o["role"] == "sale"
        }
        missing: dict[int, int] = {}
        for con_id, lots in by_con.items():
            if con_id in selling:
                continue
            short = max(0, -int(broker[con_id].qty)) if con_id in broker else 0
            gone = sum(lot["qty"] for lot in lots) - short
            if gone > 0:
                missing[con_id] = gone
        assigned = self._assigned_contracts(missing, by_con, positions)
        for con_id, gone in missing.items():
            # Newest lots go first: they are the ones the operator most likely closed.
            for lot in sorted(by_con[con_id], key=lambda x: x["entry_time"], reverse=True):
                if gone <= 0:
                    break
                take = min(gone, lot["qty"])
                if self._close_gone(lot, take, con_id in assigned, exits_known, now, cal):
                    closed += 1
                gone -= take
        for con_id, p in broker.items():
            c = p.contract
            book_qty = sum(lot["qty"] for lot in by_con.get(con_id, []))
            extra = -int(p.qty) - book_qty
            key = f"outside_position:{con_id}"
            if con_id in selling or (c.expiry and rules.past_expiry(c.expiry, now, cal)):
                continue  # an expired option stays listed until the broker settles it
            long_key = f"long_position:{con_id}"
            if p.qty > 0 and c.sec_type == "OPT":
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
        return closed, imported

    def _assigned_contracts(
        self, missing: dict[int, int], by_con: dict[int, list[dict[str, Any]]],
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
                sign = 1 if (lot["right"] or "P") == "P" else -1
                n = sign * (lot.get("multiplier") or 100) * missing[cid]
                deliveries.append((float(n), float(lot["strike"])))
            return rules.shares_explained(deliveries, before, after)

        ids = [c for c in missing if by_con[c][0].get("strike")]
        if ids and explains(ids):
            return set(ids)
        for cid in ids:
            if explains([cid]):
                return {cid}
        return set()

    def _close_gone(
        self, lot: dict[str, Any], qty: int, assigned: bool, exits_known: bool,
        now: datetime, cal: TradingCalendar,
    ) -> bool:
        expired = bool(lot["expiry"]) and rules.past_expiry(lot["expiry"], now, cal)
        if assigned:
            if expired:
                close = self._underlying_close(lot, now, cal)
                spot, estimated = close if close else (self._spot(), True)
            else:
                spot, estimated = self._spot(), False
            return self._close_assigned(lot, qty, spot, estimated)
        has_outside = any(
            f["side"] == "BOT" for f in self.db.outside_fills(lot["con_id"], 0.0))
        if expired and not has_outside:
            close = self._underlying_close(lot, now, cal)
            if close and rules.occ_outcome(lot["right"] or "P", lot["strike"], close[0]) == (
                    "expired"):
                return self._close_expired(lot, close[0])
        if exits_known and not has_outside and self._exits_gone(lot):
            return self._close_unseen_exit(lot, qty)
        return self._close_outside(lot, qty)

    def _exits_gone(self, lot: dict[str, Any]) -> bool:
        refs = [lot.get("tp_order_ref"), lot.get("sl_order_ref")]
        if not all(refs):
            return False  # never protected: nothing of ours could have closed it
        rows = self.db.orders_by_refs(refs)
        return len(rows) == 2 and all(r["status"] in ("cancelled", "filled") for r in rows)

    def _split(self, lot: dict[str, Any], qty: int) -> int | None:
        return self.db.split_lot(lot["id"], qty) if qty < lot["qty"] else lot["id"]

    def _commissions(self, lot_id: int) -> float:
        return sum(f.get("commission") or 0.0 for f in self.db.fills(lot_id))

    def _closed(self, lot: dict[str, Any], piece_id: int) -> None:
        if piece_id == lot["id"]:
            self._unwatch(lot["con_id"])
        self._check_daily_loss()

    def _close_assigned(
        self, lot: dict[str, Any], qty: int, spot: float | None, estimated: bool
    ) -> bool:
        piece_id = self._split(lot, qty)
        if piece_id is None:
            return False
        mult = lot.get("multiplier") or 100
        value = rules.intrinsic(lot["right"] or "P", lot["strike"], spot) if spot else None
        realized = (
            rules.assigned_pnl(lot["entry_price"], value, qty, mult,
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
            f"lot {lot['id']} {lot['local_symbol']} x{qty} assigned: {shares} {symbol} shares "
            f"{'bought' if (lot['right'] or 'P') == 'P' else 'sold'} at {lot['strike']}, "
            f"{int(held[0])} {symbol} shares now held; option P&L {pnl} (intrinsic "
            f"{value if value is not None else '?'}); its exits are cancelled"
        )
        if self.cfg.strategy.on_assignment == "close_shares":
            at = self._queue_share_sale(
                piece_id, symbol, shares if (lot["right"] or "P") == "P" else -shares)
            msg += f"; the shares will be sold at the open {at:%Y-%m-%d %H:%M} ET"
        else:
            msg += " (strategy.on_assignment = alert: the shares are left to the operator)"
        self.log.warning(msg)
        self.alerts.raise_alert(
            "assigned", msg, severity="warning",
            details={"lot_id": lot["id"], "closed_lot_id": piece_id, "qty": qty,
                     "shares": shares, "shares_held": held[0], "strike": lot["strike"],
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

    def _close_expired(self, lot: dict[str, Any], close: float) -> bool:
        mult = lot.get("multiplier") or 100
        realized = rules.expired_pnl(
            lot["entry_price"], lot["qty"], mult, self._commissions(lot["id"]))
        if not self.db.close_lot(lot["id"], 0.0, self._now_ts(), "expired", realized):
            return False
        self.log.info("lot {} expired worthless ({} closed at {}): realized {}",
                      lot["id"], lot["symbol"], close, realized)
        self.alerts.raise_alert(
            "lot_closed",
            f"lot {lot['id']} {lot['local_symbol']} expired worthless ({lot['symbol']} "
            f"closed at {close}): realized P&L {realized:+.2f}",
            severity="info", details={"lot_id": lot["id"], "reason": "expired"},
        )
        self._closed(lot, lot["id"])
        return True

    def _close_unseen_exit(self, lot: dict[str, Any], qty: int) -> bool:
        """The position is gone and so are our exits, and neither the executions nor the
        completed orders say which filled: estimate from the exit order that is gone."""
        piece_id = self._split(lot, qty)
        if piece_id is None:
            return False
        q = self._quotes([lot["con_id"]]).get(lot["con_id"])
        mid = (q.mid or q.last) if q is not None else None
        role, price = rules.estimated_exit_price(lot.get("tp_price"), lot.get("sl_price"), mid)
        realized = (
            pnl_math.realized_pnl(lot["entry_price"], price, qty,
                                  self._commissions(piece_id), lot.get("multiplier") or 100)
            if price is not None else None
        )
        if not self.db.close_lot(piece_id, price, self._now_ts(), "reconciled_estimated",
                                 realized):
            return False
        self.db.mark_pnl_estimated(piece_id)
        pnl = "unknown" if realized is None else f"{realized:+.2f}"
        msg = (
            f"lot {lot['id']} {lot['local_symbol']} x{qty} is gone at the broker and so are "
            f"its exits, but no execution or completed order shows which filled: closed as "
            f"reconciled_estimated at the {'TP limit' if role == 'tp' else 'SL stop'} "
            f"{price}, realized P&L {pnl} (estimated): please confirm from the statement"
        )
        self.log.warning(msg)
        self.alerts.raise_alert(
            "reconciled_estimated", msg, severity="warning",
            details={"lot_id": lot["id"], "closed_lot_id": piece_id, "qty": qty,
                     "role": role, "price": price},
        )
        self._closed(lot, piece_id)
        return True

    def _apply_completed(self, completed: list[OrderInfo]) -> set[str]:
        """Exits filled while the engine was away whose executions are no longer
        reported (IB answers reqExecutions only since the daily reset): the completed
        orders still say so. Closed at the order's own price (the TP's limit; the SL's
        stop, marked estimated). Returns the refs found filled."""
        filled: set[str] = set()
        for info in completed:
            if not info.order_ref.startswith(PREFIX) or info.status != "Filled":
                continue
            row = self.db.order_by_ref(info.order_ref)
            if row is None:
                continue
            filled.add(info.order_ref)
            if row["status"] == "filled":
                continue
            self.db.mark_order(info.order_ref, status="filled",
                               error="filled (completed orders; no execution reported)")
            lot = self.db.lot(row["lot_id"]) if row.get("lot_id") else None
            if row["role"] not in ("tp", "sl") or lot is None or lot["state"] == "closed":
                continue
            role = row["role"]
            price = row.get("lmt_price") if role == "tp" else row.get("aux_price")
            if price is None:
                continue
            realized = pnl_math.realized_pnl(
                lot["entry_price"], price, lot["qty"], self._commissions(lot["id"]),
                lot.get("multiplier") or 100)
            reason = "take_profit" if role == "tp" else "stop_loss"
            if not self.db.close_lot(lot["id"], price, self._now_ts(), reason, realized):
                continue
            if role == "sl":
                self.db.mark_pnl_estimated(lot["id"])  # a stop fills at the market
            self.log.warning("lot {} closed by {} at {} from the completed orders",
                             lot["id"], reason, price)
            self.alerts.raise_alert(
                "lot_closed",
                f"lot {lot['id']} {lot['local_symbol']} closed by {reason} at {price} while "
                f"the engine was away (from the completed orders): realized P&L "
                f"{realized:+.2f}" + (" (estimated from the stop)" if role == "sl" else ""),
                severity="info", details={"lot_id": lot["id"], "reason": reason},
            )
            self._closed(lot, lot["id"])
        return filled

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

    # ---- expiry ------------------------------------------------------------------------

    def _underlying_close(
        self, lot: dict[str, Any], now: datetime, cal: TradingCalendar
    ) -> tuple[float, bool] | None:
        """The underlying's price at the expiry's real close, taken from the quote on the
        first look after that close (estimated when the engine first looks after the next
        session opened). None while no quote is known."""
        key = f"underlying_close:{lot['symbol']}:{lot['expiry']}"
        stored = self.db.get_kv(key)
        if stored:
            return float(stored["price"]), bool(stored["estimated"])
        spot = self._spot()
        if spot is None:
            return None
        close_at = rules.expiry_close(lot["expiry"], cal)
        estimated = now.astimezone(ET) >= _next_open(close_at.date(), cal)
        self.db.set_kv(key, {"price": round(spot, 2), "estimated": estimated})
        self.log.info("{} close for expiry {}: {}{}", lot["symbol"], lot["expiry"],
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
               if lot["expiry"] and rules.past_expiry(lot["expiry"], now, cal)]
        if not due:
            return 0
        closed, pending = 0, False
        for lot in due:
            close = self._underlying_close(lot, now, cal)
            if close is None:
                continue
            if rules.occ_outcome(lot["right"] or "P", lot["strike"], close[0]) == "expired":
                closed += self._close_expired(lot, close[0])
            else:
                pending = True
        if closed:
            self.directory.tell("order_executor", RepairExits("expired"))
        if (pending and self.link.state == LinkState.READY and not self._checking
                and time.monotonic() - self._settle_polled >= SETTLE_POLL_SECONDS):
            self._settle_polled = time.monotonic()
            self._checking = True
            self._fetch_for_reconcile(1, full=False)
        return closed
    def _close_outside(self, lot: dict[str, Any], qty: int) -> bool:
        """`qty` contracts of the lot are gone at the broker: close them as
        `closed_outside`, priced by the outside execution when the engine saw it, else
        estimated from the quote now (and marked so). A part closes a split-off piece;
        the lot keeps the rest and the executor resizes its exits."""
        partial = qty < lot["qty"]
        piece_id = self.db.split_lot(lot["id"], qty) if partial else lot["id"]
        if piece_id is None:
            return False
        mult = lot.get("multiplier") or 100
        outside = [
            # No time bound: they are kept only while a lot on the contract is open, and
            # a gateway on a simulated clock stamps them in its own time.
            f for f in self.db.outside_fills(lot["con_id"], 0.0)
            if f["side"] == "BOT"
        ]
        used: list[dict[str, Any]] = []
        got = 0.0
        for f in outside:
            if got >= qty:
                break
            used.append(f)
            got += f["qty"] or 0
        estimated = not used
        if used:
            price: float | None = round(
                sum(f["price"] * f["qty"] for f in used) / sum(f["qty"] for f in used), 4
            )
            self.db.attach_fills([f["exec_id"] for f in used], piece_id)
        else:
            q = self._quotes([lot["con_id"]]).get(lot["con_id"])
            price = None
            if q is not None:
                price = q.mid or q.last or q.ask or q.bid
        commissions = sum(f.get("commission") or 0.0 for f in self.db.fills(piece_id))
        realized = (
            pnl_math.realized_pnl(
                lot["entry_price"], price, qty, commissions=commissions, multiplier=mult
            )
            if price is not None
            else None
        )
        when = used[-1]["time"] if used else time.time()
        if not self.db.close_lot(piece_id, price, when, "closed_outside", realized):
            return False
        if estimated:
            self.db.mark_pnl_estimated(piece_id)
        pnl = "unknown" if realized is None else f"{realized:+.2f}"
        how = "estimated from the quote" if estimated else "from the outside execution"
        left = lot["qty"] - qty
        what = (
            f"{qty} of {lot['qty']} contracts of lot {lot['id']} {lot['local_symbol']} were "
            f"closed outside the engine (as lot {piece_id}); {left} remain, exits resized"
            if partial
            else f"lot {lot['id']} {lot['local_symbol']} x{qty} was closed outside the "
            "engine; its exits are cancelled"
        )
        self.log.warning("{} at {}: realized {} ({})", what, price, pnl, how)
        self.alerts.raise_alert(
            "closed_outside",
            f"{what}: at {price if price is not None else '?'}, realized P&L {pnl} ({how})",
            severity="warning",
            details={"lot_id": lot["id"], "closed_lot_id": piece_id, "qty": qty,
                     "estimated": estimated},
        )
        if not partial:
            self._unwatch(lot["con_id"])
        self._check_daily_loss()
        return True

