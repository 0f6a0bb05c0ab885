"""The dashboard's views (ZeroMQ `status`, `positions`, `orders`, `trades`,
`pnl_history`) and the daily P&L snapshot. The read models live in book/views.py;
the book gives them their inputs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from actors.position_book.base import BookState
from book import views
from trading.calendar import ET
from trading.clock import RealClock
from trading.model import ContractInfo
from trading.refusals import ib_status


def with_ib_status(out: dict[str, Any], d: Any, gw: Any) -> dict[str, Any]:
    """IB's last refusal with its age, the Read-Only API, the market-data type and the
    send rate (trading/refusals.py) added to a `status` reply (issue 30)."""
    ib = ib_status(d.refusals, time.time(), gw.market_data_type, gw.mode, d.pacing)
    out.update(ib)
    if ib["read_only"] is not None:
        # The link card's word for it: reads work, every order is refused.
        out["link"]["read_only"] = True
        out["link"]["note"] = "read-only API: " + ib["read_only"]["fix"]
        out["ready_to_trade"] = False
    else:
        out["link"]["read_only"] = False
    return out


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
        out = views.status_view(self._snap(), self._spy(), self._today(), link, eng)
        # One clock on the page (issue 30): a simulated engine clock (the demo's) shifts
        # every time the page shows onto it, and the page says so.
        out["engine"]["simulated"] = not isinstance(self.clock, RealClock)
        return with_ib_status(out, d, self.cfg.gateway)

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
