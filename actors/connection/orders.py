"""Connection's order calls (a part of the actor's class): place, re-price, wait, cancel,
the broker's margin figures, and what the session knows of orders, fills, positions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

from ib_insync import Trade
from loguru import logger

from actors.connection.convert import (
    contract_info,
    fill_info,
    num,
    order_info,
    to_contract,
    to_order,
    what_if_order,
    with_status,
)
from actors.connection.loop import (
    BrokerCallError,
    IbRefusedError,
    LoopThread,
    NotConnected,
    PendingCall,
)
from actors.connection.one_write import one_write
from actors.connection.part import ConnectionPart, contract_key
from trading.model import FillInfo, OrderInfo, OrderRequest, PositionInfo, WhatIfInfo
from trading.risk import OrderRefused, of_account, order_violation


@dataclass(eq=False)
class OrderWaiter:
    """One watch_order: its trade, the asker's future, the timer that ends the wait."""

    trade: Trade
    future: Future[OrderInfo]
    timer: asyncio.TimerHandle | None = None


class OrderCalls(ConnectionPart):
    """Mixed into Connection: these run on the actor thread and hand work to the loop."""

    _loop: LoopThread
    _order_waiters: list[OrderWaiter]  # watch_order's, touched on the loop thread only

    def what_if(self, req: OrderRequest, timeout: float | None = None) -> WhatIfInfo:
        """The broker's margin figures for `req` as if it filled (IB's whatIf): nothing
        is placed. Net liquidation is the account's current value (the whatIf lacks it)."""

        async def run() -> WhatIfInfo:
            assert self.ib is not None
            order = what_if_order(req, self._order_account([req]))
            contract = to_contract(req.contract)
            self._request_refusals.pop(contract_key(contract), None)
            state = await self.ib.whatIfOrderAsync(contract, order)
            refused = self._request_refusals.pop(contract_key(contract), None)
            if refused is not None:
                # 321 read-only (or another code): named, never "lacks initMarginBefore".
                raise IbRefusedError(replace(refused, request="whatIf"))
            if state is None:
                raise BrokerCallError(f"no whatIf answer for {req.contract.local_symbol}")
            net = next((num(v.value) for v in self.ib.accountValues(order.account)
                        if v.tag == "NetLiquidation" and v.currency in ("USD", "BASE")), None)
            figures = {k: num(getattr(state, k, None)) for k in (
                "initMarginBefore", "initMarginChange", "initMarginAfter", "maintMarginAfter",
                "equityWithLoanAfter")}
            missing = [k for k, v in figures.items() if v is None]
            if missing or net is None:
                raise BrokerCallError("whatIf answer lacks "
                                      + ", ".join(missing or ["net liquidation"]))
            self.directory.refusals.clear_read_only()  # the gateway took an order request
            return WhatIfInfo(
                init_before=figures["initMarginBefore"] or 0.0,
                init_change=figures["initMarginChange"] or 0.0,
                init_after=figures["initMarginAfter"] or 0.0,
                maint_after=figures["maintMarginAfter"] or 0.0,
                equity_with_loan_after=figures["equityWithLoanAfter"] or 0.0,
                commission=num(state.commission) or 0.0,
                net_liquidation=net,
            )

        return self._call(run, timeout)

    async def _wait_trade(
        self, trade: Trade, done: Callable[[Trade], bool], timeout: float
    ) -> bool:
        deadline = time.monotonic() + timeout
        while not done(trade):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.ib is None or not self.ib.isConnected():
                return done(trade)
            event = self._changed
            assert event is not None
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))
        return True

    async def _wait_all(
        self, trades: list[Trade], done: Callable[[Trade], bool], timeout: float
    ) -> bool:
        """As _wait_trade, for several trades at once (one wakeup per event, not one per
        trade and event); True when every one is done."""
        deadline = time.monotonic() + timeout
        while not all(done(t) for t in trades):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.ib is None or not self.ib.isConnected():
                return all(done(t) for t in trades)
            event = self._changed
            assert event is not None
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.25))
        return True

    def _find_trade(self, order_id: int) -> Trade | None:
        assert self.ib is not None
        return next((t for t in self.ib.trades() if t.order.orderId == order_id), None)

    def place_order(self, req: OrderRequest, ack_timeout: float | None = None) -> OrderInfo:
        """Send an order and wait for the gateway's ack (or a fill/reject).

        On timeout the returned status is "Unknown": the order may still be
        live, so the caller must reconcile, not resend.
        """
        return self.place_orders([req], ack_timeout)[0]

    def place_orders(
        self, reqs: list[OrderRequest], ack_timeout: float | None = None
    ) -> list[OrderInfo]:
        """Send the orders back to back, then wait for every ack: an exit pair costs one
        round trip, not two (bench.exits). All pass the guard or none is sent."""
        ack_timeout = ack_timeout or self.cfg.strategy.order_ack_timeout
        for req in reqs:
            refusal = order_violation(req, self.cfg.risk, req.spot)
            if refusal:
                logger.bind(actor=self.name).error("order refused before the broker: {}", refusal)
                raise OrderRefused(refusal)

        async def run() -> list[OrderInfo]:
            account = self._order_account(reqs)  # on the loop: the session it is sent on
            assert self.ib is not None
            with one_write(self.ib):  # the pair reaches the gateway in one read
                trades = [self._send(req, account) for req in reqs]
            acks = await asyncio.gather(*(
                self._wait_trade(
                    t, lambda t: t.orderStatus.status not in ("PendingSubmit", ""), ack_timeout
                )
                for t in trades
            ))
            out = []
            for trade, acked in zip(trades, acks, strict=True):
                info = order_info(trade, self._order_errors.get(trade.order.orderId))
                out.append(info if acked else with_status(info, "Unknown"))
            return out

        return self._call(run, ack_timeout + 1.0)

    def _order_account(self, reqs: list[OrderRequest]) -> str:
        """The account the gateway reported and the guard verified, or OrderRefused.

        Every order carries it explicitly: an order with an empty account field goes to
        whatever account the login defaults to."""
        status = self._status
        refusal = ""
        if not status.account:
            refusal = f"account check failed: {status.account_problem or 'no account verified'}"
        for req in reqs:
            if not refusal and req.account and req.account != status.account:
                refusal = (f"{req.order_ref}: account {req.account} is not the gateway's "
                           f"verified account {status.account}")
        if refusal:
            logger.bind(actor=self.name).error("order refused before the broker: {}", refusal)
            raise OrderRefused(refusal)
        return status.account

    def _send(self, req: OrderRequest, account: str) -> Trade:
        assert self.ib is not None
        return self.ib.placeOrder(to_contract(req.contract), to_order(req, account))

    def modify_limit(self, order_id: int, lmt_price: float) -> OrderInfo:
        def change(trade: Trade) -> None:
            strike = float(trade.contract.strike or 0.0)
            if not lmt_price > 0 or (trade.contract.right == "P" and lmt_price >= strike > 0):
                raise OrderRefused(
                    f"re-price of {trade.order.orderRef} to {lmt_price} is out of bounds"
                )
            trade.order.lmtPrice = lmt_price

        return self._modify(order_id, change)

    def modify_quantity(self, order_id: int, total_qty: float) -> OrderInfo:
        """Change a working order's total quantity (filled part included), in place: an
        exit pair keeps its orders and OCA group while its lot grows or shrinks."""
        def change(trade: Trade) -> None:
            if not total_qty > 0:
                raise OrderRefused(
                    f"quantity of {trade.order.orderRef} to {total_qty} is out of bounds")
            trade.order.totalQuantity = total_qty

        return self._modify(order_id, change)

    def _modify(self, order_id: int, change: Callable[[Trade], None]) -> OrderInfo:
        """One working order of this session changed in place (same id, orderRef, OCA
        group) and sent again; a done order is returned as it is, unchanged."""
        async def run() -> OrderInfo:
            trade = self._find_trade(order_id)
            if trade is None:
                raise BrokerCallError(f"order {order_id} is not known to this session")
            if trade.isDone():
                return order_info(trade, self._order_errors.get(order_id))
            change(trade)
            trade.order.account = self._order_account([])
            assert self.ib is not None
            self.ib.placeOrder(trade.contract, trade.order)
            return order_info(trade, self._order_errors.get(order_id))

        return self._call(run)

    def wait_order(self, order_id: int, timeout: float) -> OrderInfo:
        """Wait until the order is done (filled, cancelled, rejected) or `timeout`."""

        async def run() -> OrderInfo:
            trade = self._find_trade(order_id)
            if trade is None:
                raise BrokerCallError(f"order {order_id} is not known to this session")
            await self._wait_trade(trade, lambda t: t.isDone(), timeout)
            return order_info(trade, self._order_errors.get(order_id))

        return self._call(run, timeout + 1.0)

    def watch_order(self, order_id: int, timeout: float) -> Future[OrderInfo]:
        """wait_order without the wait on this actor's thread: a future of the order's
        OrderInfo that the loop resolves in the very event that ends the order (its fill,
        cancel or reject), at the link's loss, or after `timeout` with what is known
        then. The asker waits on the future itself, so a sale's fill reaches the
        executor in one thread hop, not three (bench.exits). NotConnected or
        BrokerCallError (an order this session does not know) come through it."""
        fut: Future[OrderInfo] = Future()

        def register() -> None:
            if self.ib is None or not self.ib.isConnected():
                fut.set_exception(NotConnected("not connected to the gateway"))
                return
            trade = self._find_trade(order_id)
            if trade is None:
                fut.set_exception(BrokerCallError(
                    f"order {order_id} is not known to this session"))
                return
            if trade.isDone():
                fut.set_result(order_info(trade, self._order_errors.get(order_id)))
                return
            waiter = OrderWaiter(trade, fut)
            self._order_waiters.append(waiter)
            waiter.timer = asyncio.get_running_loop().call_later(
                max(0.0, timeout), self._settle_waiter, waiter)

        try:
            self._loop.loop.call_soon_threadsafe(register)
        except RuntimeError:  # the loop is closed: this instance is stopping
            fut.set_exception(NotConnected("the connection is stopping"))
        return fut

    def _wake_order_waiters(self) -> None:
        """Loop thread, on every order event and on the loss: the waiters whose order
        is done (or whose link is gone) get their answer now."""
        if not self._order_waiters:
            return
        connected = self.ib is not None and self.ib.isConnected()
        for waiter in [w for w in self._order_waiters if not connected or w.trade.isDone()]:
            self._settle_waiter(waiter)

    def _settle_waiter(self, waiter: OrderWaiter) -> None:
        """Answer a waiter with what the session knows of its order now (loop thread)."""
        with contextlib.suppress(ValueError):
            self._order_waiters.remove(waiter)
        if waiter.timer is not None:
            waiter.timer.cancel()
        if not waiter.future.done():
            trade = waiter.trade
            waiter.future.set_result(
                order_info(trade, self._order_errors.get(trade.order.orderId)))

    def cancel_order(self, order_id: int, timeout: float | None = None) -> OrderInfo:
        """Cancel and wait until the gateway says Cancelled (or Filled: a race we report)."""
        timeout = timeout or self.cfg.strategy.order_ack_timeout

        async def run() -> OrderInfo:
            assert self.ib is not None
            trade = self._find_trade(order_id)
            if trade is None:
                raise BrokerCallError(f"order {order_id} is not known to this session")
            if not trade.isDone():
                self.ib.cancelOrder(trade.order)
                await self._wait_trade(trade, lambda t: t.isDone(), timeout)
            info = order_info(trade, self._order_errors.get(order_id))
            return info if trade.isDone() else with_status(info, "Unknown")

        return self._call(run, timeout + 1.0)

    def cancel_orders(self, order_ids: list[int],
                      timeout: float | None = None) -> list[OrderInfo | str]:
        """Cancel several orders at once and wait for all (one round trip, not one each:
        an entry on a contract whose open lots hold exits cancels them all before its
        sale). Per order: its OrderInfo as cancel_order gives it, or why it failed."""
        timeout = timeout or self.cfg.strategy.order_ack_timeout
        return list(self._call(self._cancels(order_ids, timeout), timeout + 1.0))

    def start_cancel_orders(self, order_ids: list[int],
                            timeout: float | None = None) -> PendingCall:
        """cancel_orders, sent now and answered later (.result(): the same list): this
        actor is free meanwhile, so the sale's own lookups (executions, open orders, the
        quote) go out while the gateway answers the cancels, not after them."""
        timeout = timeout or self.cfg.strategy.order_ack_timeout
        return self._submit(self._cancels(order_ids, timeout), timeout + 1.0)

    def _cancels(self, order_ids: list[int],
                 timeout: float) -> Callable[[], Awaitable[list[OrderInfo | str]]]:
        async def run() -> list[OrderInfo | str]:
            assert self.ib is not None
            out: dict[int, OrderInfo | str] = {}
            waiting: dict[int, Trade] = {}
            with one_write(self.ib):  # every cancel sent before any wait, in one write
                for order_id in order_ids:
                    trade = self._find_trade(order_id)
                    if trade is None:
                        out[order_id] = f"order {order_id} is not known to this session"
                        continue
                    if not trade.isDone():
                        try:
                            self.ib.cancelOrder(trade.order)
                        except Exception as exc:
                            out[order_id] = f"{type(exc).__name__}: {exc}"
                            continue
                    waiting[order_id] = trade
            # One waiter for all, not one per order: each order's answers wake every
            # waiter, and N waiters cost N^2 wakeups (bench.entry: 36 legs, 100 ms).
            await self._wait_all(list(waiting.values()), lambda t: t.isDone(), timeout)
            for order_id, trade in waiting.items():
                info = order_info(trade, self._order_errors.get(order_id))
                out[order_id] = info if trade.isDone() else with_status(info, "Unknown")
            return [out[i] for i in order_ids]

        return run

    def open_orders(self) -> list[OrderInfo]:
        return list(self._call(self._open_orders_call()))

    def start_open_orders(self, ask: bool = True) -> PendingCall:
        """open_orders, asked now and answered later (.result(): the same list). With
        `ask=False` the session's own view, not asked again: reqOpenOrders answers only
        this client's orders, which the session already holds (synced at connect, kept
        by the gateway's pushes), and its answer costs an openOrder decode per live order
        (bench.entry: ~5 ms with forty exit legs resting)."""
        return self._submit(self._open_orders_call(ask))

    def _open_orders_call(self, ask: bool = True) -> Callable[[], Awaitable[list[OrderInfo]]]:
        async def run() -> list[OrderInfo]:
            assert self.ib is not None
            if ask:
                await self.ib.reqOpenOrdersAsync()
            return [
                order_info(t, self._order_errors.get(t.order.orderId)) for t in self.ib.openTrades()
            ]

        return run

    def positions(self) -> list[PositionInfo]:
        async def run() -> list[PositionInfo]:
            assert self.ib is not None
            positions = await self.ib.reqPositionsAsync()
            # The gateway keeps streaming position updates once asked, and ib_insync
            # collects every position message until positionEnd: an update that races the
            # answer lists a contract twice (an assignment's shares counted 200 for 100).
            # One per account and contract, the last word wins.
            # Only the verified account's (a login may manage several).
            account = self._verified_account("positions")
            latest = {(p.account, p.contract.conId): p for p in positions
                      if of_account(account, p.account)}
            return [
                PositionInfo(
                    p.account, contract_info(p.contract), float(p.position), float(p.avgCost)
                )
                for p in latest.values()
            ]

        return self._call(run)

    def _verified_account(self, what: str) -> str:
        """The account whose positions and executions are ours; with none verified the
        read is refused (an empty answer would make every lot look gone)."""
        account = self._status.account
        if not account:
            problem = self._status.account_problem or "no account verified yet"
            raise BrokerCallError(f"{what} not read: {problem}")
        return account

    def executions(self) -> list[FillInfo]:
        return list(self._call(self._executions_call()))

    def start_executions(self) -> PendingCall:
        """executions, asked now and answered later (.result(): the same list): an
        entry asks while its exits' cancels are answered, not after them."""
        return self._submit(self._executions_call())

    def _executions_call(self) -> Callable[[], Awaitable[list[FillInfo]]]:
        async def run() -> list[FillInfo]:
            assert self.ib is not None
            fills = await self.ib.reqExecutionsAsync()
            known = {f.execution.execId: f for f in self.ib.fills()}
            account = self._verified_account("executions")
            return [fill_info(known.get(f.execution.execId, f)) for f in fills
                    if of_account(account, f.execution.acctNumber)]

        return run

    def completed_orders(self) -> list[OrderInfo]:
        """The day's filled and cancelled orders (reqCompletedOrders): what became of an
        exit whose execution is no longer reported (IB's completedOrder has no price)."""

        async def run() -> list[OrderInfo]:
            assert self.ib is not None
            trades = await self.ib.reqCompletedOrdersAsync(apiOnly=False)
            return [order_info(t) for t in trades]

        return self._call(run)
