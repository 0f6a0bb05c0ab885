"""Sliced fills (IB fills a quantity > 1 in parts): a lot's size and price from its
slices, and what an exit slice does to a lot. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

# The exits' OCA type. IB: 1 = cancel the other orders of the group at a fill (also a
# partial one), 2 = reduce the others proportionately "with block" (overfill
# protection: only one order of the group can be routed at a time), 3 = reduce with no
# block. With 1, a TP that fills 1 of 3 cancels the SL: 2 contracts left short with no
# stop. With 2, the SL shrinks to what is still short and the group stays one order at
# a time, so the two legs can never fill more than the position between them.
EXIT_OCA_TYPE = 2


class Slice(Protocol):
    """A fill's size and price (a stored fill, or the broker's execution)."""

    @property
    def qty(self) -> float | None: ...

    @property
    def price(self) -> float | None: ...


def vwap(fills: Iterable[Slice]) -> tuple[int, float]:
    """(quantity, volume-weighted price) of fills; (0, 0.0) if none."""
    qty = 0.0
    notional = 0.0
    for f in fills:
        q = float(f.qty or 0)
        qty += q
        notional += q * float(f.price or 0.0)
    if qty <= 0:
        return 0, 0.0
    return round(qty), round(notional / qty, 6)


def first_contracts_vwap(fills: Iterable[Slice], qty: int) -> float | None:
    """The volume-weighted price of the first `qty` contracts of `fills`, in their order;
    None when they hold fewer. A lot's exit is the buys that covered its contracts: a
    further one (both legs of an OCA pair filled in one instant, an overfill) is a long
    the account now holds, not a part of the lot's exit price."""
    need = float(qty)
    got = notional = 0.0
    for f in fills:
        take = min(float(f.qty or 0), need - got)
        if take <= 0:
            break
        got += take
        notional += take * float(f.price or 0.0)
    if qty <= 0 or got < need - 1e-9:
        return None
    return round(notional / got, 6)


def exit_slice(lot_qty: int, slice_qty: float) -> int:
    """Contracts an exit slice closes, split off a lot of `lot_qty`: the slice's size,
    never more than the lot (a slice the size of the lot closes the lot itself)."""
    return max(0, min(int(lot_qty), round(slice_qty)))


def remaining(qty: float, filled: float) -> int:
    """An order's still-working quantity (what an OCA remainder protects)."""
    return max(0, round(qty - filled))


def sold_by(fills: Iterable[Any], prefix: str) -> tuple[str, int, float] | None:
    """The first sale whose orderRef starts with `prefix` (a slot's attempts) that the
    broker's executions show filled, as (orderRef, quantity, VWAP); None if none did."""
    mine = [f for f in fills if f.order_ref.startswith(prefix) and f.side in ("SLD", "SELL")]
    if not mine:
        return None
    ref = mine[0].order_ref
    qty, price = vwap(f for f in mine if f.order_ref == ref)
    return ref, qty, price


def sale_lot_fields(order_ref: str, trade_date: str, contract: Any, qty: int, price: float,
                    when: float, take_profit_ratio: float, stop_loss_ratio: float,
                    local_symbol: str = "") -> tuple[tuple[str, str] | None, dict[str, Any]]:
    """(entry, the `lots` row) a sale's fill opens: unprotected, exits priced from the
    fill. `contract` is a ContractInfo; entry is (trade date, slot) for a slot's sale
    (its entry is marked done with the lot), None for another sale of ours. The book
    (on the fill event) and the executor (on the order's status) build the same row."""
    from trading.order_refs import parse_sale
    from trading.pricing import exit_prices

    tp, sl = exit_prices(price, take_profit_ratio, stop_loss_ratio, contract.min_tick)
    sale = parse_sale(order_ref)
    entry = (sale.trade_date, sale.slot) if sale else None
    return entry, {
        "trade_date": trade_date, "slot": entry[1] if entry else "",
        "con_id": contract.con_id, "symbol": contract.symbol, "expiry": contract.expiry,
        "strike": contract.strike, "right": contract.right or "P",
        "local_symbol": contract.local_symbol or local_symbol,
        "multiplier": contract.multiplier or 100, "qty": int(qty), "entry_price": price,
        "entry_time": when, "order_ref": order_ref, "tp_price": tp, "sl_price": sl,
        "state": "unprotected",
    }
