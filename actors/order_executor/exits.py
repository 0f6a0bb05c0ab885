"""The exits (DESIGN "Trade lifecycle", step 5): TP and SL as one OCA group, retried;
legs whose outcome is unknown are settled by orderRef before anything else is sent; a
lot whose exits still fail is marked `unprotected` with an alert, for the repair job."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from actors.connection.loop import NotConnected
from actors.order_executor.part import ExecutorPart
from ops.backoff import backoff_delay
from trading.fills import EXIT_OCA_TYPE, remaining, sale_lot_fields
from trading.model import ContractInfo, LinkState, OrderInfo, OrderRequest
from trading.order_refs import exit_refs, lot_prefix
from trading.pricing import exit_prices, round_to_tick
from trading.records import Lot, OrderIntent
from trading.risk import OrderRefused


class ExitsMixin(ExecutorPart):
    """Mixed into OrderExecutor (which provides cfg, conn, book, intents, log, alerts …)."""

    # A lot's first pair, written with the lot: (its intents, when they were durable).
    _written_exits: dict[int, tuple[list[OrderIntent], float]]
    _exit_serial: int = 0  # the last exit pair's serial (see _exit_intents)

    if TYPE_CHECKING:  # RepairMixin's
        @staticmethod
        def _live_pair(lot: Lot, mine: list[OrderInfo]
                       ) -> tuple[OrderInfo, OrderInfo] | None: ...

    def place_exits(self, lot: Lot, contract: ContractInfo | None = None) -> bool:
        """TP (BUY LMT) and SL (BUY STP) as one OCA group; retried; alert if it fails.

        Never raises: after a sale has filled, nothing here may stop the entry from
        finishing (its bookkeeping, the watch, restoring the exits it cancelled)."""
        try:
            return self._place_exits(lot, contract)
        except Exception as exc:
            self.log.exception("placing exits for lot {} failed: {}", lot.id, exc)
            self._mark_unprotected(lot, f"error while placing exits: {exc}")
            return False

    def lot_of_sale(self, info: OrderInfo, contract: ContractInfo,
                    trade_date: str) -> tuple[Lot, bool]:
        """The lot a filled sale makes, at once: (lot, opened here). Opened on the
        executor's own connection in one transaction, not through the book's mailbox,
        which is busy storing that very fill (bench.exits: most of fill -> exits);
        the fill event may have opened it first: then it is that lot. A lot that is
        not what the broker says the order filled (its slices still arriving), or a
        sale the book must size, goes through the book as before. A lot opened here
        has its first exit pair's intents written in the same transaction (one durable
        commit between the fill and its protection): kept in `_written_exits` for
        place_exits, which sends them (or marks them never sent)."""
        s = self.cfg.strategy
        qty, price = int(info.filled), info.avg_fill_price
        if qty > 0 and price > 0 and info.con_id in (0, contract.con_id):
            entry, fields = sale_lot_fields(
                info.order_ref, trade_date, contract, qty, price, time.time(),
                s.take_profit_ratio, s.stop_loss_ratio, info.local_symbol)
            written: list[OrderIntent] = []

            def first_pair(lot: Lot) -> list[OrderIntent]:
                # Never a reason to lose the lot: a pair that cannot be built here is
                # built (and its error told) by place_exits, as for any other lot.
                try:
                    written[:] = self._exit_intents(lot, contract)
                except Exception as exc:
                    self.log.warning("lot {}: first pair not written with it: {}", lot.id,
                                     exc)
                    written.clear()
                return written

            try:
                lot, opened = self.intents.open_sale_lot(entry=entry, exits=first_pair,
                                                         **fields)
            except (KeyError, ValueError) as exc:
                self.log.warning("lot of {} left to the book: {}", info.order_ref, exc)
            else:
                if opened and written:  # its first pair is durable with it: sent next
                    self._written_exits[lot.id] = (written, time.monotonic())
                if opened or (lot.state != "closed" and lot.qty == qty
                              and abs(lot.entry_price - price) < 1e-9):
                    return lot, opened
        lot_id = self.book.open_lot_for_sale(info.order_ref, price, qty).get(timeout=self._t())
        return self.book.lot(lot_id).get(timeout=self._t()), False

    def _mark_unprotected(self, lot: Lot, why: str) -> None:
        try:
            self.book.set_lot_state(lot.id, "unprotected").get(timeout=self._t())
        except Exception as exc:  # the alert below still goes out
            self.log.error("lot {}: could not mark unprotected: {}", lot.id, exc)
        self.alerts.raise_alert(
            "lot_unprotected",
            f"lot {lot.id} {lot.local_symbol} has NO exits: {why}; "
            "the repair job keeps trying",
            severity="critical",
            details={"lot_id": lot.id},
        )

    def _settle_exit_legs(
        self, rows: list[OrderIntent], infos: list[OrderInfo]
    ) -> list[OrderInfo] | None:
        """Legs whose outcome is unknown (no ack in time, or the call itself failed) may be
        live at the broker: find out by orderRef before anything else is sent, so that
        never two pairs protect one lot. Returns each leg's known state, or None if any is
        still unknown at the deadline (a leg missing from the open orders may have
        filled or be on its way: nothing more is sent; the repair job adopts what
        appears)."""
        s = self.cfg.strategy
        known = {i.order_ref: i for i in infos}
        settled_states = ("PreSubmitted", "Submitted", "Filled", "Cancelled", "ApiCancelled",
                          "Inactive")
        deadline = time.monotonic() + s.exit_unknown_wait
        cancel_sent = False
        while True:
            try:
                broker = {o.order_ref: o for o in self.conn.open_orders().get(timeout=self._t())}
            except Exception as exc:
                self.log.warning("exit legs: open orders not available yet: {}", exc)
                broker = {}
            out: list[OrderInfo] = []
            for row in rows:
                ref = row.order_ref
                info: OrderInfo | None = broker.get(ref)
                if (info is None or info.status not in settled_states) and ref in known:
                    try:  # the session's own view of an order it sent (fills, cancels)
                        info = self.conn.wait_order(known[ref].order_id, 0.0).get(
                            timeout=self._t())
                    except Exception:
                        info = broker.get(ref) or known[ref]
                if info is not None and info.status in settled_states:
                    out.append(info)
            if len(out) == len(rows):
                return out
            if time.monotonic() >= deadline:
                if cancel_sent:
                    return None
                # Still unknown: cancel what we can name. The gateway handles a cancel
                # after the order it follows, so a slow leg cannot come alive after it.
                for ref, info in known.items():
                    if info.order_id and info.status not in settled_states:
                        try:
                            self._record(self.conn.cancel_order(info.order_id).get(
                                timeout=self._t(s.order_ack_timeout)))
                        except Exception as exc:
                            self.log.warning("cancel of unknown leg {} failed: {}", ref, exc)
                cancel_sent = True
                deadline = time.monotonic() + s.exit_unknown_wait
            time.sleep(0.1)

    def _place_exits(self, lot: Lot, contract: ContractInfo | None = None) -> bool:
        s = self.cfg.strategy
        # The first pair of a lot this executor just opened: its intents were written
        # with the lot (nothing was sent for it yet, so no pair can be live to keep).
        written, durable = self._written_exits.pop(lot.id, (None, 0.0))
        if contract is None or contract.con_id != lot.con_id:
            try:
                contract = self.book.contract(lot.con_id).get(timeout=self._t())
            except Exception:
                if written is not None:
                    self._drop_unsent(written, "not sent: the lot's contract not known")
                raise
        if written is not None and (contract is None or len(written) != 2
                                    or written[0].qty != lot.qty):
            self._drop_unsent(written, "not sent: the lot or its contract changed")
            written = None
        if contract is None:
            self.log.error(
                "lot {}: contract {} unknown, cannot place exits", lot.id, lot.con_id
            )
            return False
        if written is None and self._keep_live_pair(lot):
            return True
        last_error = ""
        for attempt in range(1, s.exit_attempts + 1):
            if attempt > 1 and self._lot_closed(lot.id):
                return True  # closed meanwhile (an exit or a hand close): nothing to protect
            if written is not None and not self._link_ready():
                # A reconnect's reconciliation may run during the wait and would mark
                # these rows "not live": they are dropped, and a fresh pair written once
                # the link is READY.
                self._drop_unsent(written, "not sent: the link was down; a new pair "
                                  "is written once it is READY")
                written = None
            if not self._wait_ready(s.exit_unknown_wait):
                # Nothing can be sent: the reconciliation at READY repairs it at once.
                self._mark_unprotected(lot, "the link to the gateway is down")
                return False
            if written is not None:  # durable since the lot's commit
                rows, written = written, None
            else:
                rows = self._exit_intents(lot, contract)
                # Both intents in one durable commit, then both orders in one round trip.
                self.intents.record_intents(rows)
                durable = time.monotonic()
            tp_ref, sl_ref, oca = rows[0].order_ref, rows[1].order_ref, rows[0].oca_group
            tp_price, sl_price = rows[0].lmt_price, rows[1].aux_price
            reqs = [
                OrderRequest(row.order_ref, contract, "BUY", row.order_type, lot.qty,
                             lmt_price=row.lmt_price, aux_price=row.aux_price,
                             oca_group=oca, oca_type=EXIT_OCA_TYPE, tif="GTC")
                for row in rows
            ]
            infos: list[OrderInfo] = []
            maybe_sent = False
            try:
                infos = self.conn.place_orders(reqs).get(timeout=self._t(s.order_ack_timeout))
            except OrderRefused as exc:
                for row in rows:
                    self.intents.mark_order(row.order_ref, status="refused", error=str(exc))
                last_error = f"refused before the broker: {exc}"
            except NotConnected as exc:  # nothing was sent: tried again once READY
                self._drop_unsent(rows, str(exc))
                last_error = f"exits: {exc}"
            except Exception as exc:  # a drop, a restarted Connection, a timeout
                last_error = f"exits: {exc}"
                maybe_sent = True
            if not maybe_sent and len(infos) != len(rows):
                # Refused before anything was sent (a guard, no connection): no leg
                # exists; tried again after the backoff.
                self.log.warning("exits for lot {} attempt {} not sent: {}", lot.id, attempt,
                                 last_error)
                if attempt < s.exit_attempts:
                    time.sleep(backoff_delay(attempt, s.exit_retry_backoff))
                continue
            if maybe_sent or any(i.status in ("Unknown", "PendingSubmit") for i in infos):
                self.log.warning("lot {}: exit legs {} / {} unacknowledged: asking the broker",
                                 lot.id, tp_ref, sl_ref)
                settled = self._settle_exit_legs(rows, infos)
                if settled is None:
                    self._mark_unprotected(
                        lot, f"exit legs {tp_ref} / {sl_ref} still unacknowledged; nothing "
                        "more is sent until the broker shows them")
                    return False
                infos = settled
            acked = time.monotonic()  # (settled: when that was known)
            placed: dict[str, OrderInfo] = {}
            for row, info in zip(rows, infos, strict=True):
                self._record(info)
                if info.is_filled or info.is_live:
                    placed[row.role] = info
                else:
                    last_error = (f"{row.role} {info.status} {info.error_code} "
                                  f"{info.error_message}")
            if any(i.is_filled for i in placed.values()):
                # Hit at once: the lot closes by that fill. A sibling that reached the
                # broker after it joined a filled OCA group: cancel it.
                self._cancel_legs([i for i in placed.values() if not i.is_filled],
                                  "leg beside a filled exit")
                return True
            if placed and self._lot_closed(lot.id):
                # A leg filled between its ack and its sibling's placement (found by
                # bench.fills): the sibling joined a filled OCA group and would rest
                # alone, an order for a closed lot. Cancel what is still live.
                self._cancel_legs(placed.values(), "leg left on a closed lot")
                return True
            if len(placed) == 2:
                self.book.set_exits(
                    lot.id,
                    tp_order_id=placed["tp"].order_id,
                    sl_order_id=placed["sl"].order_id,
                    tp_order_ref=tp_ref,
                    sl_order_ref=sl_ref,
                    oca_group=oca,
                    state="open",
                ).get(timeout=self._t())
                # The broker's part of the protection, for bench.exits' phases.
                now = time.monotonic()
                self.log.info(
                    "lot {} protected: TP {} SL {} (oca {}); acked {:.1f} ms after the "
                    "intents were durable ({:.1f} ms before this line)", lot.id, tp_price,
                    sl_price, oca, (acked - durable) * 1000.0, (now - durable) * 1000.0)
                return True
            self._cancel_legs(placed.values(), "half exit pair")  # half a pair is no protection
            self.log.warning(
                "exits for lot {} attempt {} failed: {}", lot.id, attempt, last_error
            )
            if attempt < s.exit_attempts:
                time.sleep(backoff_delay(attempt, s.exit_retry_backoff))
        self._mark_unprotected(lot, f"{s.exit_attempts} attempts failed: {last_error}")
        return False

    def _exit_intents(self, lot: Lot, contract: ContractInfo) -> list[OrderIntent]:
        """The lot's next exit pair, as its two intents (TP first, then SL; one OCA
        group), priced from the lot (or from its entry when the lot has no prices)."""
        s = self.cfg.strategy
        tp_price, sl_price = lot.tp_price, lot.sl_price
        if not tp_price or not sl_price:
            tp_price, sl_price = exit_prices(
                lot.entry_price, s.take_profit_ratio, s.stop_loss_ratio, contract.min_tick
            )
        # Milliseconds, and never the last one again: a pair dropped unsent and its
        # successor may be built within one millisecond (orderRefs are UNIQUE).
        serial = max(int(time.time() * 1000) % 10**10, self._exit_serial + 1)
        self._exit_serial = serial
        tp_ref, sl_ref, oca = exit_refs(lot.id, serial)
        legs = (
            ("tp", tp_ref, "LMT", round_to_tick(tp_price, contract.min_tick), None),
            ("sl", sl_ref, "STP", None, round_to_tick(sl_price, contract.min_tick)),
        )
        return [
            OrderIntent(order_ref=ref, role=role, con_id=lot.con_id, action="BUY",
                        order_type=otype, qty=lot.qty, lmt_price=lmt, aux_price=aux,
                        oca_group=oca, lot_id=lot.id, trade_date=lot.trade_date)
            for role, ref, otype, lmt, aux in legs
        ]

    def _drop_unsent(self, rows: list[OrderIntent], why: str) -> None:
        """Intents that were not and will not be sent: said so in the book, in one
        commit (never left for the reconciliation to guess at)."""
        self.intents.mark_orders([(row.order_ref, {"status": "cancelled", "error": why})
                                  for row in rows])

    def _link_ready(self) -> bool:
        # The Connection's own word, shared (not the book's mailbox: the exits of a
        # fresh fill must not queue behind the fill's durable writes, bench.exits).
        link = self.directory.link
        return link is not None and link.state == LinkState.READY

    def _wait_ready(self, seconds: float) -> bool:
        """The link READY within `seconds` (a drop of a second or two is waited out:
        exits sent into a dead socket only become legs of unknown fate)."""
        deadline = time.monotonic() + seconds
        while True:
            if self._link_ready():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _keep_live_pair(self, lot: Lot) -> bool:
        """Never two exit pairs for one lot: a lot that ever had exit legs (its intent
        rows say so) may have a pair live whatever the caller believes (a cancel answered
        Unknown, a resumed sale, a late fill): asked at the broker first. A live pair is
        adopted and fitted to what is held (True); lone legs are cancelled (half a pair
        is no protection) before a new pair goes out (False)."""
        if not self.intents.exit_orders_of(lot.id):
            return False  # a lot that never had exits: nothing to look up (no delay)
        try:
            mine = [o for o in self.conn.open_orders().get(timeout=self._t())
                    if o.order_ref.startswith(lot_prefix(lot.id)) and o.is_live]
        except Exception as exc:
            self.log.warning("lot {}: live exits not looked up ({}): placing", lot.id, exc)
            return False
        pair = self._live_pair(lot, mine)
        keep = {pair[0].order_id, pair[1].order_id} if pair else set()
        strays = [o for o in mine if o.order_id not in keep]
        if strays:
            self._cancel_legs(strays, "exit leg beside the lot's pair")
        if pair is None:
            return False
        tp, sl = pair
        if (lot.tp_order_ref, lot.sl_order_ref, lot.state) != (tp.order_ref, sl.order_ref,
                                                                "open"):
            self.book.set_exits(lot.id, tp_order_id=tp.order_id, sl_order_id=sl.order_id,
                                tp_order_ref=tp.order_ref, sl_order_ref=sl.order_ref,
                                oca_group=tp.oca_group, state="open").get(timeout=self._t())
        self.log.info("lot {}: its pair {} / {} is live: kept, no second pair", lot.id,
                      tp.order_ref, sl.order_ref)
        self.fit_exits(lot.id)
        return True

    def _end_sale_rest(self, lot: Lot) -> bool:
        """Cancel what still works of the sale that opened `lot` (a late fill of a sale
        the entry gave up on); the lot is sized by what it filled. True if one worked."""
        if not lot.order_ref:
            return False
        try:
            working = [o for o in self.conn.open_orders().get(timeout=self._t())
                       if o.order_ref == lot.order_ref
                       and (o.is_live or o.status == "PendingCancel")]
        except Exception as exc:
            self.log.warning("lot {}: its sale's rest not looked up: {}", lot.id, exc)
            return False
        for o in working:
            self.log.warning("lot {}: cancelling the rest of its sale {} ({} of {} filled) "
                             "before its exits", lot.id, o.order_ref, int(o.filled), int(o.qty))
            try:
                info = self.conn.cancel_order(o.order_id).get(timeout=self._t())
            except Exception as exc:
                self.log.error("cancel of the rest of {} failed: {}", o.order_ref, exc)
                continue
            self._record(info)
            if info.filled > 0:
                self.book.open_lot_for_sale(info.order_ref, info.avg_fill_price,
                                            int(info.filled)).get(timeout=self._t())
        return bool(working)

    def fit_exits(self, lot_id: int) -> bool:
        """The lot's live exit pair made to cover exactly what is held: both legs'
        quantity changed in place (same orders, same OCA group; never a second pair).
        A pair not found whole is left to the repair job. True if it fits now."""
        lot = self.book.lot(lot_id).get(timeout=self._t())
        if lot is None or lot.state == "closed" or not lot.tp_order_ref:
            return False
        refs = (lot.tp_order_ref, lot.sl_order_ref)
        try:
            legs = [o for o in self.conn.open_orders().get(timeout=self._t())
                    if o.order_ref in refs and o.is_live]
        except Exception as exc:
            self.log.warning("lot {}: exits not fitted: {}", lot_id, exc)
            return False
        if len(legs) != 2:
            return False
        if all(remaining(o.qty, o.filled) == lot.qty for o in legs):
            return True
        self.log.warning("lot {}: exits cover {} of {} held: resizing the pair in place",
                         lot_id, remaining(legs[0].qty, legs[0].filled), lot.qty)
        ok = True
        for o in legs:
            try:
                info = self.conn.modify_quantity(o.order_id, o.filled + lot.qty).get(
                    timeout=self._t())
                self._record(info)
                ok = ok and not info.is_dead
            except Exception as exc:
                self.log.error("resize of {} failed: {}", o.order_ref, exc)
                ok = False
        return ok

    def _lot_closed(self, lot_id: int) -> bool:
        # The book is asked after the last leg's ack, so a fill that came before that
        # ack on the same socket is already in the book's mailbox ahead of this ask.
        current = self.book.lot(lot_id).get(timeout=self._t())
        return current is None or current.state == "closed"

    def _cancel_legs(self, legs: Iterable[OrderInfo], what: str) -> None:
        for info in legs:
            if info.is_filled:
                continue
            try:
                self._record(self.conn.cancel_order(info.order_id).get(timeout=self._t()))
                self.log.warning("cancelled {} {}", what, info.order_ref)
            except Exception as exc:
                self.log.warning("cancel of {} {} failed: {}", what, info.order_ref, exc)
