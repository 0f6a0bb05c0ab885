"""The operator's switches (pause, kill switch) and the daily loss limit: what stops
entries while exits stay in place."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from actors.position_book.base import BookState
from trading.calendar import ET


class SettingsMixin(BookState):
    """Mixed into PositionBook."""

    if TYPE_CHECKING:  # provided by DashboardMixin
        def _today(self) -> str: ...

    def realized_on_date(self, trade_date: str) -> float:
        """Realized P&L of lots closed on `trade_date` (New York day)."""
        day = datetime.fromisoformat(trade_date).replace(tzinfo=ET)
        start = day.timestamp()
        return self.db.realized_on(start, start + 86400)

    def _check_daily_loss(self) -> None:
        """Past the day's loss limit: say so once; the executor refuses entries today."""
        limit = self.cfg.risk.daily_loss_limit
        if limit <= 0:
            return
        day = self._today()
        realized = self.realized_on_date(day)
        key = f"daily_loss_limit:{day}"
        if realized > -limit or self.db.get_kv(key):
            return
        self.db.set_kv(key, realized)
        self.log.error("daily loss limit hit on {}: realized {:.2f}", day, realized)
        self.alerts.raise_alert(
            "daily_loss_limit",
            f"realized P&L {realized:+.2f} on {day} is past the daily loss limit "
            f"-{limit:.2f}: no more entries today (exits stay in place)",
            severity="error",
        )

    def set_paused(self, paused: bool) -> dict[str, Any]:
        self.db.set_kv("paused", paused)
        self.log.warning("trading {} by operator", "paused" if paused else "resumed")
        return {"paused": paused}

    def set_kill_switch(self, on: bool) -> dict[str, Any]:
        """Stops entries; cancels nothing: exits and repairs keep running."""
        self.db.set_kv("kill_switch", on)
        self.log.warning("kill switch {} by operator", "ON" if on else "off")
        self.alerts.raise_alert(
            "kill_switch",
            "kill switch ON: no new entries; exits stay in place"
            if on
            else "kill switch off: entries allowed again",
            severity="warning",
        )
        return {"kill_switch": on}

    def kill_switch_on(self) -> bool:
        # The config's switch cannot be turned off from outside; the operator's can.
        return self.cfg.risk.kill_switch or bool(self.db.get_kv("kill_switch", False))

    def is_paused(self) -> bool:
        return bool(self.db.get_kv("paused", False))
