"""Connection: the one owner of `ib_insync.IB`, on its own asyncio loop thread.

ib_insync needs a running asyncio loop in the thread that uses it, and IB events
must be handled while the actor waits for other things, so the IB object lives
on a dedicated loop thread. Actor methods submit coroutines there with
`run_coroutine_threadsafe` and wait with a timeout; IB event handlers on the
loop only `tell` frozen messages (never ask, never block).

The link state tracks the socket *and* the gateway (codes as actors/ib_codes.py has
them): 1100 or 2110 drop READY to CONNECTED at once although `isConnected()` stays
true; 1101/1102 bring it back. A fresh connect is READY only on evidence of IB's
side: no loss since connect and a farm-OK code, an account update or a quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ib_insync import IB, Contract, Order, Stock, Ticker, Trade
from ib_insync.objects import Fill
from loguru import logger

from actors.context import EngineContext
from actors.ib_codes import CLIENT_ID_IN_USE, FARM_BROKEN, FARM_OK, LINK_LOST, LINK_RESTORED
from actors.ib_codes import effect as code_effect
from actors.messages import (
    CommissionReceived,
    FillReceived,
    LinkChanged,
    OrderUpdated,
    PositionChanged,
    QuotesUpdated,
)
from actors.supervisor import SupervisedActor
from ops.backoff import Backoff
from trading.model import (
    ContractInfo,
    FillInfo,
    LinkState,
    LinkStatus,
    OrderInfo,
    OrderRequest,
    PositionInfo,
    Quote,
    WhatIfInfo,
)
from trading.risk import OrderRefused, order_violation, verify_account

DATA_LOST = 1101
# ib_insync keeps every Trade and Fill of a session (an Order alone holds ~150 fields):
# bench.memory saw ~30 KB per trade, 98 -> 160 MB over 2,000 trades. The book has them
# in SQLite, so the client keeps only the latest finished ones (a late status or
# commission report arrives within moments, not 500 trades later).
KEEP_FINISHED_TRADES = 500
KEEP_FILLS = 2000


class BrokerCallError(RuntimeError):
    """A request to the gateway failed or timed out; the message says which."""


def _num(value: Any) -> float | None:
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
        lmt_price=_num(o.lmtPrice),
        aux_price=_num(o.auxPrice),
        oca_group=o.ocaGroup or "",
        status=s.status,
        filled=float(s.filled or 0),
        avg_fill_price=float(s.avgFillPrice or 0),
        error_code=code,
        error_message=msg,
        time=time.time(),
    )


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
        bid=_num(t.bid),
        ask=_num(t.ask),
        last=_num(t.last),
        # When the last tick arrived (ib_insync stamps a ticker as its data is read off
        # the socket), not now: an open line keeps its old values through a silence.
        time=t.time.timestamp() if t.time else 0.0,
        delta=_num(greeks.delta) if greeks else None,
        iv=_num(greeks.impliedVol) if greeks else None,
        und_price=_num(greeks.undPrice) if greeks else None,
    )


class Connection(SupervisedActor):
    name = "connection"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="ib-loop", daemon=True)
        self.ib: IB | None = None
        self._status = LinkStatus(LinkState.DISCONNECTED, time.time(), "not started")
        self._generation = 0
        self._order_errors: dict[int, tuple[int, str]] = {}
        self._finished = 0  # finished trades seen: every 100th prunes ib_insync's state
        # Streaming market-data lines of the current IB session, by con_id. ib_insync
        # finds a ticker by the identity of the Contract object it was asked with, so
        # looking one up with a fresh Contract never matches: without this map every
        # quote request opened another line (bench.ticks found 16 lines for 5 wanted).
        self._lines: dict[int, Ticker] = {}
        self._positions: dict[tuple[str, int], float] = {}  # last quantity published
        self._changed: asyncio.Event | None = None
        self._disconnected: asyncio.Event | None = None
        self._main_task: asyncio.Future[Any] | None = None
        self._stopping = False
        # Evidence of IB's side since the last connect (READY needs it, see module doc).
        self._lost = False  # a 1100/2110 since connect, not yet restored
        self._evidence = ""  # what showed IB's side alive ("" = nothing yet)
        self._connected = False  # connectAsync has returned on this socket
        self._id_in_use = 0  # consecutive connects refused with 326
        self._id_refused = False  # this connect attempt got 326
        self.directory.farms_broken = set()

    # ---- lifecycle ---------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def on_start(self) -> None:
        self._thread.start()
        self._main_task = asyncio.run_coroutine_threadsafe(self._maintain(), self._loop)

    def on_stop(self) -> None:
        self._stopping = True

        async def shutdown() -> None:
            # Disconnect, then cancel and await every task of this loop: nothing is left
            # pending for the garbage collector to finalize later at a random moment.
            if self.ib is not None:
                self.ib.disconnect()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(4)
        if self._main_task is not None:
            self._main_task.cancel()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=3)
        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._loop.close()
        current = self.directory.ref("connection")
        if current is None or current == self.actor_ref:
            # A stop that came late (the Supervisor gave up waiting and started the next
            # instance) must not overwrite the new instance's link.
            self._set_state(LinkState.DISCONNECTED, "connection actor stopped", publish=True,
                            final=True)

    # ---- link state (loop thread) ------------------------------------------------------

    def _set_state(
        self, state: LinkState, reason: str, *, publish: bool = True, linked: bool | None = None,
        final: bool = False,
    ) -> None:
        if self._stopping and not final:
            # A stopped instance's loop may still run a step (a connect failing on a
            # closing loop): it must never overwrite the link of the instance after it.
            return
        old = self._status
        now = time.time()
        gateway_linked = (state == LinkState.READY) if linked is None else linked
        accounts: tuple[str, ...] = ()
        account, problem = "", ""
        if self.ib is not None and state in (LinkState.CONNECTED, LinkState.READY):
            # The gateway's word, checked on every state change of every session: a
            # gateway restarted on another login is a different gateway (issue 21).
            accounts = tuple(self.ib.managedAccounts())
            gw = self.cfg.gateway
            account, problem = verify_account(accounts, gw.account, gw.mode)
        self._status = LinkStatus(
            state=state,
            since=now if state != old.state else old.since,
            reason=reason,
            gateway_linked=gateway_linked,
            logged_in=state in (LinkState.CONNECTED, LinkState.READY),
            account=account,
            updated_at=now,
            generation=self._generation,
            accounts=accounts,
            account_problem=problem,
        )
        if problem and problem != old.account_problem:
            logger.bind(actor=self.name).error("account check failed: {}", problem)
        self.directory.link = self._status
        if state != old.state or reason != old.reason:
            logger.bind(actor=self.name).info(
                "link {} -> {} ({})", old.state.value, state.value, reason
            )
            if publish:
                self.directory.publish(LinkChanged(self._status, old.state))

    async def _maintain(self) -> None:
        """Connect; when the socket drops, reconnect with backoff (1 s doubling)."""
        gw = self.cfg.gateway
        retry = Backoff(self.cfg.watchdog.backoff_initial, self.cfg.watchdog.backoff_max)
        self._changed = asyncio.Event()
        while not self._stopping:
            self._generation += 1
            self._disconnected = asyncio.Event()
            ib = IB()
            ib.RequestTimeout = gw.request_timeout
            self.ib = ib
            self._lines = {}  # a new session has no lines
            self._positions = {}  # and has seen no positions yet
            self._lost, self._evidence, self._connected = False, "", False
            self._id_refused = False
            self.directory.farms_broken = set()
            self._wire_events(ib)
            self._set_state(LinkState.CONNECTING, f"connecting to {gw.host}:{gw.port}")
            try:
                await ib.connectAsync(
                    gw.host,
                    gw.port,
                    clientId=gw.client_id,
                    timeout=gw.connect_timeout,
                    # Not the configured account: one the login does not manage would
                    # stall the sync; the guard compares the two after the connect.
                    account="",
                )
            except Exception as exc:
                with contextlib.suppress(Exception):
                    ib.disconnect()
                reason = f"connect failed: {type(exc).__name__}: {exc}".rstrip(": ")
                if self._id_refused:
                    # Usually the gateway has not yet noticed our previous (dead) socket:
                    # retried with the same backoff; the Watchdog alerts from the 2nd try.
                    self._id_in_use += 1
                    self.directory.client_id_refusals = self._id_in_use
                    reason = (f"{CLIENT_ID_IN_USE}: client id {gw.client_id} already in use "
                              f"(try {self._id_in_use})")
                self._set_state(LinkState.DISCONNECTED, reason)
                await asyncio.sleep(retry.delay)
                retry.grow()
                continue
            self._id_in_use = 0
            self.directory.client_id_refusals = 0
            ib.reqMarketDataType(gw.market_data_type)
            retry.reset()
            self._connected = True
            if self._status.state == LinkState.CONNECTING:
                # READY only on evidence of IB's side; until then the socket alone.
                self._set_state(LinkState.CONNECTED, "connected; waiting for evidence of IB's"
                                " side (farm code, account update or quote)", linked=False)
            self._maybe_ready()
            await self._disconnected.wait()
            if not self._stopping:
                self._set_state(LinkState.DISCONNECTED, "socket closed by the gateway")
                await asyncio.sleep(retry.delay)

    def _wire_events(self, ib: IB) -> None:
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        ib.orderStatusEvent += self._on_order
        ib.openOrderEvent += self._on_order
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.pendingTickersEvent += self._on_tickers
        ib.positionEvent += self._on_position
        ib.updatePortfolioEvent += self._on_portfolio
        ib.accountValueEvent += self._on_account_value

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _on_disconnected(self) -> None:
        if self._disconnected is not None:
            self._disconnected.set()
        self._notify()

    def _maybe_ready(self) -> None:
        """CONNECTED -> READY once the fresh socket shows evidence of IB's side and no
        loss (1100/2110) has come since connect."""
        if (
            self._connected
            and not self._lost
            and self._evidence
            and self._status.state == LinkState.CONNECTED
            and self.ib is not None
            and self.ib.isConnected()
        ):
            self._set_state(LinkState.READY, f"connected; IB's side seen: {self._evidence}")

    def _on_evidence(self, what: str) -> None:
        if not self._evidence:
            self._evidence = what
            self._maybe_ready()

    def _on_account_value(self, *_: Any) -> None:
        self.directory.last_message_at = time.time()
        self._on_evidence("account update")

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        now = time.time()
        self.directory.last_message_at = now
        eff = code_effect(code) if req_id == -1 else None
        if code in LINK_LOST and req_id == -1:
            self._lost = True
            self._set_state(LinkState.CONNECTED, f"{code}: {message}", linked=False)
        elif code in LINK_RESTORED and req_id == -1:
            self._lost = False
            self._evidence = self._evidence or f"{code}"
            if self._connected and self.ib is not None and self.ib.isConnected():
                self._set_state(LinkState.READY, f"{code}: {message}")
        elif code == CLIENT_ID_IN_USE:
            self._id_refused = True
        elif eff is not None and eff.farm:
            broken = set(self.directory.farms_broken)
            if code in FARM_BROKEN:
                broken.add(eff.farm)
            else:
                broken.discard(eff.farm)
            self.directory.farms_broken = broken
            if code in FARM_OK:
                self._on_evidence(f"{code} {eff.farm} farm OK")
        if req_id > 0 and self.ib is not None:
            # Only an order's own id makes an order error: an error on a market-data or
            # contract request id (354, 10167, 200 ...) is that request's, not an order's.
            trade = next((t for t in self.ib.trades() if t.order.orderId == req_id), None)
            if trade is not None:
                self._order_errors[req_id] = (code, message)
                self.directory.publish(OrderUpdated(order_info(trade, (code, message))))
                self._notify()

    def _on_order(self, trade: Trade) -> None:
        self.directory.last_message_at = time.time()
        err = self._order_errors.get(trade.order.orderId)
        self.directory.publish(OrderUpdated(order_info(trade, err)))
        self._notify()
        if trade.isDone():
            self._finished += 1
            if self._finished % 100 == 0:
                self.forget_finished_trades()

    def forget_finished_trades(self) -> int:
        """Drop the oldest finished trades (and old fills) from ib_insync's session
        state, past KEEP_FINISHED_TRADES and KEEP_FILLS; returns how many trades."""
        if self.ib is None:
            return 0
        w = self.ib.wrapper
        done = [k for k, t in w.trades.items() if t.isDone()]
        dropped = 0
        for key in done[: max(0, len(done) - KEEP_FINISHED_TRADES)]:
            trade = w.trades.pop(key)
            if w.permId2Trade.get(trade.order.permId) is trade:
                del w.permId2Trade[trade.order.permId]
            self._order_errors.pop(trade.order.orderId, None)
            dropped += 1
        for exec_id in list(itertools.islice(w.fills, max(0, len(w.fills) - KEEP_FILLS))):
            del w.fills[exec_id]
        return dropped

    def _on_exec(self, trade: Trade, fill: Fill) -> None:
        self.directory.publish(FillReceived(fill_info(fill)))
        self._notify()

    def _on_commission(self, trade: Trade, fill: Fill, report: Any) -> None:
        self.directory.publish(CommissionReceived(report.execId, float(report.commission)))

    def _on_position(self, pos: Any) -> None:
        # Every change of the account's positions, also one no order of ours explains
        # (a put closed by hand in TWS): the book checks it against its lots.
        self._position_seen(pos.account, pos.contract, float(pos.position), float(pos.avgCost))

    def _on_portfolio(self, item: Any) -> None:
        self._position_seen(item.account, item.contract, float(item.position),
                            float(item.averageCost))

    def _position_seen(self, account: str, contract: Any, qty: float, avg_cost: float) -> None:
        """Publish a position only when its quantity changed: portfolio updates repeat
        it with every new market value, and each published change makes the book ask
        the broker (three round trips), which a stream of them would flood."""
        key = (account, int(contract.conId))
        if self._positions.get(key) == qty:
            return
        self._positions[key] = qty
        self.directory.publish(PositionChanged(PositionInfo(
            account, contract_info(contract), qty, avg_cost)))

    def _on_tickers(self, tickers: set[Ticker]) -> None:
        self.directory.last_message_at = time.time()
        if self._connected:
            self._on_evidence("quote")
        received = self.ib.client.connectionStats().numMsgRecv if self.ib is not None else 0
        self.directory.publish(
            QuotesUpdated(tuple(quote_of(t) for t in tickers), messages_received=received)
        )

    # ---- timed calls (actor thread -> loop thread) -------------------------------------

    def _call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run `fn` on the loop (awaiting it if it returns an awaitable), with a deadline."""
        timeout = timeout or self.cfg.gateway.request_timeout

        async def invoke() -> Any:
            if self.ib is None or not self.ib.isConnected():
                raise BrokerCallError("not connected to the gateway")
            result = fn()
            if isinstance(result, Awaitable):
                result = await result
            return result

        fut = asyncio.run_coroutine_threadsafe(asyncio.wait_for(invoke(), timeout), self._loop)
        try:
            return fut.result(timeout + 1.0)
        except TimeoutError as exc:
            fut.cancel()
            raise BrokerCallError(f"gateway did not answer within {timeout:.1f}s") from exc
        except BrokerCallError:
            raise
        except ConnectionError as exc:
            raise BrokerCallError(f"connection lost: {exc}") from exc

    def status(self) -> LinkStatus:
        return self._status

    def current_time(self, timeout: float | None = None) -> float:
        """The heartbeat probe: a cheap request that must come back."""

        async def probe() -> float:
            assert self.ib is not None
            return (await self.ib.reqCurrentTimeAsync()).timestamp()

        return float(self._call(probe, timeout))

    def qualify_stock(self, symbol: str, exchange: str) -> ContractInfo:
        async def run() -> ContractInfo:
            assert self.ib is not None
            c = Stock(symbol, exchange, "USD")
            done = await self.ib.qualifyContractsAsync(c)
            if not done:
                raise BrokerCallError(f"unknown contract {symbol} on {exchange}")
            return contract_info(done[0])

        return self._call(run)

    def option_chain(self, symbol: str, underlying_con_id: int) -> tuple[list[str], list[float]]:
        async def run() -> tuple[list[str], list[float]]:
            assert self.ib is not None
            params = await self.ib.reqSecDefOptParamsAsync(symbol, "", "STK", underlying_con_id)
            if not params:
                raise BrokerCallError(f"no option chain for {symbol}")
            chain = next((p for p in params if p.exchange == "SMART"), params[0])
            return sorted(chain.expirations), sorted(chain.strikes)

        return self._call(run)

    def qualify_options(
        self, symbol: str, expiry: str, strikes: list[float], right: str = "P"
    ) -> list[ContractInfo]:
        async def run() -> list[ContractInfo]:
            assert self.ib is not None
            contracts = [
                Contract(
                    secType="OPT",
                    symbol=symbol,
                    lastTradeDateOrContractMonth=expiry,
                    strike=s,
                    right=right,
                    exchange="SMART",
                    currency="USD",
                )
                for s in strikes
            ]
            done = await self.ib.qualifyContractsAsync(*contracts)
            return [contract_info(c) for c in done if c.conId]

        return self._call(run, self.cfg.gateway.request_timeout * 2)

    def _open_line(self, info: ContractInfo) -> Ticker:
        assert self.ib is not None
        ticker = self._lines.get(info.con_id)
        if ticker is None:
            ticker = self.ib.reqMktData(to_contract(info), "", False, False)
            self._lines[info.con_id] = ticker
        return ticker

    def _close_line(self, con_id: int) -> None:
        ticker = self._lines.pop(con_id, None)
        if ticker is not None and self.ib is not None and ticker.contract is not None:
            with contextlib.suppress(Exception):
                self.ib.cancelMktData(ticker.contract)

    def subscribe(self, contracts: list[ContractInfo]) -> None:
        def run() -> None:
            for info in contracts:
                self._open_line(info)

        self._call(run)

    def unsubscribe(self, con_ids: list[int]) -> None:
        def run() -> None:
            for con_id in con_ids:
                self._close_line(con_id)

        self._call(run)

    def lines(self) -> list[int]:
        """The con_ids streaming now (each one line at the gateway)."""
        return sorted(self._lines)

    def resubscribe_all(self) -> int:
        """After 1101 the gateway dropped our market data: request every line again."""

        def run() -> int:
            assert self.ib is not None
            lines = [(c, t) for c, t in self._lines.items() if t.contract]
            for _, t in lines:
                with contextlib.suppress(Exception):
                    self.ib.cancelMktData(t.contract)
            for con_id, t in lines:
                assert t.contract is not None
                self._lines[con_id] = self.ib.reqMktData(t.contract, "", False, False)
            return len(lines)

        return int(self._call(run))

    def quotes(
        self, contracts: list[ContractInfo], wait: float = 3.0, need_delta: bool = False,
        max_age: float | None = None,
    ) -> list[Quote]:
        """Subscribe (if needed) and return quotes once each has bid/ask (or at `wait`);
        with `max_age`, also a tick no older than that (a line already open answers at
        once with its last values, however old)."""

        async def run() -> list[Quote]:
            assert self.ib is not None
            opened = [c.con_id for c in contracts if c.con_id not in self._lines]
            tickers = [self._open_line(info) for info in contracts]

            def complete(t: Ticker) -> bool:
                q = quote_of(t)
                return (
                    q.bid is not None
                    and q.ask is not None
                    and (not need_delta or q.delta is not None)
                    and (max_age is None or time.time() - q.time <= max_age)
                )

            start = time.monotonic()
            deadline = start + wait
            refreshed = False
            try:
                while time.monotonic() < deadline and not all(complete(t) for t in tickers):
                    half_way = time.monotonic() > start + wait / 2
                    if max_age is not None and not refreshed and half_way:
                        # IB sends a tick only on a change: a quiet line kept open (a held
                        # lot, a prepared entry) can look stale. Asking for it again brings
                        # the current bid/ask now, a fresh observation, not the old one.
                        refreshed = True
                        for i, (info, t) in enumerate(zip(contracts, tickers, strict=True)):
                            if info.con_id not in opened and not complete(t) and t.contract:
                                self.ib.cancelMktData(t.contract)
                                # A new Contract object: ib_insync keys tickers by the
                                # object and ignores an unchanged tick on the old one.
                                tickers[i] = self._lines[info.con_id] = self.ib.reqMktData(
                                    to_contract(info), "", False, False)
                    await asyncio.sleep(0.02)
                return [quote_of(t) for t in tickers]
            finally:
                for con_id in opened:  # lines opened for this look only are closed again
                    self._close_line(con_id)

        return self._call(run, wait + 2.0)

    def what_if(self, req: OrderRequest, timeout: float | None = None) -> WhatIfInfo:
        """The broker's margin figures for `req` as if it filled (IB's whatIf): nothing
        is placed. Net liquidation is the account's current value (the whatIf lacks it)."""

        async def run() -> WhatIfInfo:
            assert self.ib is not None
            order = Order(action=req.action, totalQuantity=req.qty, orderType=req.order_type,
                          tif=req.tif, account=self._order_account([req]))
            if req.lmt_price is not None:
                order.lmtPrice = req.lmt_price
            state = await self.ib.whatIfOrderAsync(to_contract(req.contract), order)
            if state is None:
                raise BrokerCallError(f"no whatIf answer for {req.contract.local_symbol}")
            net = next((_num(v.value) for v in self.ib.accountValues(order.account)
                        if v.tag == "NetLiquidation" and v.currency in ("USD", "BASE")), None)
            figures = {k: _num(getattr(state, k, None)) for k in (
                "initMarginBefore", "initMarginChange", "initMarginAfter", "maintMarginAfter",
                "equityWithLoanAfter")}
            missing = [k for k, v in figures.items() if v is None]
            if missing or net is None:
                raise BrokerCallError("whatIf answer lacks "
                                      + ", ".join(missing or ["net liquidation"]))
            return WhatIfInfo(
                init_before=figures["initMarginBefore"] or 0.0,
                init_change=figures["initMarginChange"] or 0.0,
                init_after=figures["initMarginAfter"] or 0.0,
                maint_after=figures["maintMarginAfter"] or 0.0,
                equity_with_loan_after=figures["equityWithLoanAfter"] or 0.0,
                commission=_num(state.commission) or 0.0,
                net_liquidation=net,
            )

        return self._call(run, timeout)

    # ---- orders ------------------------------------------------------------------------

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
                out.append(info if acked else _replace_status(info, "Unknown"))
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
        return self.ib.placeOrder(to_contract(req.contract), order)

    def modify_limit(self, order_id: int, lmt_price: float) -> OrderInfo:
        async def run() -> OrderInfo:
            trade = self._find_trade(order_id)
            if trade is None:
                raise BrokerCallError(f"order {order_id} is not known to this session")
            if trade.isDone():
                return order_info(trade, self._order_errors.get(order_id))
            strike = float(trade.contract.strike or 0.0)
            if not lmt_price > 0 or (trade.contract.right == "P" and lmt_price >= strike > 0):
                raise OrderRefused(
                    f"re-price of {trade.order.orderRef} to {lmt_price} is out of bounds"
                )
            trade.order.lmtPrice = lmt_price
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
            return info if trade.isDone() else _replace_status(info, "Unknown")

        return self._call(run, timeout + 1.0)

    def open_orders(self) -> list[OrderInfo]:
        async def run() -> list[OrderInfo]:
            assert self.ib is not None
            await self.ib.reqOpenOrdersAsync()
            return [
                order_info(t, self._order_errors.get(t.order.orderId)) for t in self.ib.openTrades()
            ]

        return self._call(run)

    def positions(self) -> list[PositionInfo]:
        async def run() -> list[PositionInfo]:
            assert self.ib is not None
            positions = await self.ib.reqPositionsAsync()
            return [
                PositionInfo(
                    p.account, contract_info(p.contract), float(p.position), float(p.avgCost)
                )
                for p in positions
            ]

        return self._call(run)

    def executions(self) -> list[FillInfo]:
        async def run() -> list[FillInfo]:
            assert self.ib is not None
            fills = await self.ib.reqExecutionsAsync()
            known = {f.execution.execId: f for f in self.ib.fills()}
            return [fill_info(known.get(f.execution.execId, f)) for f in fills]

        return self._call(run)

    def completed_orders(self) -> list[OrderInfo]:
        """The day's filled and cancelled orders (reqCompletedOrders): what became of an
        exit whose execution is no longer reported (IB's completedOrder has no price)."""

        async def run() -> list[OrderInfo]:
            assert self.ib is not None
            trades = await self.ib.reqCompletedOrdersAsync(apiOnly=False)
            return [order_info(t) for t in trades]

        return self._call(run)

    def disconnect(self) -> None:
        """Drop the socket (the maintain loop reconnects)."""

        def run() -> None:
            assert self.ib is not None
            self.ib.disconnect()

        with contextlib.suppress(BrokerCallError):
            self._call(run)


def _replace_status(info: OrderInfo, status: str) -> OrderInfo:
    from dataclasses import replace

    return replace(info, status=status)
