"""One API client's connection: what the gateway holds per session (its market-data
lines, its subscriptions, what a stall holds back), and the TCP listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ibsim.pacing import Pacer

ClientHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(handler: ClientHandler, host: str, port: int
                 ) -> tuple[asyncio.base_events.Server, int]:
    """A TCP listener and its port (port 0 picks a free one)."""
    server = await asyncio.start_server(handler, host, port, reuse_address=True)
    return server, server.sockets[0].getsockname()[1] if port == 0 else port


@dataclass
class Subscription:
    req_id: int
    contract: dict[str, Any]
    snapshot: bool = False
    generic: str = ""  # the generic tick list ("101" asks for open interest)
    quoted: bool = False  # once-a-day ticks (open, close, open interest) went out
    day_ticks: tuple[float, ...] = ()  # high, low, volume last sent: resent on change only
    touch: tuple[int, int, float, float] | None = None  # bid/ask tick types and prices sent
    delayed: bool = False  # no live permission: delayed ticks (66-76), fifteen minutes old
    held: bool = False  # a competing live session (10197): the line is open and silent
    sent: dict[int, bytes] = field(default_factory=dict)  # tick type -> its last frame


@dataclass
class Session:
    writer: asyncio.StreamWriter
    peer: str
    client_id: int | None = None
    data_type: int = 1
    subs: dict[int, Subscription] = field(default_factory=dict)
    wants_positions: bool = False
    wants_account: bool = False
    closed: bool = False
    paced_out: bool = False  # closed for a sustained excess of IB's message rate
    held: list[bytes] | None = None  # a stalled gateway: what it will send, in order
    # Answers to a batch of requests, sent once the batch's state is saved (corked).
    corked: list[bytes] | None = None
    pacer: Pacer = field(default_factory=Pacer)  # IB's 50 messages a second
    sent: int = 0  # frames sent to this client (its API client counts the same: numMsgRecv)
    # (time, frames sent so far) after each tick: a client's count then dates its lag.
    sent_log: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=200_000))

    def send(self, data: bytes, frames: int = 1) -> None:
        if self.closed:
            return
        self.sent += frames
        if self.held is not None:
            self.held.append(data)
            return
        if self.corked is not None:
            self.corked.append(data)
            return
        self.writer.write(data)

    def cork(self) -> None:
        if self.corked is None:
            self.corked = []

    def uncork(self) -> None:
        """What the batch produced goes out, in order (held instead by a stall begun
        meanwhile, after it)."""
        corked, self.corked = self.corked, None
        if not corked or self.closed:
            return
        if self.held is not None:
            self.held[:0] = corked
        else:
            self.writer.write(b"".join(corked))

    def release(self) -> None:
        """End of a stall: everything held goes out, in the order it was produced."""
        held, self.held = self.held, None
        if held and not self.closed:
            self.writer.write(b"".join(held))

    def close(self) -> None:
        if not self.closed:
            corked, self.corked = self.corked, None
            if corked and self.held is None:  # what it said before closing still goes
                with contextlib.suppress(Exception):
                    self.writer.write(b"".join(corked))
            self.closed = True
            with contextlib.suppress(Exception):
                self.writer.close()

