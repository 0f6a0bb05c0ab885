"""What every actor is given: one frozen bundle instead of five constructor arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from actors.directory import ActorDirectory
from config.loader import Config
from trading.calendar import TradingCalendar
from trading.clock import Clock


class Alerter(Protocol):
    def raise_alert(
        self,
        kind: str,
        message: str,
        severity: str = "warning",
        details: dict[str, Any] | None = None,
    ) -> Any: ...

    def recent(self, limit: int = 50) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class EngineContext:
    cfg: Config
    directory: ActorDirectory
    clock: Clock
    alerts: Alerter
    calendar: TradingCalendar
    started_at: float  # when the engine process started (the dashboard's uptime)
