"""Every message between actors: frozen dataclasses carrying plain values only.

Only the Connection actor touches ib_insync objects; what leaves it is one of
these, so no other actor can reach into the library's state from its thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trading.model import FillInfo, LinkState, LinkStatus, OrderInfo, PositionInfo, Quote
from trading.refusals import Refusal


@dataclass(frozen=True)
class LinkChanged:
    status: LinkStatus
    previous: LinkState


@dataclass(frozen=True)
class OrdersUpdated:
    """The order updates of one pass of the Connection's loop, in the order they came:
    the book stores them in one transaction (an entry's exit cancels answer by the dozen
    at once)."""

    orders: tuple[OrderInfo, ...]


@dataclass(frozen=True)
class FillReceived:
    fill: FillInfo


@dataclass(frozen=True)
class PositionChanged:
    """A position or portfolio update from the gateway (it comes for every change of the
    account's positions, also those no order of ours explains)."""

    position: PositionInfo


@dataclass(frozen=True)
class CommissionReceived:
    exec_id: str
    commission: float


@dataclass(frozen=True)
class QuotesUpdated:
    quotes: tuple[Quote, ...]
    messages_received: int = 0  # the API client's message count so far (a rate gauge)


# ---- commands between actors -----------------------------------------------------------


@dataclass(frozen=True)
class RunEntry:
    trade_date: str
    slot: str
    manual: bool = False


@dataclass(frozen=True)
class PrepareEntry:
    """The slot comes within `schedule.prepare_lead`: look the contracts up and open the
    candidate lines now, so that the entry at the slot's second does not wait for them."""

    trade_date: str
    slot: str


@dataclass(frozen=True)
class EntryPrepared:
    """A preparation done off the executor's thread (its lookups take seconds, and a
    late fill's protection must not wait behind them): `prepared` is a PreparedEntry,
    or None when it failed (`error` says why)."""

    trade_date: str
    slot: str
    prepared: Any = None
    error: str = ""


@dataclass(frozen=True)
class SellShares:
    """Sell the shares an assignment of this lot delivered (strategy.on_assignment)."""

    lot_id: int


@dataclass(frozen=True)
class RepairExits:
    reason: str = "scheduled"


@dataclass(frozen=True)
class FitExits:
    """A further slice of its sale grew a lot: the executor makes its exit pair cover
    exactly what is held (the same orders, their quantity changed in place)."""

    lot_id: int


@dataclass(frozen=True)
class ProtectLot:
    """A lot was opened by a sale fill the broker reported (a late fill after the entry
    gave up, or one seen at reconnect): the executor gives it exits at once, unless it
    is already protected (the entry that sold it got there first)."""

    lot_id: int
    reason: str = "sale fill"


@dataclass(frozen=True)
class ChildFailed:
    name: str
    error: str = ""


@dataclass(frozen=True)
class CheckChildren:
    pass


@dataclass(frozen=True)
class EntryResult:
    accepted: bool
    state: str
    reason: str = ""
    lot_id: int | None = None
    details: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class IbRefused:
    """An IB error tied to a request the engine made, named (trading/refusals.py):
    Connection tells it to itself to alert off the IB loop thread."""

    refusal: Refusal
