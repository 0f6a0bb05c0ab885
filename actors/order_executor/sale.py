"""The sale (DESIGN "Trade lifecycle", steps 2-4): choose the put, cancel our resting
exits on it (IB rejects a sale that could trade against our own BUY orders) and restore
them after, sell with a limit walked from the mid toward the bid in a bounded number of
attempts, and never send a new attempt beside an earlier one that filled or still works."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.connection.loop import BrokerCallError, IbRefusedError, NotConnected
from actors.order_executor.entry_prep import PreparedEntry, wanted_strikes
from actors.order_executor.guard import EntryRefused, ib_refused
from actors.order_executor.part import ExecutorPart
from trading.fills import sold_by
from trading.freshness import stale_reason
from trading.model import ContractInfo, OrderInfo, OrderRequest
from trading.order_refs import sale_prefix, sale_ref
from trading.pricing import limit_walk
from trading.records import Lot
from trading.refusals import MARKET_DATA_TYPES, refusal
from trading.risk import OrderRefused
from trading.steps import Steps
from trading.strikes import choose_expiry_by_rule, choose_strike_by_delta


@dataclass
class ExitCancels:
    """Our exits on the contract being cancelled before its sale: the lots marked
    unprotected, their legs (lot id, role, order id), and the cancels' pending answer
    (Connection's PendingCall, or the error that kept them from being sent)."""

    lot_ids: list[int]
    legs: list[tuple[int, str, int]]
    pending: Any


class SaleMixin(ExecutorPart):
    """Mixed into OrderExecutor (which provides cfg, conn, book, intents, log, alerts …)."""

    _prepared: PreparedEntry | None
    _steps: Steps | None
    _cancels: ExitCancels | None  # sent, not yet answered (_exits_cancelled)
    _remembered: Any  # the book's future for remember_contract, read before the sale
    _lookups: tuple[Any, Any] | None  # executions and open orders asked ahead of the sale
    _quote_asked: Any  # the sale's quote asked ahead (PendingCall), read by its 1st attempt
    _unrecorded: list[OrderInfo]  # cancel answers the book has not been given yet

    if TYPE_CHECKING:  # provided by OrderExecutor and its other mixins
        def _check_margin(self, contract: ContractInfo, price: float, spot: float) -> None: ...
        def place_exits(self, lot: Lot,
                        contract: ContractInfo | None = None) -> bool: ...

    def _step(self, name: str) -> None:
        if self._steps is not None:
            self._steps.mark(name)

    def _fresh_quotes(self, contracts: list[ContractInfo], wait: float,
                      need_delta: bool = False) -> list[Any]:
        """Quotes whose last tick is within strategy.max_quote_age, or EntryRefused
        ("wait"): a line left open through a silence answers at once with old values."""
        max_age = self.cfg.strategy.max_quote_age
        try:
            quotes = self.conn.quotes(contracts, wait, need_delta, max_age).get(
                timeout=self._t(wait + 2))
        except IbRefusedError as exc:  # 354, 10167, 10197 ...: named, not a silent wait
            raise ib_refused(exc.refusal, "no quote: ") from exc
        return self._checked_quotes(contracts, quotes)

    def _sale_quote(self, contract: ContractInfo) -> Any:
        """The attempt's quote: the one asked with the lookups, before the exits' cancels
        went out, if it was (the first attempt), else asked now. Asked after the cancels,
        the loop answered it only once it had read all their answers (bench.entry: 28 ms
        of a 52 ms entry, 36 legs cancelled)."""
        asked, self._quote_asked = self._quote_asked, None
        if asked is not None:
            try:
                quote = asked.result()[0]
            except IbRefusedError as exc:
                raise ib_refused(exc.refusal, "no quote: ") from exc
            except Exception as exc:  # unanswered in time: asked once more, as before
                self.log.warning("sale quote asked ahead failed ({}): asking again", exc)
            else:
                # Past strategy.max_quote_age by now (an earlier attempt was walked
                # meanwhile), or without a side: asked afresh, as it would have been.
                if quote.bid is not None and quote.ask is not None and not stale_reason(
                        quote, time.time(), self.cfg.strategy.max_quote_age):
                    return self._checked_quotes([contract], [quote])[0]
        return self._fresh_quotes([contract], 2.0)[0]

    def _checked_quotes(self, contracts: list[ContractInfo], quotes: list[Any]) -> list[Any]:
        """The quotes as _fresh_quotes passes them: live data where a sale needs it, and
        a last tick within strategy.max_quote_age."""
        max_age = self.cfg.strategy.max_quote_age
        now = time.time()
        gw = self.cfg.gateway
        for c, q in zip(contracts, quotes, strict=True):
            if q.data_type != 1 and (gw.mode == "live" or gw.market_data_type == 1):
                # Delayed or frozen quotes never price a live sale.
                raise EntryRefused(
                    f"{c.local_symbol or c.symbol}: {MARKET_DATA_TYPES.get(q.data_type)} "
                    f"quote (type {q.data_type}) in {gw.mode} mode with market_data_type "
                    f"{gw.market_data_type}: no sale is priced on it")
            why = stale_reason(q, now, max_age, c.local_symbol or c.symbol)
            if why and q.bid is not None:  # no bid at all: the callers' own "no quote"
                raise EntryRefused(why, "wait")
        return quotes

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
        cancels = self._start_cancelling_exits(contract)
        self._exits_cancelled()
        return cancels.lot_ids

    def _start_earlier_sale_lookups(self, contract: ContractInfo) -> None:
        """The broker's executions and open orders, and the contract's quote, asked now
        (before the exits' cancels go out) and read by the first _earlier_sale and the
        first attempt's _sale_quote: they are answered while the cancels are, not after
        them (bench.entry: 12 ms of its p50). All are asked before any is waited for
        (the Connection passes them on back to back, in its mailbox's order, ahead of the
        cancels). One that cannot be sent is asked again where it is read."""
        self._lookups = self._quote_asked = None
        try:  # a Connection being restarted raises here: nothing asked ahead
            conn = self.conn
            # Open orders as the session holds them: the gateway's answer would hold this
            # client's orders only, which the session has already (see start_open_orders).
            asks = (conn.start_executions(), conn.start_open_orders(ask=False))
            quote = conn.start_quotes([contract], 2.0, False, self.cfg.strategy.max_quote_age)
        except Exception as exc:
            self.log.warning("earlier sales: broker lookups not sent ahead: {}", exc)
            return
        try:
            self._lookups = (asks[0].get(timeout=self._t()), asks[1].get(timeout=self._t()))
        except Exception as exc:
            self.log.warning("earlier sales: broker lookups not sent ahead: {}", exc)
        try:
            self._quote_asked = quote.get(timeout=self._t())
        except Exception as exc:
            self.log.warning("sale quote not asked ahead: {}", exc)

    def _start_cancelling_exits(self, contract: ContractInfo) -> ExitCancels:
        """Mark every open lot on the contract unprotected (one transaction, waited: the
        mark is what a restart or the repair job reads if we die before the restore),
        then send the cancels of their exits without waiting for the answers: the
        sale's lookups and quote (asked just before) are answered meanwhile.
        _exits_cancelled() waits for them, and no intent is written and nothing is sent
        or re-priced on the contract before it has (_sell, _earlier_sale)."""
        # On the executor's own connection (one transaction), not through the book's
        # mailbox, which may be storing a fill or answering the dashboard (bench.entry:
        # lots_marked 2.4-3.6 ms p50 through it).
        lots = self.intents.unprotect_lots_on(contract.con_id)
        self._step("lots_marked")
        legs = [(lot.id, role, order_id) for lot in lots for role in ("tp", "sl")
                if (order_id := lot.exit_order_id(role))]
        pending: Any = None
        if legs:
            # All at once, one round trip: one by one cost an ack each, before the sale
            # (bench.entry: 6-12 ms per lot holding exits on the contract).
            try:
                pending = self.conn.start_cancel_orders([o for *_, o in legs]).get(
                    timeout=self._t())
            except Exception as exc:
                pending = exc
        self._cancels = ExitCancels([lot.id for lot in lots], legs, pending)
        return self._cancels

    def _exits_cancelled(self, record: bool = True) -> None:
        """The cancels _start_cancelling_exits sent, answered (or timed out) and logged;
        at once when there are none or they were waited for already. Their answers go to
        the book now, or (`record=False`, just before the sale) once the sale is sent:
        nothing reads them before, and their commit would hold up the SELL."""
        cancels, self._cancels = self._cancels, None
        if cancels is None:
            if record:
                self._record_cancels()
            return
        if cancels.legs:
            answers: list[Any]
            if isinstance(cancels.pending, Exception):
                answers = [str(cancels.pending)] * len(cancels.legs)
            else:
                try:
                    answers = list(cancels.pending.result())
                except Exception as exc:
                    answers = [str(exc)] * len(cancels.legs)
            for (lot_id, role, order_id), answer in zip(cancels.legs, answers, strict=True):
                if isinstance(answer, str):
                    self.log.warning("cancel of lot {} {} {} failed: {}", lot_id, role,
                                     order_id, answer)
                else:
                    self._unrecorded.append(answer)
        if cancels.lot_ids:  # one line, not one per lot: this is the sale's critical path
            self.log.info("cancelled exits of lot{} {} before selling the same contract",
                          "s" if len(cancels.lot_ids) > 1 else "",
                          ", ".join(map(str, cancels.lot_ids)))
        if record:
            self._record_cancels()
        self._step("exits_cancelled")

    def _record_cancels(self) -> None:
        answers, self._unrecorded = self._unrecorded, []
        self._record_all(answers)

    def _restore(self, lot_ids: list[int]) -> None:
        self._exits_cancelled()  # never placed again while their cancels are unanswered
        for lot_id in lot_ids:
            lot = self.book.lot(lot_id).get(timeout=self._t())
            if lot and lot.state != "closed":
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
        # the key by which the broker is asked). Read on the executor's own connection:
        # the sale rows are written there (record_intent below), so it knows every one,
        # and it does not wait behind the book's mailbox (the cancels' answers queue
        # their writes there just before).
        first = self.intents.next_sale_serial(trade_date, slot)
        self._step("sale_serial")
        for attempt in range(first, first + s.sale_attempts):
            # Never two sales for one slot: an earlier attempt (this run's, or a run that
            # gave up) may have filled or still be working whatever this session thinks.
            # Asked of the broker even for the slot's first attempt: a book restored from
            # a backup, or a file lost, would not know a sale the broker has.
            earlier, found = self._earlier_sale(trade_date, slot, contract)
            self._step("earlier_sale")
            if earlier == "filled" and found is not None:
                return True, found, "filled (an earlier attempt)"
            if earlier != "clear":
                return False, None, earlier
            if attempt > first:
                self._restore(cancelled)  # after every failed attempt, at once
                self._cancel_conflicting_exits(contract)
            quote = self._sale_quote(contract)
            self._step("quote")
            if quote.bid is None or quote.ask is None:
                reason = "no quote"
                continue
            prices = self._sale_prices(quote, contract)
            if attempt > first:  # before each sale (the first was checked before any cancel)
                self._check_margin(contract, prices[0], spot)
            # IB takes no SELL beside our BUY exits on the contract: their cancels are
            # answered before the intent is written and the sale goes (they were sent
            # after the lookups and the quote were asked, and are answered meanwhile).
            # Not after the intent, though one commit sooner: a kill while they are
            # answered would leave an intent never sent, which a restart reads as maybe
            # sent (and a short on its contract as its fill), a window wider than the
            # one between the write and the send.
            self._exits_cancelled(record=False)
            if stale_reason(quote, time.time(), s.max_quote_age):
                # The cancels were slow to answer (a gateway in trouble): never a price
                # from a quote past strategy.max_quote_age; asked again (a stale answer
                # refuses the entry, as at the first look).
                self.log.warning("sale quote aged while the exits' cancels were answered:"
                                 " asking again")
                quote = self._fresh_quotes([contract], 2.0)[0]
                if quote.bid is None or quote.ask is None:
                    reason = "no quote"
                    continue
                prices = self._sale_prices(quote, contract)
            if self._remembered is not None:  # asked before the cancels: a failure sells nothing
                remembered, self._remembered = self._remembered, None
                remembered.get(timeout=self._t())
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
            self._step("intent")
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
                if self._steps is not None:  # after the send: the line costs it nothing
                    self.log.info("sale attempt {} steps (ms): {}", attempt,
                                  self._steps.render())
                    self._steps = None
                self._record_cancels()  # the exits' cancel answers, one commit, now
            except OrderRefused as exc:
                # A guard refusal is not transient: no further attempt.
                self.book.mark_order(ref, status="refused", error=str(exc)).get(timeout=self._t())
                return False, None, f"refused before the broker: {exc}"
            except NotConnected as exc:
                # Nothing went out: said so, never left an `intent` (a restart reads an
                # intent as maybe sent, and a short on its contract as its fill).
                self.intents.mark_order(ref, status="cancelled", error=f"not sent: {exc}")
                return False, None, f"not sent: {exc}"
            self._record(info)
            if info.status == "Unknown":
                # The order may be live: never send another; reconciliation settles it.
                return False, None, "sale outcome unknown (no ack); left to reconciliation"
            named = refusal(info.error_code, info.error_message, "order", ref) \
                if info.is_dead and info.error_code else None
            if named is not None and named.blocking:
                # 201 permissions or margin, 321 read-only: no attempt can pass; the entry
                # says which and what to do (one ib_refused alert, not one per attempt).
                self.log.warning("sale attempt {} refused: {}", attempt, named.describe())
                raise ib_refused(named, "sale refused: ")
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
            asked, self._lookups = self._lookups, None
            try:
                if asked is not None:  # sent with the exits' cancels: answered meanwhile
                    fills = list(asked[0].result())
                    orders = list(asked[1].result())
                else:
                    fills = self.conn.executions().get(timeout=self._t())
                    orders = self.conn.open_orders().get(timeout=self._t())
                self._step("executions")
                live = [o for o in orders if (o.is_live or o.status == "PendingCancel")
                        and o.order_ref.startswith(prefix)]
                self._step("open_orders")
            except Exception as exc:
                return f"cannot confirm at the broker that no earlier attempt works: {exc}", None
            if live:
                self._exits_cancelled()  # nothing is re-priced beside our exits either
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

    def _wait_done(self, order_id: int, seconds: float) -> OrderInfo:
        """The order once done (filled, cancelled, rejected), else after `seconds`: told
        by the Connection's loop in the very event that ends it (watch_order), so a fill
        reaches this thread in one hop, not through the Connection's own thread."""
        answer = self.conn.watch_order(order_id, seconds).get(timeout=self._t())
        try:
            info: OrderInfo = answer.result(timeout=self._t(seconds))
        except TimeoutError as exc:
            raise BrokerCallError(f"no word on order {order_id} from the connection "
                                  f"within {self._t(seconds):.0f}s") from exc
        return info

    def _walk(self, info: OrderInfo, prices: list[float]) -> OrderInfo:
        interval = self.cfg.strategy.limit_walk_interval
        for price in prices:
            info = self._wait_done(info.order_id, interval)
            if info.is_filled or info.is_dead:
                return info
            try:
                info = self.conn.modify_limit(info.order_id, price).get(timeout=self._t())
            except OrderRefused as exc:
                self.log.error("walk stopped: {}", exc)
                break  # the order still rests at its last price: cancelled below
            if not (info.is_filled or info.is_dead):
                # On the executor's own connection, not the book's mailbox: a step that
                # reaches the bid fills at once, and the book is then storing this very
                # fill (bench.exits: fill -> executor knows 142 ms once, behind it).
                self.intents.mark_order(info.order_ref, status="submitted")
        info = self._wait_done(info.order_id, interval)
        if info.is_filled or info.is_dead:
            self._record(info)
            return info
        info = self.conn.cancel_order(info.order_id).get(timeout=self._t())
        self._record(info)
        return info
