"""The parts of the gateway a request handler works with, named by what they are (a
Protocol: ibsim/server.py's Gateway has them), so the request modules (handlers,
lookups, quotes, ordering's checks, services) depend on the parts and never on the
gateway class: the floor plan reads wire -> session -> parts -> gateway, without a
loop. A handler is `async handler(parts, session, fields)`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ibsim.broker import Broker
    from ibsim.client import Session
    from ibsim.events import Event
    from ibsim.extras import Extras
    from ibsim.market import Market


class Parts(Protocol):
    # What IB holds: the orders, positions and executions; the market; the shared walks.
    broker: Broker
    market: Market
    extras: Extras
    # Who is connected, and the gateway's log.
    sessions: list[Session]
    log: Any
    # The conditions a request is answered under (faults, settings).
    farms_broken: set[str]
    outage_code: int
    mute_until: float
    read_only: bool
    md_modes: dict[str, str]
    tick_mode: str
    slow_orders: float

    @property
    def in_outage(self) -> bool: ...

    def spot_ago(self, delay: timedelta) -> float: ...

    # Sending: the broker's events to whoever hears them, and a client's account view.
    def _dispatch(self, events: list[Event]) -> None: ...

    def _send_account_values(self, s: Session) -> None: ...

    def _send_portfolio(self, s: Session, pos: dict[str, Any]) -> None: ...

    # Placing an order now or later (ordering's checks place a combo).
    def _place(self, order: dict[str, Any]) -> None: ...

    async def _place_later(self, order: dict[str, Any], delay: float) -> None: ...

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> Any: ...


Handler = Callable[["Parts", "Session", list[str]], Awaitable[None]]
