"""The entry's guards (DESIGN "Trade lifecycle", step 1): link, market hours, pause,
kill switch, the gateway's account, the risk limits, the order's own bounds and the
broker's margin check. Each says no by raising EntryRefused."""

from __future__ import annotations

from typing import Any

from actors.connection.loop import IbRefusedError
from actors.order_executor.part import ExecutorPart
from trading.calendar import ET, TradingCalendar
from trading.margin import margin_refusal
from trading.model import ContractInfo, LinkState, LinkStatus, OrderRequest
from trading.order_refs import CHECK_REF, WHAT_IF_REF
from trading.refusals import Refusal
from trading.risk import OrderRefused, order_violation, verify_account


class EntryRefused(Exception):
    """A precondition does not hold; the message says which.

    `kind`: "wait" (link or market: the schedule retries until its deadline),
    "done" (the slot is taken already), "skip" (a policy says no: paused, kill
    switch, risk limits, account mismatch; the slot is recorded as skipped).
    """

    def __init__(self, message: str, kind: str = "skip", alert: str = "",
                 refusal: Refusal | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.alert = alert  # an alert kind a refusal by hand raises too ("" = none)
        # IB's refusal behind it (trading/refusals.py): alerted as `ib_refused` once per
        # cause per day, instead of the alert a policy refusal raises.
        self.refusal = refusal


def ib_refused(r: Refusal, what: str = "") -> EntryRefused:
    """An IB refusal as the entry's outcome: skipped (or failed by hand) where waiting
    cannot help, a wait otherwise; the message carries IB's code, text and the fix."""
    return EntryRefused(f"{what}{r.describe()}", "skip" if r.blocking else "wait",
                        refusal=r)



class GuardMixin(ExecutorPart):
    """Mixed into OrderExecutor (which provides cfg, clock, calendar, log, book, conn …)."""

    clock: Any
    calendar: TradingCalendar

    def check_preconditions(self, trade_date: str, slot: str, manual: bool = False) -> None:
        """Raise EntryRefused naming the first guard that does not hold."""
        self._check_trading_allowed()
        entry = self.book.entry(trade_date, slot).get(timeout=self._t())
        retry_ok = ("interrupted", "missed", "failed") if manual else ("interrupted",)
        if entry is not None and entry.state not in retry_ok:
            raise EntryRefused(f"entry {trade_date} {slot} already {entry.state}", "done")
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
        read_only = self.directory.refusals.read_only
        if read_only is not None:
            # The gateway refuses every order: no entry starts (the link card says so).
            raise ib_refused(read_only, "read-only API: ")
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
        notional = sum(lot.strike * lot.mult * lot.qty for lot in lots)
        if notional >= risk.max_short_notional:
            raise EntryRefused(f"max short-put notional reached ({notional:.0f})")
        if risk.daily_loss_limit > 0:
            realized = self.book.realized_on_date(trade_date).get(timeout=self._t())
            if realized <= -risk.daily_loss_limit:
                raise EntryRefused(f"daily loss limit hit ({realized:.2f})")

    def _check_not_held_long(self, contract: ContractInfo) -> None:
        """The account holds the chosen put long (an exit that filled past its lot, a buy
        by hand; alerted critical): a sale would net against it, and the new lot and its
        exits would cover more than the short (the soak, seed 5106, quantity 3)."""
        longs = self.book.get_kv("long_positions").get(timeout=self._t()) or []
        if contract.con_id in longs:
            raise EntryRefused(
                f"the account holds {contract.local_symbol} long (see the outside_position "
                f"alert): a sale would net against it; close the long first",
                alert="risk_limit")

    def _check_notional(self, contract: ContractInfo) -> None:
        """risk.max_short_notional counts the sale being judged (its strike x multiplier x
        quantity) on top of the lots held, as max_contracts_per_day counts its quantity."""
        cap = self.cfg.risk.max_short_notional
        qty = self.cfg.strategy.quantity
        lots = self.book.open_lots().get(timeout=self._t())
        held = sum(lot.strike * lot.mult * lot.qty for lot in lots)
        # A contract reported without a multiplier reads 1 (ContractInfo's default): an
        # equity option's is 100, and counting 1 would let a sale 100x the cap through.
        mult = contract.multiplier if contract.multiplier > 1 else 100
        this = contract.strike * mult * qty
        if held + this > cap:
            raise EntryRefused(
                f"max short-put notional: {held:.0f} held + {this:.0f} for this sale "
                f"({qty} x {contract.local_symbol}) > {cap:.0f}", alert="risk_limit")

    def _check_order_sanity(self, contract: ContractInfo, price: float, spot: float) -> None:
        """The broker-side guard, asked early: refuse before any exit is cancelled."""
        req = OrderRequest(
            CHECK_REF, contract, "SELL", "LMT", self.cfg.strategy.quantity, price, spot=spot
        )
        refusal = order_violation(req, self.cfg.risk, spot)
        if refusal:
            raise EntryRefused(f"order out of bounds: {refusal}")

    def _check_margin(self, contract: ContractInfo, price: float, spot: float) -> None:
        """The broker's whatIf of the sale: refused (risk_limit) when the initial margin
        after it would pass risk.max_margin_use of net liquidation or the available funds
        would go negative. An unanswered whatIf is a reason to wait, not to sell."""
        req = OrderRequest(WHAT_IF_REF, contract, "SELL", "LMT", self.cfg.strategy.quantity,
                           lmt_price=price, tif="DAY", spot=spot)
        try:
            answer = self.conn.what_if(req).get(timeout=self._t())
        except OrderRefused as exc:
            raise EntryRefused(f"margin check refused: {exc}", alert="risk_limit") from exc
        except IbRefusedError as exc:
            # 321 here is the Read-Only API, not margin: the refusal says which.
            what = "read-only API: " if exc.refusal.key == "321:read_only" else \
                "margin check refused: "
            raise ib_refused(exc.refusal, what) from exc
        except Exception as exc:
            raise EntryRefused(f"margin check unanswered: {exc}", "wait") from exc
        refusal = margin_refusal(answer, self.cfg.risk.max_margin_use)
        if refusal:
            raise EntryRefused(f"margin: {refusal}", alert="risk_limit")
        self.log.info("margin check: initial {:.2f} -> {:.2f} of net liquidation {:.2f}",
                      answer.init_before, answer.init_after, answer.net_liquidation)
