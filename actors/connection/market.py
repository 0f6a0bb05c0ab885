"""Connection's contract look-ups and market-data lines (a part of the actor's class).

ib_insync finds a ticker by the identity of the Contract object it was asked with, so
looking one up with a fresh Contract never matches: the actor keeps its own map of the
session's streaming lines by con_id (without it every quote request opened another line:
bench.ticks found 16 lines for 5 wanted)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from ib_insync import Contract, Stock, Ticker

from actors.connection.convert import contract_info, quote_of, to_contract
from actors.connection.loop import BrokerCallError, IbRefusedError, PendingCall
from actors.connection.part import ConnectionPart, contract_key
from trading.model import ContractInfo, Quote
from trading.refusals import Refusal

# How long a refused market-data line is taken at its word before it is asked for again,
# by the refusal's effect: a competing session ("wait") may end any minute; a missing
# subscription ("skip") changes only when the operator adds it.
REFUSED_LINE_RETRY = {"wait": 30.0, "skip": 300.0}


class MarketCalls(ConnectionPart):
    """Mixed into Connection: these run on the actor thread and hand work to the loop."""

    def qualify_stock(self, symbol: str, exchange: str) -> ContractInfo:
        async def run() -> ContractInfo:
            assert self.ib is not None
            c = Stock(symbol, exchange, "USD")
            self._request_refusals.pop(contract_key(c), None)
            done = await self.ib.qualifyContractsAsync(c)
            if not done:
                refused = self._request_refusals.pop(contract_key(c), None)
                if refused is not None:  # 200 no security definition, named
                    raise IbRefusedError(self.told(replace(refused, request="contract details")))
                raise BrokerCallError(f"unknown contract {symbol} on {exchange}")
            return contract_info(done[0])

        return self._call(run)

    def option_chain(self, symbol: str, underlying_con_id: int) -> tuple[list[str], list[float]]:
        async def run() -> tuple[list[str], list[float]]:
            assert self.ib is not None
            started = time.time()
            params = await self.ib.reqSecDefOptParamsAsync(symbol, "", "STK", underlying_con_id)
            refused = next((r for r in reversed(self._loose_refusals) if r.time >= started),
                           None)
            if not params and refused is not None:
                raise IbRefusedError(replace(refused, request="option chain", subject=symbol))
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
            keys = [contract_key(c) for c in contracts]
            for key in keys:
                self._request_refusals.pop(key, None)
            done = await self.ib.qualifyContractsAsync(*contracts)
            found = [contract_info(c) for c in done if c.conId]
            refused = [r for k in keys if (r := self._request_refusals.pop(k, None))]
            if not found and refused:
                # Not one of the puts exists (an unknown strike among many is normal).
                raise IbRefusedError(self.told(replace(
                    refused[0], request="contract details", subject=f"{symbol} {expiry} {right}")))
            return found

        return self._call(run, self.cfg.gateway.request_timeout * 2)

    def _open_line(self, info: ContractInfo) -> Ticker:
        assert self.ib is not None
        ticker = self._lines.get(info.con_id)
        if ticker is None:
            self._line_refusals.pop(info.con_id, None)  # a new request, a new answer
            ticker = self.ib.reqMktData(to_contract(info), "", False, False)
            self._lines[info.con_id] = ticker
        return ticker

    def _line_refused(self, contracts: list[ContractInfo]) -> Refusal | None:
        """The first refusal of these lines that no waiting will turn into a quote (354,
        10089, 10168, 10167 where delayed data is not allowed, 10197 while it lasts);
        10090 (partial) is waited through: bid and ask may still come. A refusal that
        ticks have followed is over (a competing session logged out, a subscription
        added); 10167's ticks are the delayed ones it announced, so it stands."""
        for info in contracts:
            r = self._line_refusals.get(info.con_id)
            if r is None or r.effect not in ("skip", "wait") or r.code == 10090:
                continue
            line = self._lines.get(info.con_id)
            if r.code != 10167 and line is not None and quote_of(line).time > r.time:
                self._line_refusals.pop(info.con_id, None)
                continue
            return r
        return None

    def _ask_refused_lines_again(self, contracts: list[ContractInfo]) -> None:
        """A line refused a while ago is asked for again, so the answer is today's: IB
        does not say when a competing session ends (10197) or a subscription is added
        (354), and an open line that IB refused may never tick again."""
        assert self.ib is not None
        now = time.time()
        for info in contracts:
            r = self._line_refusals.get(info.con_id)
            line = self._lines.get(info.con_id)
            if r is None or line is None or line.contract is None:
                continue
            if now - r.time < REFUSED_LINE_RETRY.get(r.effect, float("inf")):
                continue
            self.ib.cancelMktData(line.contract)
            self._line_refusals.pop(info.con_id, None)
            # A new Contract object: ib_insync keys tickers by the object.
            self._lines[info.con_id] = self.ib.reqMktData(to_contract(info), "", False, False)

    def _marked(self, q: Quote) -> Quote:
        """A line IB answered with 10167 streams delayed ticks, whatever the ticker says."""
        r = self._line_refusals.get(q.con_id)
        if r is not None and r.code == 10167 and q.data_type == 1:
            return replace(q, data_type=3)
        return q

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
                self._line_refusals.pop(con_id, None)
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
        return list(self._call(self._quotes_call(contracts, wait, need_delta, max_age),
                               wait + 2.0))

    def start_quotes(
        self, contracts: list[ContractInfo], wait: float = 3.0, need_delta: bool = False,
        max_age: float | None = None,
    ) -> PendingCall:
        """quotes, asked now and answered later (.result(): the same list): an entry asks
        for its sale's quote before its exits' cancels go out, so the loop answers it
        before their answers arrive, not after it has read them all."""
        return self._submit(self._quotes_call(contracts, wait, need_delta, max_age), wait + 2.0)

    def _quotes_call(
        self, contracts: list[ContractInfo], wait: float, need_delta: bool,
        max_age: float | None,
    ) -> Callable[[], Awaitable[list[Quote]]]:
        async def run() -> list[Quote]:
            assert self.ib is not None
            opened = [c.con_id for c in contracts if c.con_id not in self._lines]
            self._ask_refused_lines_again(contracts)
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
                    refused = self._line_refused(contracts)
                    if refused is not None:
                        # A named refusal, not a silent wait until the deadline.
                        raise IbRefusedError(refused)
                    half_way = time.monotonic() > start + wait / 2
                    if max_age is not None and not refreshed and half_way:
                        # IB sends a tick only on a change: a quiet line kept open (a held
                        # lot, a prepared entry) can look stale. Asking for it again brings
                        # the current bid/ask now, a fresh observation, not the old one.
                        refreshed = True
                        for i, (info, t) in enumerate(zip(contracts, tickers, strict=True)):
                            if info.con_id not in opened and not complete(t) and t.contract:
                                self.ib.cancelMktData(t.contract)
                                self._line_refusals.pop(info.con_id, None)
                                # A new Contract object: ib_insync keys tickers by the
                                # object and ignores an unchanged tick on the old one.
                                tickers[i] = self._lines[info.con_id] = self.ib.reqMktData(
                                    to_contract(info), "", False, False)
                    await asyncio.sleep(0.02)
                refused = self._line_refused(contracts)
                if refused is not None:
                    raise IbRefusedError(refused)
                return [self._marked(quote_of(t)) for t in tickers]
            finally:
                for con_id in opened:  # lines opened for this look only are closed again
                    self._close_line(con_id)

        return run
