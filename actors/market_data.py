"""MarketData: the SPY quote and the quotes of the options we hold, each with its time.

Streaming ticks arrive as `QuotesUpdated` batches from Connection. After a
reconnect or error 1101 (data lost) the lines are requested again, since
nothing in ib_insync resubscribes by itself.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from loguru import logger

from actors.connection import BrokerCallError
from actors.context import EngineContext
from actors.messages import LinkChanged, QuotesUpdated
from actors.supervisor import SupervisedActor
from trading.model import ContractInfo, LinkState, Quote

# The message-count samples (when applied, the client's count then): one each 20 ms at
# most, a minute's worth kept. bench.ticks dates the newest applied message by them, as
# its bare client samples its own count on its loop: both read where they applied ticks.
SAMPLE_EVERY = 0.02
SAMPLES_KEPT = 3000


class MarketData(SupervisedActor):
    name = "market_data"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self.underlying: ContractInfo | None = None
        self._quotes: dict[int, Quote] = {}
        self._wanted: dict[int, ContractInfo] = {}
        self.last_tick_at: float = 0.0
        self.ticks_seen = 0
        self.messages_received = 0
        # Recent quote lags: decoded by Connection -> applied here (a backlog shows here).
        self.lags: deque[float] = deque(maxlen=2000)
        self.samples: deque[tuple[float, int]] = deque(maxlen=SAMPLES_KEPT)

    def on_start(self) -> None:
        self.directory.subscribe(QuotesUpdated, self.name)
        self.directory.subscribe(LinkChanged, self.name)
        self.log = logger.bind(actor=self.name)
        # The lots we hold are watched from the start, not only after a new entry: after
        # any engine restart their quotes (and the dashboard's P&L) must come back.
        book = self.directory.ref("position_book")
        if book is not None:
            try:
                for c in book.proxy().held_contracts().get(timeout=10):
                    self._wanted[c.con_id] = c
            except Exception as exc:  # the book's lots are watched at their next entry
                self.log.error("open lots' contracts not read: {}", exc)
        # The link may have come up before we subscribed: read what Connection last set.
        link = self.directory.link
        ready = link is not None and link.state == LinkState.READY
        if ready:
            self._subscribe_all(resubscribe=False)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, QuotesUpdated):
            now = time.time()
            shared = self.directory.quotes
            for q in message.quotes:
                self._quotes[q.con_id] = q
                shared[q.con_id] = q
            self.ticks_seen += len(message.quotes)
            self.last_tick_at = now
            self.messages_received = max(self.messages_received, message.messages_received)
            if message.quotes:
                self.lags.append(now - message.quotes[0].time)
            if not self.samples or now - self.samples[-1][0] >= SAMPLE_EVERY:
                self.samples.append((now, self.messages_received))
        elif isinstance(message, LinkChanged):
            status = message.status
            if status.state == LinkState.READY:
                # 1101: the gateway kept the socket but dropped our lines.
                data_lost = status.reason.startswith("1101") or message.previous in (
                    LinkState.CONNECTING,
                    LinkState.DISCONNECTED,
                )
                self._subscribe_all(resubscribe=status.reason.startswith("1101"))
                if data_lost:
                    self.log.info("market data requested again after: {}", status.reason)
        return None

    def _subscribe_all(self, resubscribe: bool) -> None:
        conn = self.directory.ref("connection")
        if conn is None:
            return
        proxy = conn.proxy()
        try:
            if self.underlying is None:
                self.underlying = proxy.qualify_stock(
                    self.cfg.strategy.symbol, self.cfg.strategy.exchange
                ).get(timeout=self.cfg.gateway.request_timeout + 2)
                self.directory.spy_con_id = self.underlying.con_id
            contracts = [self.underlying, *self._wanted.values()]
            if resubscribe:
                proxy.resubscribe_all().get(timeout=self.cfg.gateway.request_timeout + 2)
            proxy.subscribe(contracts).get(timeout=self.cfg.gateway.request_timeout + 2)
        except (BrokerCallError, Exception) as exc:  # link may drop again mid-way
            self.log.warning("market data subscription failed: {}", exc)

    # ---- queries (plain values) --------------------------------------------------------

    def watch(self, contracts: list[ContractInfo]) -> None:
        """Keep these option lines streaming (lots we hold), across reconnects."""
        new = [c for c in contracts if c.con_id not in self._wanted]
        for c in contracts:
            self._wanted[c.con_id] = c
        if new:
            conn = self.directory.ref("connection")
            if conn is not None:
                try:
                    conn.proxy().subscribe(new).get(timeout=self.cfg.gateway.request_timeout + 2)
                except Exception as exc:
                    self.log.warning("subscribe failed: {}", exc)

    def unwatch(self, con_ids: list[int]) -> None:
        """A closed lot's line is closed too (IB counts every line against a limit)."""
        gone = [c for c in con_ids if self._wanted.pop(c, None) is not None]
        conn = self.directory.ref("connection")
        if gone and conn is not None:
            conn.proxy().unsubscribe(gone)  # not waited for: nothing depends on it

    def count_samples(self, since: float) -> list[tuple[float, int]]:
        """(time applied, message count then) samples taken since `since` (epoch s)."""
        return [s for s in self.samples if s[0] >= since]

    def stats(self) -> dict[str, float]:
        lags = sorted(self.lags)

        def pct(p: float) -> float:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))] * 1000, 3) if lags else 0.0

        return {
            "ticks_seen": self.ticks_seen,
            "messages_received": self.messages_received,
            "last_tick_at": self.last_tick_at,
            "quote_lag_ms_p50": pct(0.5),
            "quote_lag_ms_p99": pct(0.99),
        }
