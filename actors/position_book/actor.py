"""The PositionBook actor: lifecycle and message dispatch; its work is in the mixins."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from loguru import logger

from actors.context import EngineContext
from actors.messages import (
    CommissionReceived,
    FillReceived,
    LinkChanged,
    OrdersUpdated,
    PositionChanged,
)
from actors.position_book.assignment import AssignmentMixin
from actors.position_book.dashboard import DashboardMixin
from actors.position_book.fills import FillsMixin
from actors.position_book.positions import PositionsMixin
from actors.position_book.reconcile import ReconcileMixin, _BrokerSnapshot
from actors.position_book.records import RecordsMixin
from actors.position_book.settings import SettingsMixin
from actors.position_book.settlement import SettlementMixin
from actors.supervisor import SupervisedActor
from book import views
from book.store import Store
from config.loader import schedule_warnings
from trading.model import LinkState, LinkStatus


@dataclass(frozen=True)
class _RecheckPositions:
    """Look at the broker's positions again (a contract gone, its cause not yet seen)."""


class PositionBook(
    RecordsMixin, FillsMixin, SettingsMixin, ReconcileMixin, PositionsMixin,
    SettlementMixin, AssignmentMixin, DashboardMixin, SupervisedActor,
):
    name = "position_book"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.calendar = ctx.calendar
        self.started_at = ctx.started_at
        self.store: Store | None = None
        self.link = LinkStatus(LinkState.DISCONNECTED, time.time(), "engine starting")
        self.reconciled_at = 0.0
        self.last_broker_event = 0.0
        self._checking = False  # a position check is being fetched
        self._check_again = False  # a position changed while it was
        self._gone_since: dict[int, float] = {}
        self._shares_changed: tuple[Any, float] | None = None
        self._stale_close_logged: set[str] = set()  # expiries not judged on a stale quote
        self._views_cache: views.SnapshotCache | None = None
        self._warnings = schedule_warnings(self.cfg)  # the config does not change while running

    # ---- lifecycle ---------------------------------------------------------------------

    def on_start(self) -> None:
        self.log = logger.bind(actor=self.name)
        self.store = Store(self.cfg.storage.path)
        for kind in (FillReceived, CommissionReceived, OrdersUpdated, LinkChanged,
                     PositionChanged):
            self.directory.subscribe(kind, self.name)
        if self.directory.link is not None:  # restarted while the link was up
            self.link = self.directory.link
            if self.link.state == LinkState.READY:
                self.actor_ref.tell(LinkChanged(self.link, LinkState.DISCONNECTED))
        self.directory.views = self.query

    def on_stop(self) -> None:
        self._withdraw_views()
        if self.store is not None:
            self.store.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        self._withdraw_views()
        super().on_failure(exception_type, exception_value, traceback)

    def _withdraw_views(self) -> None:
        if self.directory.views == self.query:
            self.directory.views = None

    @property
    def db(self) -> Store:
        assert self.store is not None
        return self.store

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, (FillReceived, CommissionReceived, OrdersUpdated)):
            self.last_broker_event = time.monotonic()
        if isinstance(message, FillReceived):
            self.apply_fill(message.fill)
        elif isinstance(message, CommissionReceived):
            self.db.set_commission(message.exec_id, message.commission)  # and realized P&L
        elif isinstance(message, OrdersUpdated):
            self.apply_orders(message.orders)
        elif isinstance(message, PositionChanged):
            self._on_position(message.position)
        elif isinstance(message, LinkChanged):
            old, self.link = self.link, message.status
            problem = message.status.account_problem
            if problem and (problem, message.status.generation) != (
                old.account_problem, old.generation
            ):
                # Once per gateway session: the gateway is not the account the config
                # trades (issue 21). Nothing is sent and nothing reconciled against it.
                self.alerts.raise_alert(
                    "risk_limit", f"gateway account check failed: {problem}", "critical",
                    {"configured": self.cfg.gateway.account,
                     "managed": list(message.status.accounts), "mode": self.cfg.gateway.mode},
                )
            if message.status.state == LinkState.READY and not problem:
                self._fetch_for_reconcile(1)
        elif isinstance(message, _RecheckPositions):
            if not self._checking and self.link.state == LinkState.READY:
                self._fetch_for_reconcile(1, full=False)
        elif isinstance(message, _BrokerSnapshot):
            if not message.full:
                self._checking = False
                if self._check_again:
                    self._check_again = False
                    self.actor_ref.tell(_RecheckPositions())
            if message.fetched_at < self.last_broker_event:
                # Events came in while it was fetched: it may be older than the book.
                if message.attempt < 3:
                    self._fetch_for_reconcile(message.attempt + 1, message.full)
                    return None
                if message.full:
                    self.reconcile()  # in the actor: nothing interleaves
                    return None
                # A position check still overtaken by a stream of events is applied as
                # the repair tick applies its own: positions were read before executions,
                # so a fill of ours that moved them is among them.
            if message.full:
                self._apply_snapshot(message.fills, message.open_orders, message.positions,
                                     list(message.completed))
            else:
                self.reconcile_positions(message.positions, message.fills)
        return None

    def _recheck_positions_later(self, delay: float) -> None:
        timer = threading.Timer(delay, self._tell_recheck)
        timer.daemon = True
        timer.start()

    def _tell_recheck(self) -> None:
        if self.actor_ref.is_alive():
            self.actor_ref.tell(_RecheckPositions())

    def link_status(self) -> LinkStatus:
        return self.link
