"""The domain's records: frozen dataclasses of plain values (no I/O, no library
objects). Connection turns ib_insync objects into these; everything else uses them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LinkState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"  # socket up, gateway not (yet) linked to IB or not synced
    READY = "READY"  # gateway linked to IB and account synced: trading allowed


@dataclass(frozen=True)
class LinkStatus:
    state: LinkState
    since: float
    reason: str = ""
    gateway_linked: bool = False
    logged_in: bool = False
    account: str = ""  # the verified account every order carries ("" = none may be sent)
    updated_at: float = 0.0
    generation: int = 0  # connection attempt counter: a new socket, a new generation
    # What the gateway reports (managedAccounts()), and why no account passed the check.
    accounts: tuple[str, ...] = ()
    account_problem: str = ""


@dataclass(frozen=True)
class ContractInfo:
    con_id: int
    symbol: str
    sec_type: str
    expiry: str = ""  # YYYYMMDD for options
    strike: float = 0.0
    right: str = ""
    multiplier: int = 1
    exchange: str = "SMART"
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    min_tick: float = 0.01


@dataclass(frozen=True)
class Quote:
    con_id: int
    bid: float | None
    ask: float | None
    last: float | None
    # When the line's last tick arrived (epoch seconds; 0.0 = no tick yet), not when the
    # quote was read: a line left open keeps its last values, however old.
    time: float
    delta: float | None = None
    iv: float | None = None
    und_price: float | None = None
    # IB's market-data type of the line: 1 live, 2 frozen, 3 delayed, 4 delayed frozen.
    # A live sale is never priced on anything but 1.
    data_type: int = 1

    @property
    def mid(self) -> float | None:
        from trading.pricing import mid

        m = mid(self.bid, self.ask)
        return None if m is None else round(m, 4)


@dataclass(frozen=True)
class OrderRequest:
    order_ref: str
    contract: ContractInfo
    action: str  # BUY | SELL
    order_type: str  # LMT | STP | MKT
    qty: int
    lmt_price: float | None = None
    aux_price: float | None = None
    oca_group: str = ""
    oca_type: int = 0
    tif: str = "GTC"
    account: str = ""
    # The underlying's price the order was decided at: the guard refuses a sale
    # whose strike is too far from it (trading/risk.py).
    spot: float | None = None


@dataclass(frozen=True)
class OrderInfo:
    order_id: int
    perm_id: int
    order_ref: str
    con_id: int
    local_symbol: str
    action: str
    order_type: str
    qty: float
    lmt_price: float | None
    aux_price: float | None
    oca_group: str
    status: str  # ib_insync OrderStatus names, or "Unknown" when an ack timed out
    filled: float = 0.0
    avg_fill_price: float = 0.0
    error_code: int = 0
    error_message: str = ""
    time: float = 0.0

    @property
    def is_live(self) -> bool:
        return self.status in ("PendingSubmit", "PreSubmitted", "Submitted", "ApiPending")

    @property
    def is_filled(self) -> bool:
        return self.status == "Filled"

    @property
    def is_dead(self) -> bool:
        return self.status in ("Cancelled", "ApiCancelled", "Inactive")


@dataclass(frozen=True)
class FillInfo:
    exec_id: str
    order_id: int
    perm_id: int
    order_ref: str
    con_id: int
    local_symbol: str
    side: str  # BOT | SLD
    qty: float
    price: float
    time: float
    commission: float | None = None


@dataclass(frozen=True)
class PositionInfo:
    account: str
    contract: ContractInfo
    qty: float
    avg_cost: float


@dataclass(frozen=True)
class WhatIfInfo:
    """The broker's margin answer for a hypothetical order (whatIf): nothing is placed.

    `net_liquidation` is the account's current figure (the whatIf does not report it)."""

    init_before: float
    init_change: float
    init_after: float
    maint_after: float
    equity_with_loan_after: float
    commission: float
    net_liquidation: float

    @property
    def available_funds_after(self) -> float:
        # IB's AvailableFunds = equity with loan value - initial margin.
        return self.equity_with_loan_after - self.init_after


# ---- events published by Connection -------------------------------------------------
