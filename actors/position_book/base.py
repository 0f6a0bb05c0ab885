"""What every part of the PositionBook finds on `self` (set by the actor itself or
by SupervisedActor): declared once so that each mixin names only the methods it
borrows from the others (under TYPE_CHECKING)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from book.store import Store
    from trading.calendar import TradingCalendar
    from trading.model import LinkStatus


class BookState:
    """Annotations only: nothing here exists at run time."""

    db: Store
    cfg: Any
    alerts: Any
    log: Any
    clock: Any
    directory: Any
    calendar: TradingCalendar
    started_at: float
    link: LinkStatus
    reconciled_at: float
    last_broker_event: float
    _checking: bool  # a position check is being fetched
    _check_again: bool  # a position changed while it was: check once more after it
    _gone_since: dict[int, float]  # con_id -> when first seen gone unexplained (monotonic)
    _shares_changed: tuple[Any, float] | None  # a share count not yet settled, since when
