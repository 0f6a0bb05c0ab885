"""Connection: the one owner of `ib_insync.IB`, on its own asyncio loop thread.

ib_insync needs a running asyncio loop in the thread that uses it, and IB events
must be handled while the actor waits for other things, so the IB object lives
on a dedicated loop thread (loop.py). Actor methods submit coroutines there with
`run_coroutine_threadsafe` and wait with a timeout; IB event handlers on the
loop only `tell` frozen messages (never ask, never block). This module has the
link and IB's events; the calls are in market.py and orders.py.

The link state tracks the socket *and* the gateway (codes as codes.py has
them): 1100 or 2110 drop READY to CONNECTED at once although `isConnected()` stays
true; 1101/1102 bring it back. A fresh connect is READY only on evidence of IB's
side: no loss since connect and a farm-OK code, an account update or a quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import ib_insync
from ib_insync import IB, Client, Ticker, Trade
from ib_insync.objects import Fill
from loguru import logger

from actors.connection import frames
from actors.connection.codes import (
    CLIENT_ID_IN_USE,
    FARM_BROKEN,
    FARM_OK,
    IB_MAX_MESSAGES,
    LINK_LOST,
    LINK_RESTORED,
    THROTTLE_PER_SECOND,
)
from actors.connection.codes import effect as code_effect
from actors.connection.convert import contract_info, fill_info, order_info, quote_of
from actors.connection.loop import (
    BrokerCallError,
    IbRefusedError,
    LoopThread,
    NotConnected,
    PendingCall,
)
from actors.connection.market import MarketCalls
from actors.connection.orders import OrderCalls
from actors.connection.part import contract_key
from actors.context import EngineContext
from actors.messages import (
    CommissionReceived,
    FillReceived,
    IbRefused,
    LinkChanged,
    OrdersUpdated,
    PositionChanged,
    QuotesUpdated,
)
from actors.supervisor import SupervisedActor
from ops.backoff import Backoff
from trading.calendar import ET
from trading.model import LinkState, LinkStatus, OrderInfo, PositionInfo
from trading.refusals import Refusal, delayed_allowed, refusal
from trading.risk import of_account, verify_account

# ib_insync keeps every Trade and Fill of a session (an Order alone holds ~150 fields):
# bench.memory saw ~30 KB per trade, 98 -> 160 MB over 2,000 trades. The book has them
# in SQLite, so the client keeps only the latest finished ones (a late status or
# commission report arrives within moments, not 500 trades later).
KEEP_FINISHED_TRADES = 500
KEEP_FILLS = 2000


# Errors on a request about an order the gateway had already accepted that refuse only the
# request (a modify or a cancel under the read-only API, 321; a modify's price off the
# tick, 110) leave that order working at the broker; ib_insync 0.9 marks it Cancelled all
# the same, and a live exit taken for cancelled would get a second pair. Not 104/161/10148:
# they say the order is past modifying or cancelling (often filled: its fill follows).
STAYS_WORKING_AFTER = frozenset({321, 110})


def _acknowledged(trade: Trade) -> bool:
    """The gateway had accepted this order before the error (a status of its own)."""
    return any(e.status in ("PreSubmitted", "Submitted", "PendingCancel")
               for e in trade.log[:-1])


class Connection(MarketCalls, OrderCalls, SupervisedActor):
    name = "connection"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self._loop = LoopThread()
        self._orders_out: list[OrderInfo] = []  # this loop pass's order updates (_publish_order)
        self._orders_lock = threading.Lock()
        self.ib: IB | None = None
        self._status = LinkStatus(LinkState.DISCONNECTED, time.time(), "not started")
        self._generation = 0
        self._order_errors: dict[int, tuple[int, str]] = {}
        self._finished = 0  # finished trades seen: every 100th prunes ib_insync's state
        # Streaming market-data lines of the current IB session, by con_id (market.py
        # says why ib_insync's own tickers cannot be looked up).
        self._lines: dict[int, Ticker] = {}
        self._line_refusals: dict[int, Refusal] = {}
        self._request_refusals: dict[int | str, Refusal] = {}
        self._loose_refusals: list[Refusal] = []
        self._read_only_seen = False  # this connect attempt got 321 read-only
        self._positions: dict[tuple[str, int], float] = {}  # last quantity published
        self._changed: asyncio.Event | None = None
        self._order_waiters = []  # watch_order's (orders.py), on the loop thread
        self._disconnected: asyncio.Event | None = None
        self._stopping = False
        self._registered = False  # seen as the directory's Connection (see _superseded)
        # Evidence of IB's side since the last connect (READY needs it, see module doc).
        self._lost = False  # a 1100/2110 since connect, not yet restored
        self._evidence = ""  # what showed IB's side alive ("" = nothing yet)
        self._connected = False  # connectAsync has returned on this socket
        self._id_in_use = 0  # consecutive connects refused with 326
        self._id_refused = False  # this connect attempt got 326
        self.directory.farms_broken = set()

    # ---- lifecycle ---------------------------------------------------------------------

    def on_start(self) -> None:
        self._loop.start(self._maintain())

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, IbRefused):
            # Here, off the IB loop thread: the alert writes to SQLite.
            day = self.clock.now().astimezone(ET).date()
            self.directory.refusals.alert_once(self.alerts, message.refusal, day)
        return None

    def on_stop(self) -> None:
        self._stopping = True
        # Runs on the loop until no task is left: a connect in flight is cancelled, and
        # a socket that opened anyway (a handshake answered after the stop) is closed.
        self._loop.close(self._hang_up)
        self._flush_orders()  # a flush the closed loop never ran
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
                self._publish(LinkChanged(self._status, old.state))

    def _hang_up(self) -> None:
        """Close this instance's socket in any state (loop thread). ib.disconnect() alone
        does nothing mid-connect (ib_insync's client is CONNECTING, not CONNECTED, while
        the handshake is pending), so the client's transport is closed as well."""
        ib = self.ib
        if ib is None:
            return
        with contextlib.suppress(Exception):
            ib.disconnect()
        with contextlib.suppress(Exception):
            ib.client.disconnect()

    def _superseded(self) -> bool:
        """This instance is no longer the directory's Connection (the Supervisor clears
        the entry before it stops an instance, and a stop may wait behind a long call):
        it must hold no socket, or the next instance meets 326 on the same client id."""
        ref = self.directory.ref("connection")
        if ref is not None and ref == self.actor_ref:
            self._registered = True
            return False
        return self._registered or ref is not None

    async def _guard(self, main: asyncio.Task[Any]) -> None:
        """Ends this instance's connection the moment it is stopped or superseded,
        without waiting for the actor thread to run on_stop."""
        while not (self._stopping or self._superseded()):
            await asyncio.sleep(0.1)
        self._stopping = True
        self._hang_up()
        main.cancel()

    async def _maintain(self) -> None:
        """Connect; when the socket drops, reconnect with backoff (1 s doubling)."""
        main = asyncio.current_task()
        assert main is not None
        guard = asyncio.ensure_future(self._guard(main))
        try:
            await self._maintain_link()
        finally:
            guard.cancel()
            self._hang_up()

    async def _maintain_link(self) -> None:
        gw = self.cfg.gateway
        retry = Backoff(self.cfg.watchdog.backoff_initial, self.cfg.watchdog.backoff_max)
        self._changed = asyncio.Event()
        while not self._stopping:
            self._generation += 1
            self._disconnected = asyncio.Event()
            ib = IB()
            if not frames.install(ib.client):  # linear-time frame reading (frames.py)
                logger.bind(actor=self.name).warning(
                    "ib_insync {} is not {}: its own frame reader is used",
                    ib_insync.__version__, frames.READER_OF)
            ib.RequestTimeout = gw.request_timeout
            self.ib = ib
            self._lines = {}  # a new session has no lines
            self._line_refusals, self._request_refusals, self._loose_refusals = {}, {}, []
            self._read_only_seen = False
            self._throttle_on(ib)
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
                self._hang_up()
                if self._stopping:
                    return
                reason = f"connect failed: {type(exc).__name__}: {exc}".rstrip(": ")
                if not self._stopping:
                    # Nothing listens on the API port: the Watchdog's own cause once it
                    # lasts (a stopped gateway is not one waiting for a login).
                    if isinstance(exc, ConnectionRefusedError):
                        if not self.directory.gateway_refused_since:
                            self.directory.gateway_refused_since = time.time()
                    else:
                        self.directory.gateway_refused_since = 0.0
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
            if self._stopping:
                # The connect completed after the stop (Python 3.11's wait_for can swallow
                # a cancel that meets a finished connect): this socket must not stay.
                self._hang_up()
                return
            self._id_in_use = 0
            self.directory.client_id_refusals = 0
            if not self._read_only_seen:
                # A session whose open orders were answered: not (or no longer) read-only.
                self.directory.refusals.clear_read_only()
            self.directory.gateway_refused_since = 0.0
            ib.reqMarketDataType(gw.market_data_type)
            pacing = asyncio.ensure_future(self._sample_pacing(ib))
            retry.reset()
            self._connected = True
            if self._status.state == LinkState.CONNECTING:
                # READY only on evidence of IB's side; until then the socket alone.
                self._set_state(LinkState.CONNECTED, "connected; waiting for evidence of IB's"
                                " side (farm code, account update or quote)", linked=False)
            self._maybe_ready()
            await self._disconnected.wait()
            pacing.cancel()
            if not self._stopping:
                self._set_state(LinkState.DISCONNECTED, "socket closed by the gateway")
                await asyncio.sleep(retry.delay)

    def _throttle_on(self, ib: IB) -> None:
        """IB allows 50 messages a second and answers 100 past it (and may disconnect):
        ib_insync's own throttle (Client.MaxRequests per RequestsInterval) must stay on
        for every request this session sends. No second limiter: this checks it."""
        if not 0 < Client.MaxRequests <= THROTTLE_PER_SECOND or Client.RequestsInterval < 1:
            logger.bind(actor=self.name).warning(
                "ib_insync throttle was {}/{}s: set back to {}/1s", Client.MaxRequests,
                Client.RequestsInterval, THROTTLE_PER_SECOND)
        ib.client.MaxRequests = min(Client.MaxRequests, THROTTLE_PER_SECOND) \
            if Client.MaxRequests > 0 else THROTTLE_PER_SECOND
        ib.client.RequestsInterval = max(1, Client.RequestsInterval)
        self.directory.pacing = {**self.directory.pacing, "limit": IB_MAX_MESSAGES,
                                 "throttle": ib.client.MaxRequests}

        def throttled() -> None:
            p = self.directory.pacing
            self.directory.pacing = {**p, "throttled": int(p.get("throttled", 0)) + 1,
                                     "throttled_at": time.time()}

        ib.client.throttleStart += throttled

    async def _sample_pacing(self, ib: IB) -> None:
        """Messages sent per second (a one-second window, sampled four times a second):
        the session's peak goes to `status`."""
        samples: list[tuple[float, int]] = []
        peak, peak_at = 0, 0.0
        while ib.isConnected():
            now = time.monotonic()
            sent = ib.client.connectionStats().numMsgSent
            samples.append((now, sent))
            while samples and now - samples[0][0] > 1.0:
                samples.pop(0)
            rate = sent - samples[0][1]
            if rate > peak:
                peak, peak_at = rate, time.time()
            self.directory.pacing = {**self.directory.pacing, "rate": rate,
                                     "peak_rate": peak, "peak_at": peak_at}
            await asyncio.sleep(0.25)

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
        self._wake_order_waiters()  # in this event, not at a later turn of the loop

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
        named = self._route_refusal(req_id, code, message, contract)
        if req_id > 0 and self.ib is not None:
            # Only an order's own id makes an order error: an error on a market-data or
            # contract request id (354, 10167, 200 ...) is that request's, not an order's.
            trade = next((t for t in self.ib.trades() if t.order.orderId == req_id), None)
            if trade is not None:
                if (named is not None and named.effect == "live") or (
                        code in STAYS_WORKING_AFTER and _acknowledged(trade)):
                    self._untrust_error_cancel(trade, code)
                self._order_errors[req_id] = (code, message)
                self._publish_order(order_info(trade, (code, message)))
                self._notify()

    def _route_refusal(self, req_id: int, code: int, message: str,
                       contract: Any) -> Refusal | None:
        """Name an IB error tied to a request of ours (trading/refusals.py) and leave it
        where the code path that asked reads it: per market-data line, per other request
        (whatIf, contract details) by con_id, per order (_order_errors). Noted for
        `status`, and alerted once per cause per day (off this thread)."""
        if self.ib is None:
            return None
        gw = self.cfg.gateway
        request, subject, con_id = "request", "", 0
        trade = next((t for t in self.ib.trades() if t.order.orderId == req_id), None) \
            if req_id > 0 else None
        ticker = self.ib.wrapper.reqId2Ticker.get(req_id) if req_id > 0 else None
        if trade is not None:
            request, con_id = "order", int(trade.contract.conId or 0)
            subject = trade.order.orderRef or str(req_id)
        elif ticker is not None and ticker.contract is not None:
            request, con_id = "market data", int(ticker.contract.conId or 0)
            subject = ticker.contract.localSymbol or ticker.contract.symbol
        elif contract is not None:
            con_id = int(getattr(contract, "conId", 0) or 0)
            subject = getattr(contract, "localSymbol", "") or getattr(contract, "symbol", "")
        elif req_id == -1:
            request = "connection"
        named = refusal(code, message, request, subject, time.time(), req_id)
        if named is None:
            return None
        if named.key == "321:read_only" and request in ("request", "connection") \
                and not con_id:
            # The open-orders request (at connect: why ib_insync has readonly=True) has no
            # id of its own: its caller would wait its timeout for an answer that never
            # comes. ib_insync has no public way to end it; this is its own end call.
            named = replace(named, request="connect" if not self._connected
                            else "open orders")
            self._read_only_seen = self._read_only_seen or not self._connected
            for key in ("openOrders", "completedOrders"):
                self.ib.wrapper._endReq(key)
        named = delayed_allowed(named, gw.market_data_type, gw.mode)
        if request == "market data":
            self._line_refusals[con_id] = named
        elif request == "request" and contract is not None:
            self._request_refusals[contract_key(contract)] = named
        elif request == "request":
            self._loose_refusals = [*self._loose_refusals[-19:], named]
        if named.severity == "info" or code == 200:
            # A warning the order lives through, a race, or an unknown strike among many
            # asked (the asker reports a 200 that matters: told()).
            return named
        self.told(named)
        return named

    def told(self, named: Refusal) -> Refusal:
        """Note a refusal for `status`, log it, and alert it (once per cause and day)."""
        self.directory.refusals.note(named)
        logger.bind(actor=self.name).warning("IB refused: {}", named.describe())
        self.actor_ref.tell(IbRefused(named))
        return named

    def _untrust_error_cancel(self, trade: Trade, code: int) -> None:
        """ib_insync 0.9 marks an order Cancelled on any error outside its warning set,
        also on 10349 ("TIF set to DAY by preset") after which the order stays live at the
        broker: the status before the error stands until the gateway's own orderStatus."""
        log = trade.log
        if trade.orderStatus.status != "Cancelled" or not log or log[-1].errorCode != code:
            return
        before = next((e.status for e in reversed(log[:-1]) if e.status != "Cancelled"),
                      "PreSubmitted")
        trade.orderStatus.status = before or "PreSubmitted"
        logger.bind(actor=self.name).warning(
            "order {} ({}): IB {} is a warning, the order stays {} until the gateway says "
            "otherwise", trade.order.orderId, trade.order.orderRef, code, trade.orderStatus.status)

    def _on_order(self, trade: Trade) -> None:
        self.directory.last_message_at = time.time()
        err = self._order_errors.get(trade.order.orderId)
        self._publish_order(order_info(trade, err))
        self._notify()
        if trade.isDone():
            self._finished += 1
            if self._finished % 100 == 0:
                self.forget_finished_trades()

    def _publish_order(self, info: OrderInfo) -> None:
        """An order update, told to the book with the others of this pass of the loop:
        one message and one transaction for an entry's dozens of exit cancels answered
        at once, not a commit each beside the entry's own writes."""
        with self._orders_lock:
            first = not self._orders_out
            self._orders_out.append(info)
        if first:
            try:
                asyncio.get_running_loop().call_soon(self._flush_orders)
            except RuntimeError:  # not on the loop: told at once
                self._flush_orders()

    def _flush_orders(self) -> None:
        with self._orders_lock:  # held while told: two flushes never cross
            batch, self._orders_out = self._orders_out, []
            if batch:
                self.directory.publish(OrdersUpdated(tuple(batch)))

    def _publish(self, message: object) -> None:
        """A broker event for the book, told after the order updates that came before it
        (a fill after its order's status, as the gateway sent them)."""
        self._flush_orders()
        self.directory.publish(message)

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
        if not of_account(self._status.account, fill.execution.acctNumber):
            return  # another account of the login's: not ours to book
        self._publish(FillReceived(fill_info(fill)))
        self._notify()

    def _on_commission(self, trade: Trade, fill: Fill, report: Any) -> None:
        self._publish(CommissionReceived(report.execId, float(report.commission)))

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
        if not of_account(self._status.account, account):
            return  # another account of the login: never ours to match (issue 32, 6)
        key = (account, int(contract.conId))
        if self._positions.get(key) == qty:
            return
        self._positions[key] = qty
        self._publish(PositionChanged(PositionInfo(
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
        started = time.time()
        try:
            return self._loop.call(fn, timeout,
                                   lambda: self.ib is not None and self.ib.isConnected())
        except BrokerCallError as exc:
            paced = self.directory.refusals.last
            if isinstance(exc, IbRefusedError | NotConnected) or paced is None \
                    or paced.code != 100 or paced.time < started:
                raise  # NotConnected keeps its name: what it refused was never sent
            # IB answered requests of this call with 100 (over its message rate) and
            # served none of them: the timeout has that name.
            raise IbRefusedError(paced) from exc

    def _submit(self, fn: Callable[[], Any], timeout: float | None = None) -> PendingCall:
        """As _call, but this actor does not wait: the caller reads .result() (a pacing
        100 is not named there: the answer is the timeout)."""
        return self._loop.submit(fn, timeout or self.cfg.gateway.request_timeout,
                                 lambda: self.ib is not None and self.ib.isConnected())

    def status(self) -> LinkStatus:
        return self._status

    def current_time(self, timeout: float | None = None) -> float:
        """The heartbeat probe: a cheap request that must come back."""

        async def probe() -> float:
            assert self.ib is not None
            return (await self.ib.reqCurrentTimeAsync()).timestamp()

        return float(self._call(probe, timeout))

    def disconnect(self) -> None:
        """Drop the socket (the maintain loop reconnects)."""

        def run() -> None:
            assert self.ib is not None
            self.ib.disconnect()

        with contextlib.suppress(BrokerCallError):
            self._call(run)

