"""What each mixin of the Connection uses of the actor, declared once (the actor
provides it: SupervisedActor's context, the session's state, the call to the loop)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ib_insync import IB, Ticker

from actors.directory import ActorDirectory
from config.loader import Config
from trading.model import LinkStatus
from trading.refusals import Refusal


def contract_key(contract: Any) -> int | str:
    """A request's contract as the refusal map keys it: its con_id, or (not qualified
    yet: a contract-details request) its description."""
    con_id = int(getattr(contract, "conId", 0) or 0)
    if con_id:
        return con_id
    return ":".join(str(getattr(contract, k, "")) for k in (
        "secType", "symbol", "exchange", "lastTradeDateOrContractMonth", "strike", "right"))


class ConnectionPart:
    """Base of the Connection's mixins; nothing here at run time but the annotations."""

    name: str
    cfg: Config
    directory: ActorDirectory
    ib: IB | None
    _status: LinkStatus
    _changed: asyncio.Event | None
    _order_errors: dict[int, tuple[int, str]]
    _lines: dict[int, Ticker]
    # The latest refusal per market-data line and per other request (whatIf, contract
    # details), by con_id: the code path that asked reads it (actor.py's _on_error).
    _line_refusals: dict[int, Refusal]
    _request_refusals: dict[int | str, Refusal]  # by contract_key(contract)
    _loose_refusals: list[Refusal]  # requests without a contract (the option chain)

    if TYPE_CHECKING:  # provided by Connection
        def _call(self, fn: Any, timeout: float | None = None) -> Any: ...
        def _submit(self, fn: Any, timeout: float | None = None) -> Any: ...
        def told(self, named: Refusal) -> Refusal: ...
