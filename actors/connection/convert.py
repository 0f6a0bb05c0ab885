"""ib_insync objects <-> the engine's records (trading/model.py): the one place that
knows both shapes, so nothing past the Connection sees an ib_insync object."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from ib_insync import Contract, Order, Ticker, Trade
from ib_insync.objects import Fill

from trading.model import ContractInfo, FillInfo, OrderInfo, OrderRequest, Quote


def num(value: Any) -> float | None:
    """A number IB sent, or None for its "no value" markers (NaN, inf, 1.7e308, -1)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f) or f >= 1e300 or f == -1:
        return None
    return f


def contract_info(c: Contract, min_tick: float = 0.01) -> ContractInfo:
    try:
        multiplier = int(float(c.multiplier or 1))
    except ValueError:
        multiplier = 1
    return ContractInfo(
        con_id=int(c.conId or 0),
        symbol=c.symbol,
        sec_type=c.secType,
        expiry=(c.lastTradeDateOrContractMonth or "")[:8],
        strike=float(c.strike or 0.0),
        right=c.right or "",
        multiplier=multiplier,
        exchange=c.exchange or "SMART",
        currency=c.currency or "USD",
        local_symbol=c.localSymbol or "",
        trading_class=c.tradingClass or "",
        min_tick=min_tick,
    )


def to_contract(info: ContractInfo) -> Contract:
    return Contract(
        secType=info.sec_type,
        conId=info.con_id,
        symbol=info.symbol,
        lastTradeDateOrContractMonth=info.expiry,
        strike=info.strike,
        right=info.right,
        multiplier=str(info.multiplier) if info.sec_type == "OPT" else "",
        exchange=info.exchange or "SMART",
        currency=info.currency,
        localSymbol=info.local_symbol,
        tradingClass=info.trading_class,
    )


def to_order(req: OrderRequest, account: str) -> Order:
    """The ib_insync Order for `req`, on `account` (always explicit, see _order_account)."""
    order = Order(
        action=req.action,
        totalQuantity=req.qty,
        orderType=req.order_type,
        orderRef=req.order_ref,
        tif=req.tif,
        account=account,
        transmit=True,
    )
    if req.lmt_price is not None:
        order.lmtPrice = req.lmt_price
    if req.aux_price is not None:
        order.auxPrice = req.aux_price
    if req.oca_group:
        order.ocaGroup = req.oca_group
        order.ocaType = req.oca_type or 1
    return order


def what_if_order(req: OrderRequest, account: str) -> Order:
    """The order a whatIf asks about: only what moves the margin figures."""
    order = Order(action=req.action, totalQuantity=req.qty, orderType=req.order_type,
                  tif=req.tif, account=account)
    if req.lmt_price is not None:
        order.lmtPrice = req.lmt_price
    return order


def order_info(trade: Trade, error: tuple[int, str] | None = None) -> OrderInfo:
    o, s = trade.order, trade.orderStatus
    code, msg = error or (0, "")
    return OrderInfo(
        order_id=int(o.orderId),
        perm_id=int(o.permId or s.permId or 0),
        order_ref=o.orderRef or "",
        con_id=int(trade.contract.conId or 0),
        local_symbol=trade.contract.localSymbol or "",
        action=o.action,
        order_type=o.orderType,
        qty=float(o.totalQuantity),
        lmt_price=num(o.lmtPrice),
        aux_price=num(o.auxPrice),
        oca_group=o.ocaGroup or "",
        status=s.status,
        # A completed order (reqCompletedOrders) has no order status of its own: its
        # filled quantity is the order's filledQuantity.
        filled=float(s.filled or num(getattr(o, "filledQuantity", None)) or 0),
        avg_fill_price=float(s.avgFillPrice or 0),
        error_code=code,
        error_message=msg,
        time=time.time(),
    )


def with_status(info: OrderInfo, status: str) -> OrderInfo:
    return replace(info, status=status)


def fill_info(fill: Fill) -> FillInfo:
    e = fill.execution
    commission = fill.commissionReport.commission if fill.commissionReport.execId else None
    return FillInfo(
        exec_id=e.execId,
        order_id=int(e.orderId),
        perm_id=int(e.permId),
        order_ref=e.orderRef or "",
        con_id=int(fill.contract.conId or 0),
        local_symbol=fill.contract.localSymbol or "",
        side=e.side,
        qty=float(e.shares),
        price=float(e.price),
        time=e.time.timestamp() if e.time else time.time(),
        commission=commission,
    )


def quote_of(t: Ticker) -> Quote:
    greeks = t.modelGreeks or t.bidGreeks or t.askGreeks
    return Quote(
        con_id=int(t.contract.conId or 0) if t.contract else 0,
        bid=num(t.bid),
        ask=num(t.ask),
        last=num(t.last),
        # When the last tick arrived (ib_insync stamps a ticker as its data is read off
        # the socket), not now: an open line keeps its old values through a silence.
        time=t.time.timestamp() if t.time else 0.0,
        delta=num(greeks.delta) if greeks else None,
        iv=num(greeks.impliedVol) if greeks else None,
        und_price=num(greeks.undPrice) if greeks else None,
        data_type=int(getattr(t, "marketDataType", 1) or 1),
    )
