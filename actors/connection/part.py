"""What each mixin of the Connection uses of the actor, declared once (the actor
provides it: SupervisedActor's context, the session's state, the call to the loop)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ib_insync import IB, Ticker

from config.loader import Config
from trading.model import LinkStatus


class ConnectionPart:
    """Base of the Connection's mixins; nothing here at run time but the annotations."""

    name: str
    cfg: Config
    ib: IB | None
    _status: LinkStatus
    _changed: asyncio.Event | None
    _order_errors: dict[int, tuple[int, str]]
    _lines: dict[int, Ticker]

    if TYPE_CHECKING:  # provided by Connection
        def _call(self, fn: Any, timeout: float | None = None) -> Any: ...
