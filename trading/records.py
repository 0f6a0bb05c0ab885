"""The book's records: one frozen dataclass per row kind of the SQLite book (book/).

Fields are the tables' columns, by the same names and types (`| None` where a column
is nullable). The book builds them with `from_row`; nobody else reads a row as a dict.
Times are epoch seconds (UTC); trade dates are 'YYYY-MM-DD' in New York time.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any, ClassVar, Literal, Protocol, Self

from trading.model import FillInfo

ExitRole = Literal["tp", "sl"]


class Columns(Protocol):
    """A row read by column name (a dict, or the database's own row type)."""

    def __getitem__(self, key: str, /) -> Any: ...


@cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


class _Row:
    """Built from a database row by column name (a column the record lacks is ignored)."""

    _FLAGS: ClassVar[tuple[str, ...]] = ()  # SQLite keeps booleans as 0/1

    @classmethod
    def from_row(cls, row: Columns) -> Self:
        values = {name: row[name] for name in _names(cls)}
        for name in cls._FLAGS:
            values[name] = bool(values[name])
        return cls(**values)


@dataclass(frozen=True)
class Lot(_Row):
    """A short option position the bot holds (the `lots` table): its entry, its exits
    (a take-profit and a stop-loss in one OCA group) and, once closed, its outcome."""

    id: int
    trade_date: str
    slot: str
    con_id: int
    symbol: str
    expiry: str  # YYYYMMDD ('' when unknown)
    strike: float
    right: str
    local_symbol: str
    multiplier: int
    qty: int
    entry_price: float
    entry_time: float
    order_ref: str  # the sale's orderRef ('' for an imported or split-off lot)
    tp_price: float | None
    sl_price: float | None
    tp_order_id: int | None
    sl_order_id: int | None
    tp_order_ref: str | None
    sl_order_ref: str | None
    oca_group: str | None
    state: str  # open | unprotected | closed
    exit_price: float | None
    exit_time: float | None
    close_reason: str | None
    realized_pnl: float | None
    commissions: float
    imported: bool
    pnl_estimated: bool  # entry_estimated or exit_estimated: the P&L is an estimate
    created_at: float
    updated_at: float
    entry_estimated: bool = False  # entry priced by the sale's limit, no execution known
    # Exit priced by a stop, a quote or a position check (and pnl_estimated), or
    # unconfirmed: a take-profit's limit, or expired worthless. Its execution, if one
    # comes, re-prices it.
    exit_estimated: bool = False

    _FLAGS: ClassVar[tuple[str, ...]] = (
        "imported", "pnl_estimated", "entry_estimated", "exit_estimated")

    def exit_order_ref(self, role: ExitRole) -> str | None:
        """The orderRef of the lot's take-profit ('tp') or stop-loss ('sl') order."""
        return self.tp_order_ref if role == "tp" else self.sl_order_ref

    def exit_order_id(self, role: ExitRole) -> int | None:
        """The broker's order id of the lot's take-profit ('tp') or stop-loss ('sl')."""
        return self.tp_order_id if role == "tp" else self.sl_order_id

    def exit_level(self, role: ExitRole) -> float | None:
        """The take-profit's limit ('tp') or the stop-loss's trigger ('sl') price."""
        return self.tp_price if role == "tp" else self.sl_price

    @property
    def mult(self) -> int:
        """The contract multiplier, 100 where the book has none (0)."""
        return self.multiplier or 100

    @property
    def put_call(self) -> str:
        """The option's right, a put where the book has none ('')."""
        return self.right or "P"


@dataclass(frozen=True)
class OrderIntent:
    """An order written down before the broker hears of it (the columns of an `orders`
    row the writer gives)."""

    order_ref: str
    lot_id: int | None
    trade_date: str | None
    role: str  # sale | tp | sl | restore | shares
    con_id: int
    action: str  # BUY | SELL
    order_type: str  # LMT | STP | MKT
    qty: float
    lmt_price: float | None
    aux_price: float | None
    oca_group: str | None


# An order's statuses while the broker may still change its fate: written and maybe
# sent, sent, acknowledged, or no answer in time. The reconciliation after a connect
# settles each (filled, cancelled, or live at the broker).
UNSETTLED_ORDER_STATUSES = ("intent", "sent", "submitted", "unknown")


@dataclass(frozen=True)
class OrderRecord(OrderIntent, _Row):
    """An order intent and what became of it (the `orders` table)."""

    id: int
    order_id: int | None
    perm_id: int | None
    status: str  # intent | sent | submitted | unknown | filled | cancelled | refused | ...
    error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StoredFill(_Row):
    """One execution as the book keeps it (the `fills` table), unique by exec_id."""

    exec_id: str
    order_ref: str | None
    order_id: int | None
    perm_id: int | None
    con_id: int | None
    side: str | None  # BOT | SLD
    qty: float | None
    price: float | None
    commission: float | None
    time: float | None
    lot_id: int | None

    @classmethod
    def of(cls, fill: FillInfo, lot_id: int | None) -> StoredFill:
        """The broker's execution as the book stores it, tied to `lot_id` (None: not
        ours, kept only for the price of a close made outside the engine)."""
        return cls(fill.exec_id, fill.order_ref, fill.order_id, fill.perm_id, fill.con_id,
                   fill.side, fill.qty, fill.price, fill.commission, fill.time, lot_id)


@dataclass(frozen=True)
class EntryAttempt(_Row):
    """A day's entry slot (the `entry_attempts` table): the guard against selling twice."""

    trade_date: str
    slot: str
    state: str  # started | interrupted | done | failed | skipped | missed | ...
    reason: str | None
    lot_id: int | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class PnlSnapshot(_Row):
    """A trade date's end-of-day figures (the `pnl_daily` table)."""

    trade_date: str
    realized: float | None
    unrealized: float | None
    open_lots: int | None


@dataclass(frozen=True)
class PnlDay:
    """Realized P&L of one day of closing (New York date) and the running total."""

    date: str
    realized: float
    cumulative: float
