"""OrderExecutor: the trade lifecycle, one trade at a time (DESIGN "Trade lifecycle").

1. preconditions  2. choose the put  3. cancel our resting exits on that contract
(IB rejects a sale that could trade against our own BUY orders) and remember
them  4. sell with a limit walked from the mid toward the bid, a bounded number
of attempts, restoring the cancelled exits after each failed attempt  5. the
fill is the point of no return: place TP and SL as one OCA group (retried),
restore the cancelled exits; exits that still fail leave the lot `unprotected`
with an alert, for the repair job.

Every intent is written to the book before the broker hears of it, and every
order carries an `orderRef` naming its lot and role, so that a restart can tell
what was ours and finish what a crash interrupted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import asdict
from typing import Any

import pykka
from loguru import logger

from actors.context import EngineContext
from actors.messages import (
    EntryPrepared,
    EntryResult,
    FitExits,
    PrepareEntry,
    ProtectLot,
    RepairExits,
    RunEntry,
    SellShares,
)
from actors.order_executor.entry_prep import PreparedEntry, prepare, release
from actors.order_executor.exits import ExitsMixin
from actors.order_executor.guard import EntryRefused, GuardMixin
from actors.order_executor.repair import RepairMixin
from actors.order_executor.sale import ExitCancels, SaleMixin
from actors.order_executor.share_sale import sell_shares
from actors.supervisor import SupervisedActor
from book.store import Store
from trading.calendar import ET
from trading.model import ContractInfo, LinkState, OrderInfo
from trading.records import OrderIntent
from trading.steps import Steps


class OrderExecutor(GuardMixin, SaleMixin, ExitsMixin, RepairMixin, SupervisedActor):
    name = "order_executor"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.calendar = ctx.calendar
        self.busy = False
        self._lots_sold_here: set[int] = set()  # lots this executor protects itself
        self._prepared: PreparedEntry | None = None  # the next slot's lookups and lines
        self._preparing = False  # a preparation runs on its own thread
        self._steps: Steps | None = None  # the sale's preparation, timed (bench.entry)
        self._cancels: ExitCancels | None = None  # exit cancels sent before a sale
        self._remembered: Any = None  # the book's answer to remember_contract
        self._lookups: tuple[Any, Any] | None = None  # the broker asked ahead of a sale
        self._quote_asked: Any = None  # the sale's quote asked ahead (its first attempt)
        self._unrecorded: list[OrderInfo] = []  # cancel answers for the book, after the sale
        # A lot's first exit pair, written with the lot (lot_of_sale), sent by place_exits.
        self._written_exits: dict[int, tuple[list[OrderIntent], float]] = {}
        self._told_unsettled: set[tuple[str, str]] = set()

    def on_start(self) -> None:
        self.log = logger.bind(actor=self.name)
        # Intents are written here, on the executor's own SQLite connection: through the
        # book's mailbox each waited behind the sale fill's own durable writes (bench.exits:
        # most of fill -> exits). Durable before the order is sent, as before.
        self.intents = Store(self.cfg.storage.path)
        # A repair of its own at start: the book's reconciliation after a connect tells
        # this actor to repair, and a fast gateway is READY (and reconciled) before this
        # actor has started, or while the Supervisor restarts it: that tell was dropped,
        # and a leftover sale or a lot without exits waited for the next repair tick
        # (schedule.repair_interval, a minute). Nothing is done unless the link is READY.
        self.actor_ref.tell(RepairExits("started"))

    def on_stop(self) -> None:
        self.intents.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self.intents.close()  # the supervisor starts a new executor with its own
        super().on_failure(exception_type, exception_value, traceback)

    # ---- plumbing ----------------------------------------------------------------------

    @property
    def conn(self) -> Any:
        return self.directory.proxy("connection")

    @property
    def book(self) -> Any:
        return self.directory.proxy("position_book")

    def _t(self, extra: float = 0.0) -> float:
        return self.cfg.gateway.request_timeout + 5.0 + extra

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, RunEntry):
            self.run_entry(message.trade_date, message.slot, message.manual)
        elif isinstance(message, RepairExits):
            self.repair_exits(message.reason)
        elif isinstance(message, ProtectLot):
            self.protect_lot(message.lot_id, message.reason)
        elif isinstance(message, FitExits):
            self.fit_exits(message.lot_id)
        elif isinstance(message, PrepareEntry):
            self.prepare_entry(message.trade_date, message.slot)
        elif isinstance(message, EntryPrepared):
            self._entry_prepared(message)
        elif isinstance(message, SellShares):
            sell_shares(self, message.lot_id)  # share_sale.py (issue 16)
        return None

    def prepare_entry(self, trade_date: str, slot: str) -> bool:
        """Best effort: a preparation that fails costs nothing but the time it saves."""
        link = self.book.link_status().get(timeout=self._t())
        if link.state != LinkState.READY or self.busy:
            return False
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        if entry is not None and entry.state not in ("interrupted",):
            return False  # done, failed, skipped or running: nothing to prepare
        d = self.directory
        spy = d.quotes.get(d.spy_con_id) if d.spy_con_id else None
        spot = (spy.mid or spy.last) if spy is not None else None
        if not spot:
            return False
        if self._preparing:
            return False
        # Off this thread: the lookups and line openings take seconds (tens on a slow
        # gateway), and a late fill's ProtectLot must not wait behind them.
        self._preparing = True
        conn, strategy, timeout, me = self.conn, self.cfg.strategy, self._t(), self.actor_ref

        def work() -> None:
            try:
                done = prepare(conn, strategy, trade_date, slot, spot, timeout)
                message = EntryPrepared(trade_date, slot, done)
            except Exception as exc:
                message = EntryPrepared(trade_date, slot, None, str(exc))
            with contextlib.suppress(pykka.ActorDeadError):
                me.tell(message)

        threading.Thread(target=work, name="entry-prep", daemon=True).start()
        return True

    def _entry_prepared(self, message: EntryPrepared) -> None:
        """A preparation came back: kept for its slot, unless the slot ran meanwhile."""
        self._preparing = False
        trade_date, slot, prepared = message.trade_date, message.slot, message.prepared
        if prepared is None:
            self.log.warning("entry {} {} not prepared: {}", trade_date, slot, message.error)
            return
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        if self.busy or (entry is not None and entry.state != "interrupted"):
            self._release_prepared()
            self._prepared = prepared
            self._release_prepared()  # the slot ran (or runs) without it: lines closed
            return
        self._release_prepared()
        self._prepared = prepared
        self.log.info("entry {} {} prepared: {} candidate lines open", trade_date, slot,
                      len(prepared.contracts))

    def _release_prepared(self) -> None:
        if self._prepared is None:
            return
        prepared, self._prepared = self._prepared, None
        try:
            held = {c.con_id for c in self.book.held_contracts().get(timeout=self._t())}
            release(self.conn, prepared, held)
        except Exception as exc:  # the lines close with the next session at worst
            self.log.warning("prepared lines not released: {}", exc)

    def protect_lot(self, lot_id: int, reason: str) -> bool:
        """Exits at once for a lot a sale fill opened behind the entry's back (the walk
        had given up, or the sale's ack never came): seconds, not the next repair tick."""
        if lot_id in self._lots_sold_here:
            return False  # the entry that sold it protected it (or alerted and repairs)
        lot = self.book.lot(lot_id).get(timeout=self._t())
        if lot is None or lot.state != "unprotected" or lot.tp_order_ref:
            return False  # closed, or protected already
        self.log.warning("lot {} opened by a late {}: placing its exits now", lot_id, reason)
        # IB takes no BUY beside our SELL still working on the same contract: the rest of
        # a sale the entry gave up on is cancelled first, and the lot is what filled.
        self._wait_ready(self.cfg.strategy.exit_unknown_wait)
        if self._end_sale_rest(lot):
            lot = self.book.lot(lot_id).get(timeout=self._t())
            if lot is None or lot.state != "unprotected" or lot.tp_order_ref:
                return False
        protected = self.place_exits(lot)
        if protected:
            self.fit_exits(lot_id)  # a slice that raced the cancel grew the lot
        contract = self.book.contract(lot.con_id).get(timeout=self._t())
        if contract is not None:
            self._watch(contract)  # its quote and P&L, as for a lot the entry opened
        if protected:
            self.alerts.raise_alert(
                "late_fill_protected",
                f"lot {lot_id} {lot.local_symbol}: the sale filled after the entry gave up "
                f"({reason}); its exits are placed (TP {lot.tp_price} SL {lot.sl_price})",
                severity="warning",
                details={"lot_id": lot_id},
            )
        return protected

    def today(self) -> str:
        return self.clock.now().astimezone(ET).date().isoformat()

    # ---- entry -------------------------------------------------------------------------

    def first_open_slot(self, trade_date: str) -> str:
        if not self.cfg.schedule.entry_times:
            # Entries by hand only: the slot is the minute of the request (ET).
            return f"{self.clock.now().astimezone(ET):%H:%M}"
        entries = {e.slot: e for e in self.book.entries(trade_date).get(timeout=self._t())}
        for slot in self.cfg.schedule.entry_times:
            if slot not in entries:
                return slot
        for slot in self.cfg.schedule.entry_times:
            if entries[slot].state in ("interrupted", "missed", "failed"):
                return slot
        return self.cfg.schedule.entry_times[0]

    def enter_now(self, slot: str | None = None, deadline: float | None = None) -> dict[str, Any]:
        """The day's entry by hand: same guards as the schedule; runs in the background.

        `deadline` (epoch seconds): the asker stops waiting then. A command that waited in
        the mailbox behind a running entry past it is refused, never run late."""
        if deadline is not None and time.time() > deadline:
            self.log.warning("enter_now refused: it waited past its deadline")
            return asdict(EntryResult(False, "expired",
                                      "the command waited past its deadline (an entry was "
                                      "running); nothing was started: send it again"))
        if self.busy:
            return asdict(EntryResult(False, "busy", "an entry is already running"))
        trade_date = self.today()
        slot = slot or self.first_open_slot(trade_date)
        try:
            self.check_preconditions(trade_date, slot, manual=True)
        except EntryRefused as exc:
            self._alert_refusal(trade_date, slot, exc)
            return asdict(EntryResult(False, "refused", str(exc)))
        self.busy = True
        self.actor_ref.tell(RunEntry(trade_date, slot, manual=True))
        return asdict(EntryResult(True, "started", f"entry {trade_date} {slot} started"))

    def _alert_refusal(self, trade_date: str, slot: str, exc: EntryRefused) -> None:
        """A refusal by hand that the operator must hear of even when nobody watches the
        dashboard (the account check): the schedule's refusals alert on their own."""
        if exc.refusal is not None:
            self._alert_ib(exc)
        elif exc.alert:
            self.alerts.raise_alert(exc.alert, f"entry {trade_date} {slot} refused: {exc}")

    def _alert_ib(self, exc: EntryRefused) -> None:
        """IB's refusal behind an entry's outcome: one `ib_refused` alert per cause and
        day (Connection may have sent it already), never one per retry."""
        if exc.refusal is not None:
            self.directory.refusals.alert_once(self.alerts, exc.refusal,
                                               self.clock.now().astimezone(ET).date())

    def run_entry(self, trade_date: str, slot: str, manual: bool = False) -> EntryResult:
        self.busy = True
        try:
            return self._run_entry(trade_date, slot, manual)
        finally:
            self.busy = False
            self._exits_cancelled()  # answered and recorded on every path
            self._record_cancels()
            self._steps = self._remembered = self._lookups = self._quote_asked = None
            self._release_prepared()

    def _claim(self, trade_date: str, slot: str, manual: bool) -> bool:
        if self.book.start_entry(trade_date, slot).get(timeout=self._t()):
            return True
        if self.book.reclaim_entry(trade_date, slot).get(timeout=self._t()):
            return True  # a run that died before selling anything
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        if manual and entry and entry.state in ("missed", "failed"):
            self.book.finish_entry(trade_date, slot, "started", "manual entry").get(
                timeout=self._t()
            )
            return True
        return False

    def _run_entry(self, trade_date: str, slot: str, manual: bool) -> EntryResult:
        log = self.log
        try:
            self.check_preconditions(trade_date, slot, manual)
        except EntryRefused as exc:
            if exc.kind == "done":
                return EntryResult(False, "refused", str(exc))
            log.warning("entry {} {} refused: {}", trade_date, slot, exc)
            if exc.kind == "skip" and not manual and self._claim(trade_date, slot, False):
                # Recorded once, so the schedule does not ask (and alert) again.
                self.book.finish_entry(trade_date, slot, "skipped", str(exc)).get(timeout=self._t())
                if exc.refusal is not None:
                    self._alert_ib(exc)
                else:
                    self.alerts.raise_alert("risk_limit",
                                            f"entry {trade_date} {slot} skipped: {exc}")
            elif manual:
                self._alert_refusal(trade_date, slot, exc)
            return EntryResult(False, "refused", str(exc))
        if not self._claim(trade_date, slot, manual):
            return EntryResult(False, "refused", f"entry {trade_date} {slot} already claimed")
        log.info("entry {} {} started ({})", trade_date, slot, "manual" if manual else "schedule")
        try:
            self._resolve_earlier_sales(trade_date, slot)
            contract, quote, spot = self._choose_contract(trade_date)
            self._check_not_held_long(contract)
            self._check_notional(contract)
            self._check_order_sanity(contract, quote.bid or 0.0, spot)
            self._check_margin(contract, quote.bid or 0.0, spot)
        except EntryRefused as exc:
            if exc.kind == "wait" or exc.alert or exc.refusal is not None:
                return self._refused_after_claim(trade_date, slot, exc, manual)
            return self._entry_failed(trade_date, slot, f"no contract: {exc}")
        except Exception as exc:
            reason = f"no contract: {exc}"
            log.error("entry {} {} failed: {}", trade_date, slot, reason)
            self.book.finish_entry(trade_date, slot, "failed", reason).get(timeout=self._t())
            self.alerts.raise_alert("order_rejected", f"entry {trade_date} {slot} failed: {reason}")
            return EntryResult(False, "failed", reason)
        self._steps = Steps()  # margin checked -> SELL sent, logged with the first attempt
        # Not waited for here: the book takes it before anything later asks of the
        # contract (its mailbox keeps the order: the fill, the lot); _sell reads the
        # answer before the sale goes, so a book that cannot store it still sells nothing.
        self._remembered = self.book.remember_contract(contract)
        # The broker's executions and open orders and the sale's quote are asked, then
        # the exits' cancels go out: all are answered while _sell reads its serial and
        # writes the sale's intent; the SELL goes once the cancels are answered.
        self._start_earlier_sale_lookups(contract)
        cancelled = self._start_cancelling_exits(contract).lot_ids
        try:
            filled, info, last_reason = self._sell(trade_date, slot, contract, cancelled, spot)
        except EntryRefused as exc:
            # A stale quote or the margin check before a later attempt: nothing was sent
            # for it; the cancelled exits go back at once.
            self._restore(cancelled)
            entry = self.book.entry(trade_date, slot).get(timeout=self._t())
            if entry and entry.state == "done":  # an earlier attempt filled late
                return EntryResult(True, "done", "sale filled late", entry.lot_id)
            return self._refused_after_claim(trade_date, slot, exc, manual)
        except Exception as exc:
            log.exception("sale raised")
            filled, info, last_reason = False, None, f"{type(exc).__name__}: {exc}"
        finally:
            # Answers of this entry's moment, never a later one's.
            self._lookups = self._quote_asked = None
        if not filled or info is None:
            self._restore(cancelled)
            entry = self.book.entry(trade_date, slot).get(timeout=self._t())
            if entry and entry.state == "done":  # a late fill opened the lot meanwhile
                return EntryResult(True, "done", "sale filled late", entry.lot_id)
            self.book.finish_entry(trade_date, slot, "failed", last_reason).get(timeout=self._t())
            self.alerts.raise_alert(
                "order_rejected",
                f"entry {trade_date} {slot}: sale of {contract.local_symbol} failed after "
                f"{self.cfg.strategy.sale_attempts} attempts: {last_reason}",
                severity="error",
            )
            return EntryResult(False, "failed", last_reason)
        # Point of no return: the sale filled. From here the result is success.
        # The lot is what filled (all of it, or the slices before the rest was
        # cancelled), at the broker's volume-weighted average.
        lot, opened = self.lot_of_sale(info, contract, trade_date)
        lot_id = lot.id
        self._lots_sold_here.add(lot_id)
        # Exits first: opening the lot already marked the entry done in the same
        # transaction, so nothing else stands between the fill and its protection.
        protected = self.place_exits(lot, contract)
        if opened:  # logged after its exits went out, not before
            log.info("lot {} opened: {} x{} @ {} (TP {} SL {})", lot_id, lot.local_symbol,
                     lot.qty, lot.entry_price, lot.tp_price, lot.sl_price)
        self.book.finish_entry(trade_date, slot, "done", "sale filled", lot_id).get(
            timeout=self._t()
        )
        self._watch(contract)
        self._restore(cancelled)
        self.alerts.raise_alert(
            "entry_done",
            f"sold {lot.qty} {contract.local_symbol} at {info.avg_fill_price} "
            f"(TP {lot.tp_price} SL {lot.sl_price}){'' if protected else ' UNPROTECTED'}",
            severity="info",
            details={"lot_id": lot_id},
        )
        return EntryResult(True, "done", "sale filled", lot_id)

    def _refused_after_claim(self, trade_date: str, slot: str, exc: EntryRefused,
                             manual: bool = False) -> EntryResult:
        """A pre-sale check said no after the slot was claimed; nothing was sold."""
        if exc.kind == "wait":
            # No fresh quote (a restore, a farm break, a silent line) is not a failure: the
            # slot goes back to the schedule, which asks again until catch_up_until; only
            # that deadline makes it `missed` (alerted).
            self.log.warning("entry {} {} waits: {}", trade_date, slot, exc)
            self._alert_ib(exc)  # a named wait (10197 competing session): told once a day
            self.book.interrupt_entry(trade_date, slot, f"waiting: {exc}").get(timeout=self._t())
            return EntryResult(False, "waiting", str(exc))
        # A policy said no (margin): the slot is skipped, like the other risk limits; by
        # hand it is `failed`, so the operator may run it again once the account allows.
        state = "failed" if manual else "skipped"
        self.log.warning("entry {} {} {}: {}", trade_date, slot, state, exc)
        self.book.finish_entry(trade_date, slot, state, str(exc)).get(timeout=self._t())
        if exc.refusal is not None:
            self._alert_ib(exc)
        else:
            self.alerts.raise_alert(exc.alert or "risk_limit",
                                    f"entry {trade_date} {slot} {state}: {exc}")
        return EntryResult(False, "refused", str(exc))

    def _entry_failed(self, trade_date: str, slot: str, reason: str) -> EntryResult:
        self.log.error("entry {} {} failed: {}", trade_date, slot, reason)
        self.book.finish_entry(trade_date, slot, "failed", reason).get(timeout=self._t())
        self.alerts.raise_alert("order_rejected", f"entry {trade_date} {slot} failed: {reason}")
        return EntryResult(False, "failed", reason)

    def _watch(self, contract: ContractInfo) -> None:
        md = self.directory.ref("market_data")
        if md is not None:
            md.proxy().watch([contract])

    def _record(self, info: OrderInfo) -> None:
        """The broker's answer, for the book. Not waited for: the intent is already
        durable, the book's mailbox keeps the order, and reconciliation settles any
        status the book misses; waiting here queued the exits behind the book."""
        self._record_all([info])

    def _record_all(self, infos: list[OrderInfo]) -> None:
        """Several answers in one book transaction (one durable commit, not one each)."""
        from actors.position_book import _status_name

        if not infos:
            return
        self.book.mark_orders([(info.order_ref, {
            "status": _status_name(info),
            "order_id": info.order_id or None,
            "perm_id": info.perm_id or None,
            "error": f"{info.error_code}: {info.error_message}" if info.error_code else None,
        }) for info in infos])
