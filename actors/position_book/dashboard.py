"""The dashboard's views (ZeroMQ `status`, `positions`, `orders`, `trades`,
`pnl_history`) and the daily P&L snapshot. The read models live in book/views.py;
the book gives them their inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.position_book.base import BookState
from book import views
from trading.calendar import ET
from trading.model import ContractInfo


class DashboardMixin(BookState):
    """Mixed into PositionBook."""

    _views_cache: views.SnapshotCache | None
    _warnings: list[str]

    if TYPE_CHECKING:  # provided by RecordsMixin
        def contract(self, con_id: int) -> ContractInfo | None: ...

    # ---- queries for the dashboard ------------------------------------------------------

    def _today(self) -> str:

        return self.clock.now().astimezone(ET).date().isoformat()

    def _quotes(self, con_ids: list[int]) -> dict[int, Any]:
        # Shared by MarketData (never a call into its mailbox: a view must not wait
        # behind a subscription that waits behind the gateway).
        shared = self.directory.quotes
        return {c: shared[c] for c in con_ids if c in shared}

    def _spy(self) -> Any:
        return self.directory.quotes.get(self.directory.spy_con_id)

    # The read models live in book/views.py; the book gives them their inputs.

    def _snap(self) -> views.BookSnapshot:
        if self._views_cache is None or self._views_cache.store is not self.db:
            self._views_cache = views.SnapshotCache(self.db)
        return self._views_cache.get(self._today())

    def positions_view(self) -> dict[str, Any]:
        spy = self._spy()
        return views.positions_view(
            self._snap(), self._quotes, spy.mid if spy else None,
            self.clock.now().astimezone(ET).date(), self.started_at,
        )

    def orders_view(self) -> dict[str, Any]:
        return views.orders_view(self.db, self.contract)

    def trades_view(self) -> dict[str, Any]:
        return views.trades_view(self.db)

    def status_view(self) -> dict[str, Any]:
        d = self.directory
        link = views.LinkFacts(self.link, d.link_verified_at, d.last_message_at,
                               sorted(d.farms_broken), d.link_note)
        eng = views.EngineFacts(
            entry_times=self.cfg.schedule.entry_times,
            mode=self.cfg.gateway.mode,
            configured_account=self.cfg.gateway.account,
            warnings=self._warnings,
            started_at=self.started_at,
            clock_iso=self.clock.now().isoformat(),
            kill_switch_config=self.cfg.risk.kill_switch,
            reconciled_at=self.reconciled_at,
            alert_delivery=self.alerts.delivery_status(),
        )
        return views.status_view(self._snap(), self._spy(), self._today(), link, eng)

    def pnl_history_view(self) -> dict[str, Any]:
        return views.pnl_history_view(self.db)

    def query(self, op: str, args: dict[str, Any]) -> Any:
        views = {
            "status": self.status_view,
            "positions": self.positions_view,
            "orders": self.orders_view,
            "trades": self.trades_view,
            "pnl_history": self.pnl_history_view,
        }
        return views[op]()

    def snapshot(self) -> None:
        view = self.positions_view()
        # An unknown open P&L is stored as unknown (NULL), never as 0.
        self.db.snapshot_pnl(
            self._today(), self.db.realized_total(), view["totals"]["pnl"], len(view["lots"])
        )
