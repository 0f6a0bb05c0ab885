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

import re
import time
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from loguru import logger

from actors.context import EngineContext
from actors.entry_prep import PreparedEntry, prepare, release, wanted_strikes
from actors.messages import (
    EntryResult,
    PrepareEntry,
    ProtectLot,
    RepairExits,
    RunEntry,
    SellShares,
)
from actors.share_sale import sell_shares
from actors.supervisor import SupervisedActor
from book.store import Store
from ops.backoff import backoff_delay
from trading.calendar import ET
from trading.fills import EXIT_OCA_TYPE, remaining, sold_by
from trading.freshness import stale_reason
from trading.margin import margin_refusal
from trading.model import ContractInfo, LinkState, LinkStatus, OrderInfo, OrderRequest
from trading.order_refs import (
    exit_refs,
    is_sale,
    lot_prefix,
    parse_sale,
    sale_prefix,
    sale_ref,
)
from trading.pricing import exit_prices, limit_walk, round_to_tick
from trading.risk import OrderRefused, order_violation, verify_account
from trading.settlement import ANNOUNCED_CLOSES
from trading.strikes import (
    choose_expiry_by_rule,
    choose_strike_by_delta,
)


class EntryRefused(Exception):
    """A precondition does not hold; the message says which.

    `kind`: "wait" (link or market: the schedule retries until its deadline),
    "done" (the slot is taken already), "skip" (a policy says no: paused, kill
    switch, risk limits, account mismatch; the slot is recorded as skipped).
    """

    def __init__(self, message: str, kind: str = "skip", alert: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.alert = alert  # an alert kind a refusal by hand raises too ("" = none)


class OrderExecutor(SupervisedActor):
    name = "order_executor"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.calendar = ctx.calendar
        self.busy = False
        self._lots_sold_here: set[int] = set()  # lots this executor protects itself
        self._prepared: PreparedEntry | None = None  # the next slot's lookups and lines

    def on_start(self) -> None:
        self.log = logger.bind(actor=self.name)
        # Intents are written here, on the executor's own SQLite connection: through the
        # book's mailbox each waited behind the sale fill's own durable writes (bench.exits:
        # most of fill -> exits). Durable before the order is sent, as before.
        self.intents = Store(self.cfg.storage.path)

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
        elif isinstance(message, PrepareEntry):
            self.prepare_entry(message.trade_date, message.slot)
        elif isinstance(message, SellShares):
            sell_shares(self, message.lot_id)  # actors/share_sale.py (issue 16)
        return None

    def prepare_entry(self, trade_date: str, slot: str) -> bool:
        """Best effort: a preparation that fails costs nothing but the time it saves."""
        link = self.book.link_status().get(timeout=self._t())
        if link.state != LinkState.READY or self.busy:
            return False
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        if entry is not None and entry["state"] not in ("interrupted",):
            return False  # done, failed, skipped or running: nothing to prepare
        d = self.directory
        spy = d.quotes.get(d.spy_con_id) if d.spy_con_id else None
        spot = (spy.mid or spy.last) if spy is not None else None
        if not spot:
            return False
        try:
            self._release_prepared()
            self._prepared = prepare(self.conn, self.cfg.strategy, trade_date, slot, spot,
                                     self._t())
        except Exception as exc:
            self.log.warning("entry {} {} not prepared: {}", trade_date, slot, exc)
            return False
        self.log.info("entry {} {} prepared: {} candidate lines open", trade_date, slot,
                      len(self._prepared.contracts))
        return True

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
        if lot is None or lot["state"] != "unprotected" or lot.get("tp_order_ref"):
            return False  # closed, or protected already
        self.log.warning("lot {} opened by a late {}: placing its exits now", lot_id, reason)
        protected = self.place_exits(lot)
        contract = self.book.contract(lot["con_id"]).get(timeout=self._t())
        if contract is not None:
            self._watch(contract)  # its quote and P&L, as for a lot the entry opened
        if protected:
            self.alerts.raise_alert(
                "late_fill_protected",
                f"lot {lot_id} {lot['local_symbol']}: the sale filled after the entry gave up "
                f"({reason}); its exits are placed (TP {lot['tp_price']} SL {lot['sl_price']})",
                severity="warning",
                details={"lot_id": lot_id},
            )
        return protected

    def today(self) -> str:
        return self.clock.now().astimezone(ET).date().isoformat()

    # ---- preconditions -----------------------------------------------------------------

    def check_preconditions(self, trade_date: str, slot: str, manual: bool = False) -> None:
        """Raise EntryRefused naming the first guard that does not hold."""
        self._check_trading_allowed()
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        retry_ok = ("interrupted", "missed", "failed") if manual else ("interrupted",)
        if entry is not None and entry["state"] not in retry_ok:
            raise EntryRefused(f"entry {trade_date} {slot} already {entry['state']}", "done")
        self._check_risk(trade_date)

    def _check_trading_allowed(self) -> None:
        """The guards every sale passes, an entry's or a resumed one's: link READY,
        market open, not paused, kill switch off, the gateway's account."""
        link = self.book.link_status().get(timeout=self._t())
        if link.state != LinkState.READY:
            raise EntryRefused(f"link not READY ({link.state.value}: {link.reason})", "wait")
        now = self.clock.now()
        if not self.calendar.is_market_open(now):
            raise EntryRefused(f"market closed at {now.astimezone(ET):%Y-%m-%d %H:%M} ET", "wait")
        if self.book.is_paused().get(timeout=self._t()):
            raise EntryRefused("trading is paused")
        if self.book.kill_switch_on().get(timeout=self._t()):
            raise EntryRefused("kill switch is on: no entries")
        self._check_account(link)

    def _check_account(self, link: LinkStatus) -> None:
        """The accounts the gateway reported (never the config) against the config."""
        gw = self.cfg.gateway
        account, problem = verify_account(link.accounts, gw.account, gw.mode)
        if problem or account != link.account:
            raise EntryRefused(
                problem or f"account {link.account} is not the verified {account}",
                alert="risk_limit",
            )

    def _check_risk(self, trade_date: str) -> None:
        risk, qty = self.cfg.risk, self.cfg.strategy.quantity
        lots = self.book.open_lots().get(timeout=self._t())
        if len(lots) >= risk.max_open_lots:
            raise EntryRefused(f"max open lots reached ({len(lots)}/{risk.max_open_lots})")
        sold = self.book.contracts_sold_on(trade_date).get(timeout=self._t())
        if sold + qty > risk.max_contracts_per_day:
            raise EntryRefused(
                f"max contracts per day reached ({sold}/{risk.max_contracts_per_day})"
            )
        notional = sum(lot["strike"] * 100 * lot["qty"] for lot in lots)
        if notional >= risk.max_short_notional:
            raise EntryRefused(f"max short-put notional reached ({notional:.0f})")
        if risk.daily_loss_limit > 0:
            realized = self.book.realized_on_date(trade_date).get(timeout=self._t())
            if realized <= -risk.daily_loss_limit:
                raise EntryRefused(f"daily loss limit hit ({realized:.2f})")

    def _check_order_sanity(self, contract: ContractInfo, price: float, spot: float) -> None:
        """The broker-side guard, asked early: refuse before any exit is cancelled."""
        req = OrderRequest(
            "tb:check", contract, "SELL", "LMT", self.cfg.strategy.quantity, price, spot=spot
        )
        refusal = order_violation(req, self.cfg.risk, spot)
        if refusal:
            raise EntryRefused(f"order out of bounds: {refusal}")

    # ---- entry -------------------------------------------------------------------------

    def first_open_slot(self, trade_date: str) -> str:
        if not self.cfg.schedule.entry_times:
            # Entries by hand only: the slot is the minute of the request (ET).
            return f"{self.clock.now().astimezone(ET):%H:%M}"
        entries = {e["slot"]: e for e in self.book.entries(trade_date).get(timeout=self._t())}
        for slot in self.cfg.schedule.entry_times:
            if slot not in entries:
                return slot
        for slot in self.cfg.schedule.entry_times:
            if entries[slot]["state"] in ("interrupted", "missed", "failed"):
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
        if exc.alert:
            self.alerts.raise_alert(exc.alert, f"entry {trade_date} {slot} refused: {exc}")

    def run_entry(self, trade_date: str, slot: str, manual: bool = False) -> EntryResult:
        self.busy = True
        try:
            return self._run_entry(trade_date, slot, manual)
        finally:
            self.busy = False
            self._release_prepared()

    def _claim(self, trade_date: str, slot: str, manual: bool) -> bool:
        if self.book.start_entry(trade_date, slot).get(timeout=self._t()):
            return True
        if self.book.reclaim_entry(trade_date, slot).get(timeout=self._t()):
            return True  # a run that died before selling anything
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        if manual and entry and entry["state"] in ("missed", "failed"):
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
                self.alerts.raise_alert("risk_limit", f"entry {trade_date} {slot} skipped: {exc}")
            elif manual:
                self._alert_refusal(trade_date, slot, exc)
            return EntryResult(False, "refused", str(exc))
        if not self._claim(trade_date, slot, manual):
            return EntryResult(False, "refused", f"entry {trade_date} {slot} already claimed")
        log.info("entry {} {} started ({})", trade_date, slot, "manual" if manual else "schedule")
        try:
            contract, quote, spot = self._choose_contract(trade_date)
            self._check_order_sanity(contract, quote.bid or 0.0, spot)
            self._check_margin(contract, quote.bid or 0.0, spot)
        except EntryRefused as exc:
            if exc.kind == "wait" or exc.alert:
                return self._refused_after_claim(trade_date, slot, exc, manual)
            return self._entry_failed(trade_date, slot, f"no contract: {exc}")
        except Exception as exc:
            reason = f"no contract: {exc}"
            log.error("entry {} {} failed: {}", trade_date, slot, reason)
            self.book.finish_entry(trade_date, slot, "failed", reason).get(timeout=self._t())
            self.alerts.raise_alert("order_rejected", f"entry {trade_date} {slot} failed: {reason}")
            return EntryResult(False, "failed", reason)
        self.book.remember_contract(contract).get(timeout=self._t())
        cancelled = self._cancel_conflicting_exits(contract)
        try:
            filled, info, last_reason = self._sell(trade_date, slot, contract, cancelled, spot)
        except EntryRefused as exc:
            # A stale quote or the margin check before a later attempt: nothing was sent
            # for it; the cancelled exits go back at once.
            self._restore(cancelled)
            entry = self.book.entry(trade_date, slot).get(timeout=self._t())
            if entry and entry["state"] == "done":  # an earlier attempt filled late
                return EntryResult(True, "done", "sale filled late", entry.get("lot_id"))
            return self._refused_after_claim(trade_date, slot, exc, manual)
        except Exception as exc:
            log.exception("sale raised")
            filled, info, last_reason = False, None, f"{type(exc).__name__}: {exc}"
        if not filled or info is None:
            self._restore(cancelled)
            entry = self.book.entry(trade_date, slot).get(timeout=self._t())
            if entry and entry["state"] == "done":  # a late fill opened the lot meanwhile
                return EntryResult(True, "done", "sale filled late", entry.get("lot_id"))
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
        lot_id = self.book.open_lot_for_sale(
            info.order_ref, info.avg_fill_price, int(info.filled)
        ).get(timeout=self._t())
        self._lots_sold_here.add(lot_id)
        lot = self.book.lot(lot_id).get(timeout=self._t())
        # Exits first: opening the lot already marked the entry done in the same
        # transaction, so nothing else stands between the fill and its protection.
        protected = self.place_exits(lot, contract)
        self.book.finish_entry(trade_date, slot, "done", "sale filled", lot_id).get(
            timeout=self._t()
        )
        self._watch(contract)
        self._restore(cancelled)
        self.alerts.raise_alert(
            "entry_done",
            f"sold {lot['qty']} {contract.local_symbol} at {info.avg_fill_price} "
            f"(TP {lot['tp_price']} SL {lot['sl_price']}){'' if protected else ' UNPROTECTED'}",
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
            self.book.interrupt_entry(trade_date, slot, f"waiting: {exc}").get(timeout=self._t())
            return EntryResult(False, "waiting", str(exc))
        # A policy said no (margin): the slot is skipped, like the other risk limits; by
        # hand it is `failed`, so the operator may run it again once the account allows.
        state = "failed" if manual else "skipped"
        self.log.warning("entry {} {} {}: {}", trade_date, slot, state, exc)
        self.book.finish_entry(trade_date, slot, state, str(exc)).get(timeout=self._t())
        self.alerts.raise_alert(exc.alert or "risk_limit",
                                f"entry {trade_date} {slot} {state}: {exc}")
        return EntryResult(False, "refused", str(exc))

    def _check_margin(self, contract: ContractInfo, price: float, spot: float) -> None:
        """The broker's whatIf of the sale: refused (risk_limit) when the initial margin
        after it would pass risk.max_margin_use of net liquidation or the available funds
        would go negative. An unanswered whatIf is a reason to wait, not to sell."""
        req = OrderRequest("tb:whatif", contract, "SELL", "LMT", self.cfg.strategy.quantity,
                           lmt_price=price, tif="DAY", spot=spot)
        try:
            answer = self.conn.what_if(req).get(timeout=self._t())
        except OrderRefused as exc:
            raise EntryRefused(f"margin check refused: {exc}", alert="risk_limit") from exc
        except Exception as exc:
            raise EntryRefused(f"margin check unanswered: {exc}", "wait") from exc
        refusal = margin_refusal(answer, self.cfg.risk.max_margin_use)
        if refusal:
            raise EntryRefused(f"margin: {refusal}", alert="risk_limit")
        self.log.info("margin check: initial {:.2f} -> {:.2f} of net liquidation {:.2f}",
                      answer.init_before, answer.init_after, answer.net_liquidation)

    def _fresh_quotes(self, contracts: list[ContractInfo], wait: float,
                      need_delta: bool = False) -> list[Any]:
        """Quotes whose last tick is within strategy.max_quote_age, or EntryRefused
        ("wait"): a line left open through a silence answers at once with old values."""
        max_age = self.cfg.strategy.max_quote_age
        quotes = self.conn.quotes(contracts, wait, need_delta, max_age).get(
            timeout=self._t(wait + 2))
        now = time.time()
        for c, q in zip(contracts, quotes, strict=True):
            why = stale_reason(q, now, max_age, c.local_symbol or c.symbol)
            if why and q.bid is not None:  # no bid at all: the callers' own "no quote"
                raise EntryRefused(why, "wait")
        return quotes

    def _entry_failed(self, trade_date: str, slot: str, reason: str) -> EntryResult:
        self.log.error("entry {} {} failed: {}", trade_date, slot, reason)
        self.book.finish_entry(trade_date, slot, "failed", reason).get(timeout=self._t())
        self.alerts.raise_alert("order_rejected", f"entry {trade_date} {slot} failed: {reason}")
        return EntryResult(False, "failed", reason)

    def _watch(self, contract: ContractInfo) -> None:
        md = self.directory.ref("market_data")
        if md is not None:
            md.proxy().watch([contract])

    def _choose_contract(self, trade_date: str) -> tuple[ContractInfo, Any, float]:
        s = self.cfg.strategy
        conn = self.conn
        if "market" in self.directory.farms_broken:
            # Quotes from a broken farm are stale: no entry is priced on them.
            raise EntryRefused("market data farm broken (2103): no fresh quote", "wait")
        prepared = self._prepared if (
            self._prepared is not None and self._prepared.trade_date == trade_date) else None
        underlying = prepared.underlying if prepared else conn.qualify_stock(
            s.symbol, s.exchange).get(timeout=self._t())
        spy = self._fresh_quotes([underlying], 3.0)[0]
        spot = spy.mid or spy.last or spy.bid or 0.0
        if not spot:
            raise EntryRefused(f"no fresh {s.symbol} quote yet", "wait")
        if prepared:
            expiry, strikes = prepared.expiry, list(prepared.strikes)
        else:
            expirations, strikes = conn.option_chain(s.symbol, underlying.con_id).get(
                timeout=self._t())
            from datetime import date

            expiry = choose_expiry_by_rule(
                expirations, date.fromisoformat(trade_date), s.target_dte, s.expiry_rule
            )
        wanted = wanted_strikes(s, strikes, spot)
        contracts = (prepared.contracts_for(wanted) if prepared else None) or \
            conn.qualify_options(s.symbol, expiry, wanted, "P").get(timeout=self._t(10))
        if not contracts:
            raise EntryRefused(f"no {s.symbol} puts for {expiry}")
        quotes = self._fresh_quotes(contracts, 3.0, s.strike_selection == "delta")
        by_strike = {c.strike: (c, q) for c, q in zip(contracts, quotes, strict=True)}
        if s.strike_selection == "otm_distance":
            strike = contracts[0].strike
        else:
            strike = choose_strike_by_delta(
                [(c.strike, q.delta) for c, q in zip(contracts, quotes, strict=True)],
                s.target_delta,
            )
        contract, quote = by_strike[strike]
        if quote.bid is None or quote.ask is None or quote.bid <= 0:
            raise EntryRefused(f"no bid for {contract.local_symbol} yet", "wait")
        self.log.info(
            "chose {} (bid {} ask {} delta {}) spot {:.2f}",
            contract.local_symbol,
            quote.bid,
            quote.ask,
            quote.delta,
            spot,
        )
        return contract, quote, spot

    def _cancel_conflicting_exits(self, contract: ContractInfo) -> list[int]:
        """Cancel our resting BUY exits on the contract we are about to sell."""
        lots = [
            lot
            for lot in self.book.open_lots().get(timeout=self._t())
            if lot["con_id"] == contract.con_id
        ]
        cancelled = []
        for lot in lots:
            self.book.set_lot_state(lot["id"], "unprotected").get(timeout=self._t())
            self._cancel_exits_of(lot)
            cancelled.append(lot["id"])
            self.log.info("cancelled exits of lot {} before selling the same contract", lot["id"])
        return cancelled

    def _cancel_exits_of(self, lot: dict[str, Any]) -> None:
        for role in ("tp", "sl"):
            order_id = lot.get(f"{role}_order_id")
            if order_id:
                try:
                    info = self.conn.cancel_order(order_id).get(timeout=self._t())
                    self._record(info)
                except Exception as exc:
                    self.log.warning("cancel of {} {} failed: {}", role, order_id, exc)

    def _record(self, info: OrderInfo) -> None:
        """The broker's answer, for the book. Not waited for: the intent is already
        durable, the book's mailbox keeps the order, and reconciliation settles any
        status the book misses; waiting here queued the exits behind the book."""
        from actors.position_book import _status_name

        self.book.mark_order(
            info.order_ref,
            status=_status_name(info),
            order_id=info.order_id or None,
            perm_id=info.perm_id or None,
            error=f"{info.error_code}: {info.error_message}" if info.error_code else None,
        )

    def _restore(self, lot_ids: list[int]) -> None:
        for lot_id in lot_ids:
            lot = self.book.lot(lot_id).get(timeout=self._t())
            if lot and lot["state"] != "closed":
                self.place_exits(lot)

    def _sell(
        self,
        trade_date: str,
        slot: str,
        contract: ContractInfo,
        cancelled: list[int],
        spot: float,
    ) -> tuple[bool, OrderInfo | None, str]:
        s = self.cfg.strategy
        reason = "no attempt made"
        # A slot run again (by hand after a failure, or after an interrupted run) goes on
        # from its last serial: an orderRef is never reused (it is UNIQUE in the book and
        # the key by which the broker is asked).
        first = self.book.next_sale_serial(trade_date, slot).get(timeout=self._t())
        for attempt in range(first, first + s.sale_attempts):
            # Never two sales for one slot: an earlier attempt (this run's, or a run that
            # gave up) may have filled or still be working whatever this session thinks.
            earlier, found = self._earlier_sale(trade_date, slot, contract)
            if earlier == "filled" and found is not None:
                return True, found, "filled (an earlier attempt)"
            if earlier != "clear":
                return False, None, earlier
            if attempt > first:
                self._restore(cancelled)  # after every failed attempt, at once
                self._cancel_conflicting_exits(contract)
            quote = self._fresh_quotes([contract], 2.0)[0]
            if quote.bid is None or quote.ask is None:
                reason = "no quote"
                continue
            prices = self._sale_prices(quote, contract)
            if attempt > first:  # before each sale (the first was checked before any cancel)
                self._check_margin(contract, prices[0], spot)
            ref = sale_ref(trade_date, slot, attempt)
            self.intents.record_intent(
                order_ref=ref,
                role="sale",
                con_id=contract.con_id,
                action="SELL",
                order_type="LMT",
                qty=s.quantity,
                lmt_price=prices[0],
                trade_date=trade_date,
            )
            req = OrderRequest(
                ref, contract, "SELL", "LMT", s.quantity, lmt_price=prices[0], tif="DAY", spot=spot
            )
            self.log.info(
                "sale attempt {}: SELL {} x{} LMT {} ref={}",
                attempt,
                contract.local_symbol,
                s.quantity,
                prices[0],
                ref,
            )
            try:
                info = self.conn.place_order(req).get(timeout=self._t(s.order_ack_timeout))
            except OrderRefused as exc:
                # A guard refusal is not transient: no further attempt.
                self.book.mark_order(ref, status="refused", error=str(exc)).get(timeout=self._t())
                return False, None, f"refused before the broker: {exc}"
            self._record(info)
            if info.status == "Unknown":
                # The order may be live: never send another; reconciliation settles it.
                return False, None, "sale outcome unknown (no ack); left to reconciliation"
            if info.is_dead:
                reason = f"rejected: {info.error_code} {info.error_message}".strip()
                self.log.warning("sale attempt {} {}", attempt, reason)
                self.alerts.raise_alert("order_rejected", f"sale {contract.local_symbol} {reason}")
                continue
            info = self._walk(info, prices[1:])
            if info.is_filled or info.filled > 0:
                # A part filled is a sale: the rest was walked as this one order and
                # then cancelled; no further attempt sells the full quantity again.
                self.log.info("sale filled: {} x{} of {} @ {}", contract.local_symbol,
                              int(info.filled), int(info.qty), info.avg_fill_price)
                return True, info, "filled"
            if not info.is_dead:
                # The cancel at the walk's end got no answer (PendingCancel/Unknown): the
                # order may still fill. Never another sale beside it: reconciliation
                # (and a late fill's ProtectLot) settles it.
                return False, None, f"sale {ref} not confirmed cancelled; left to reconciliation"
            reason = f"not filled after walking to {prices[-1]}"
        return False, None, reason

    def _sale_prices(self, quote: Any, contract: ContractInfo) -> list[float]:
        s = self.cfg.strategy
        return limit_walk(quote.bid, quote.ask, s.limit_walk_step,
                          max(2, round(1 / s.limit_walk_step) + 1), contract.min_tick)

    def _earlier_sale(
        self, trade_date: str, slot: str, contract: ContractInfo
    ) -> tuple[str, OrderInfo | None]:
        """Ask the broker by orderRef (executions, open orders) about the slot's earlier
        attempts: ("clear", None) when none filled and none works; ("filled", info) when
        one sold (in whole or part); else a reason why no new attempt may go out. A
        working one is waited for (until acknowledged) and walked itself, as one order."""
        s = self.cfg.strategy
        prefix = sale_prefix(trade_date, slot)
        deadline = time.monotonic() + max(s.exit_unknown_wait, s.order_ack_timeout)
        while True:
            try:
                fills = self.conn.executions().get(timeout=self._t())
                live = [o for o in self.conn.open_orders().get(timeout=self._t())
                        if (o.is_live or o.status == "PendingCancel")
                        and o.order_ref.startswith(prefix)]
            except Exception as exc:
                return f"cannot confirm at the broker that no earlier attempt works: {exc}", None
            if live:
                order = live[0]
                if order.status in ("PendingSubmit", "ApiPending"):
                    if time.monotonic() >= deadline:
                        return (f"earlier attempt {order.order_ref} still unacknowledged; left "
                                "to reconciliation"), None
                    time.sleep(0.2)
                    continue
                self.log.warning("sale {} of this slot still works: walking it, no new "
                                 "attempt beside it", order.order_ref)
                quote = self.conn.quotes([contract], 2.0).get(timeout=self._t(3))[0]
                prices = self._sale_prices(quote, contract) if quote.bid and quote.ask else []
                info = self._walk(order, prices)
                if info.is_filled or info.filled > 0:
                    return "filled", info
                if info.status == "Unknown":
                    return f"earlier attempt {order.order_ref}: cancel unanswered", None
                continue  # look again: it is dead now, or say what is left
            sold = sold_by(fills, prefix)
            if sold is not None:
                ref, qty, price = sold
                self.log.warning("sale {} of this slot filled ({} @ {}): no new attempt",
                                 ref, qty, price)
                return "filled", OrderInfo(0, 0, ref, contract.con_id, contract.local_symbol,
                                           "SELL", "LMT", qty, None, None, "", "Filled",
                                           filled=qty, avg_fill_price=price)
            return "clear", None

    def _walk(self, info: OrderInfo, prices: list[float]) -> OrderInfo:
        interval = self.cfg.strategy.limit_walk_interval
        for price in prices:
            info = self.conn.wait_order(info.order_id, interval).get(timeout=self._t(interval))
            if info.is_filled or info.is_dead:
                return info
            try:
                info = self.conn.modify_limit(info.order_id, price).get(timeout=self._t())
            except OrderRefused as exc:
                self.log.error("walk stopped: {}", exc)
                break  # the order still rests at its last price: cancelled below
            self.book.mark_order(info.order_ref, status="submitted").get(timeout=self._t())
        info = self.conn.wait_order(info.order_id, interval).get(timeout=self._t(interval))
        if info.is_filled or info.is_dead:
            self._record(info)
            return info
        info = self.conn.cancel_order(info.order_id).get(timeout=self._t())
        self._record(info)
        return info

    # ---- exits -------------------------------------------------------------------------

    def place_exits(self, lot: dict[str, Any], contract: ContractInfo | None = None) -> bool:
        """TP (BUY LMT) and SL (BUY STP) as one OCA group; retried; alert if it fails.

        Never raises: after a sale has filled, nothing here may stop the entry from
        finishing (its bookkeeping, the watch, restoring the exits it cancelled)."""
        try:
            return self._place_exits(lot, contract)
        except Exception as exc:
            self.log.exception("placing exits for lot {} failed: {}", lot["id"], exc)
            self._mark_unprotected(lot, f"error while placing exits: {exc}")
            return False

    def _mark_unprotected(self, lot: dict[str, Any], why: str) -> None:
        try:
            self.book.set_lot_state(lot["id"], "unprotected").get(timeout=self._t())
        except Exception as exc:  # the alert below still goes out
            self.log.error("lot {}: could not mark unprotected: {}", lot["id"], exc)
        self.alerts.raise_alert(
            "lot_unprotected",
            f"lot {lot['id']} {lot.get('local_symbol', '')} has NO exits: {why}; "
            "the repair job keeps trying",
            severity="critical",
            details={"lot_id": lot["id"]},
        )

    def _settle_exit_legs(
        self, rows: list[dict[str, Any]], infos: list[OrderInfo]
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
                ref = row["order_ref"]
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

    def _place_exits(self, lot: dict[str, Any], contract: ContractInfo | None = None) -> bool:
        s = self.cfg.strategy
        if contract is None or contract.con_id != lot["con_id"]:
            contract = self.book.contract(lot["con_id"]).get(timeout=self._t())
        if contract is None:
            self.log.error(
                "lot {}: contract {} unknown, cannot place exits", lot["id"], lot["con_id"]
            )
            return False
        tp_price, sl_price = lot["tp_price"], lot["sl_price"]
        if not tp_price or not sl_price:
            tp_price, sl_price = exit_prices(
                lot["entry_price"], s.take_profit_ratio, s.stop_loss_ratio, contract.min_tick
            )
        last_error = ""
        for attempt in range(1, s.exit_attempts + 1):
            if attempt > 1 and self._lot_closed(lot["id"]):
                return True  # closed meanwhile (an exit or a hand close): nothing to protect
            serial = int(time.time() * 1000) % 10**10
            tp_ref, sl_ref, oca = exit_refs(lot["id"], serial)
            legs = (
                ("tp", tp_ref, "LMT", round_to_tick(tp_price, contract.min_tick), None),
                ("sl", sl_ref, "STP", None, round_to_tick(sl_price, contract.min_tick)),
            )
            rows = [
                dict(order_ref=ref, role=role, con_id=lot["con_id"], action="BUY",
                     order_type=otype, qty=lot["qty"], lmt_price=lmt, aux_price=aux,
                     oca_group=oca, lot_id=lot["id"], trade_date=lot["trade_date"])
                for role, ref, otype, lmt, aux in legs
            ]
            reqs = [
                OrderRequest(ref, contract, "BUY", otype, lot["qty"], lmt_price=lmt,
                             aux_price=aux, oca_group=oca, oca_type=EXIT_OCA_TYPE, tif="GTC")
                for _role, ref, otype, lmt, aux in legs
            ]
            # Both intents in one durable commit, then both orders in one round trip.
            self.intents.record_intents(rows)
            infos: list[OrderInfo] = []
            maybe_sent = False
            try:
                infos = self.conn.place_orders(reqs).get(timeout=self._t(s.order_ack_timeout))
            except OrderRefused as exc:
                for row in rows:
                    self.intents.mark_order(row["order_ref"], status="refused", error=str(exc))
                last_error = f"refused before the broker: {exc}"
            except Exception as exc:  # a drop, a restarted Connection, a timeout
                last_error = f"exits: {exc}"
                maybe_sent = True
            if maybe_sent or any(i.status in ("Unknown", "PendingSubmit") for i in infos):
                self.log.warning("lot {}: exit legs {} / {} unacknowledged: asking the broker",
                                 lot["id"], tp_ref, sl_ref)
                settled = self._settle_exit_legs(rows, infos)
                if settled is None:
                    self._mark_unprotected(
                        lot, f"exit legs {tp_ref} / {sl_ref} still unacknowledged; nothing "
                        "more is sent until the broker shows them")
                    return False
                infos = settled
            placed: dict[str, OrderInfo] = {}
            for (role, *_), info in zip(legs, infos, strict=True):
                self._record(info)
                if info.is_filled or info.is_live:
                    placed[role] = info
                else:
                    last_error = f"{role} {info.status} {info.error_code} {info.error_message}"
            if any(i.is_filled for i in placed.values()):
                # Hit at once: the lot closes by that fill. A sibling that reached the
                # broker after it joined a filled OCA group: cancel it.
                self._cancel_legs([i for i in placed.values() if not i.is_filled],
                                  "leg beside a filled exit")
                return True
            if placed and self._lot_closed(lot["id"]):
                # A leg filled between its ack and its sibling's placement (found by
                # bench.fills): the sibling joined a filled OCA group and would rest
                # alone, an order for a closed lot. Cancel what is still live.
                self._cancel_legs(placed.values(), "leg left on a closed lot")
                return True
            if len(placed) == 2:
                self.book.set_exits(
                    lot["id"],
                    tp_order_id=placed["tp"].order_id,
                    sl_order_id=placed["sl"].order_id,
                    tp_order_ref=tp_ref,
                    sl_order_ref=sl_ref,
                    oca_group=oca,
                    state="open",
                ).get(timeout=self._t())
                self.log.info(
                    "lot {} protected: TP {} SL {} (oca {})", lot["id"], tp_price, sl_price, oca
                )
                return True
            self._cancel_legs(placed.values(), "half exit pair")  # half a pair is no protection
            self.log.warning(
                "exits for lot {} attempt {} failed: {}", lot["id"], attempt, last_error
            )
            if attempt < s.exit_attempts:
                time.sleep(backoff_delay(attempt, s.exit_retry_backoff))
        self._mark_unprotected(lot, f"{s.exit_attempts} attempts failed: {last_error}")
        return False

    def _cancel_legs_of_closed_lots(self, live: list[OrderInfo], open_ids: set[int]) -> None:
        """An exit order of ours whose lot is closed protects nothing and could open a
        position if it fills: cancel it."""
        strays, outside = [], []
        for o in live:
            m = re.match(r"tb:lot(\d+):(tp|sl):", o.order_ref)
            if m and int(m.group(1)) not in open_ids:
                lot = self.book.lot(int(m.group(1))).get(timeout=self._t())
                if lot is None or lot["state"] != "closed":
                    continue
                # A lot closed by hand was announced with its close ("closed_outside"):
                # its exits go without a second alert.
                announced = lot.get("close_reason") in ANNOUNCED_CLOSES  # issue 16 too
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

    def _lot_closed(self, lot_id: int) -> bool:
        # The book is asked after the last leg's ack, so a fill that came before that
        # ack on the same socket is already in the book's mailbox ahead of this ask.
        current = self.book.lot(lot_id).get(timeout=self._t())
        return current is None or current["state"] == "closed"

    def _cancel_legs(self, legs: Iterable[OrderInfo], what: str) -> None:
        for info in legs:
            if info.is_filled:
                continue
            try:
                self._record(self.conn.cancel_order(info.order_id).get(timeout=self._t()))
                self.log.warning("cancelled {} {}", what, info.order_ref)
            except Exception as exc:
                self.log.warning("cancel of {} {} failed: {}", what, info.order_ref, exc)

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
        self._cancel_legs_of_closed_lots(live, {lot["id"] for lot in open_lots})
        for lot in open_lots:
            checked += 1
            mine = [o for o in live if o.order_ref.startswith(lot_prefix(lot["id"]))]
            pair = self._live_pair(lot, mine)
            current = self.book.lot(lot["id"]).get(timeout=self._t())
            resize = pair is not None and current is not None and any(
                remaining(o.qty, o.filled) != int(current["qty"]) for o in pair
            )
            if resize:
                # Part of the lot was closed by hand: the pair is cancelled and placed
                # again for what is left (one alert already said so).
                self.log.warning("lot {}: exits sized {} for {} contracts: resizing",
                                 lot["id"], int(pair[0].qty), current["qty"])
                pair = None
            for o in mine:
                if pair is None or o.order_id not in (pair[0].order_id, pair[1].order_id):
                    try:
                        self._record(self.conn.cancel_order(o.order_id).get(timeout=self._t()))
                    except Exception as exc:
                        self.log.warning("cancel of stray exit {} failed: {}", o.order_ref, exc)
            current = self.book.lot(lot["id"]).get(timeout=self._t())
            if current is None or current["state"] == "closed":
                continue  # a leg filled while we looked
            if pair is not None:
                tp, sl = pair
                if (current["tp_order_ref"], current["sl_order_ref"], current["state"]) != (
                    tp.order_ref,
                    sl.order_ref,
                    "open",
                ):
                    self.book.set_exits(
                        lot["id"],
                        tp_order_id=tp.order_id,
                        sl_order_id=sl.order_id,
                        tp_order_ref=tp.order_ref,
                        sl_order_ref=sl.order_ref,
                        oca_group=tp.oca_group,
                        state="open",
                    ).get(timeout=self._t())
                    self.log.info(
                        "lot {}: adopted live exits {} / {}", lot["id"], tp.order_ref, sl.order_ref
                    )
                continue
            if resize:
                if self.place_exits(current):
                    resized += 1
                continue
            self.log.warning("lot {} lacks live exits: repairing ({})", lot["id"], reason)
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

    def _release_interrupted_entries(self, live: list[OrderInfo]) -> None:
        """Entries a dead run left 'started' with no sale live: the slot is free again.

        Runs inside this actor, so no entry of this process is between its claim and
        its end; a sale that filled has already made its entry 'done' (same
        transaction as the lot), and live sales were resumed just before.
        """
        for entry in self.book.started_entries().get(timeout=self._t()):
            prefix = sale_prefix(entry["trade_date"], entry["slot"])
            if any(o.order_ref.startswith(prefix) for o in live):
                continue
            reason = "interrupted: the engine stopped during the entry; nothing was sold"
            if self.book.interrupt_entry(entry["trade_date"], entry["slot"], reason).get(
                timeout=self._t()
            ):
                self.log.warning("entry {} {} {}", entry["trade_date"], entry["slot"], reason)
                self.alerts.raise_alert(
                    "entry_interrupted",
                    f"entry {entry['trade_date']} {entry['slot']} {reason}; it runs again "
                    "if its catch-up deadline has not passed",
                    severity="warning",
                )

    @staticmethod
    def _live_pair(
        lot: dict[str, Any], mine: list[OrderInfo]
    ) -> tuple[OrderInfo, OrderInfo] | None:
        """A live TP and SL of this lot in one OCA group (the lot's own pair first)."""
        groups: dict[str, dict[str, OrderInfo]] = {}
        for o in mine:
            role = o.order_ref.split(":")[2] if o.order_ref.count(":") >= 3 else ""
            if role in ("tp", "sl") and o.oca_group:
                groups.setdefault(o.oca_group, {})[role] = o
        ordered = sorted(groups, key=lambda g: g != (lot.get("oca_group") or ""))
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
            if entry is not None and entry["state"] == "started":
                self.book.finish_entry(trade_date, slot, "failed",
                                       f"leftover sale cancelled: {refusal}").get(
                    timeout=self._t())
            return
        self.log.warning("resuming sale {} left by a previous run", order.order_ref)
        contract: ContractInfo | None = None
        try:
            contract = self.book.contract(order.con_id).get(timeout=self._t())
            quote = self.conn.quotes([contract], 2.0).get(timeout=self._t(3))[0]
            prices = [quote.bid] if quote.bid else []
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
            if entry is not None and entry["state"] == "started":
                self.book.finish_entry(
                    trade_date, slot, "failed", "interrupted sale did not fill"
                ).get(timeout=self._t())
