"""What every mixin of the OrderExecutor uses of the actor, declared once (the actor
provides it: SupervisedActor's context, the intents store, the plumbing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trading.model import OrderInfo


class ExecutorPart:
    """Base of the executor's mixins; nothing here at run time but the annotations."""

    cfg: Any
    log: Any
    alerts: Any
    directory: Any
    intents: Any

    if TYPE_CHECKING:  # provided by OrderExecutor
        @property
        def conn(self) -> Any: ...
        @property
        def book(self) -> Any: ...
        def _t(self, extra: float = 0.0) -> float: ...
        def _record(self, info: OrderInfo) -> None: ...
        def _record_all(self, infos: list[OrderInfo]) -> None: ...
