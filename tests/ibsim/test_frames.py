"""The engine's frame reader (actors/connection/frames.py) reads a real ibsim session
exactly as ib_insync's own reader does: the same messages handled in the same order,
the same counts, the same leftover bytes, the same tickers, however the bytes are cut
into reads (a client that falls behind reads 256 KiB at once)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from typing import Any

from ib_insync import IB, Contract

from actors.connection import frames
from ibsim.harness import IbsimThread
from tests.ibsim.conftest import client, wait_ib


def capture_session(sim: IbsimThread) -> tuple[bytes, dict[int, int]]:
    """Every byte an unmodified client read (handshake, contract details, quotes with
    size-only bursts, a few thousand messages), and its market-data request ids."""
    ib = IB()
    ib.RequestTimeout = 5
    got: list[bytes] = []
    ib.client.conn.hasData += got.append
    ib.connect("127.0.0.1", sim.port, clientId=7, timeout=5)
    try:
        spy = Contract(symbol="SPY", secType="STK", exchange="SMART", currency="USD")
        ib.qualifyContracts(spy)
        ticker = ib.reqMktData(spy, "", False, False)
        lines = {ib.wrapper.ticker2ReqId["mktData"][ticker]: spy.conId}
        sim.post("/market", {"tick_interval": 0.005, "quote_burst": 20})
        wait_ib(ib, lambda: ib.client.connectionStats().numMsgRecv > 4000, 20,
                "a few thousand messages")
    finally:
        sim.post("/market", {"tick_interval": 0.05, "quote_burst": 1})
        ib.disconnect()
    return b"".join(got), lines


def replay(stream: bytes, lines: dict[int, int], cuts: list[int],
           read: Callable[[Any, bytes], None]) -> dict[str, Any]:
    """Feed `stream`, cut at `cuts`, to a fresh (unconnected) client through `read`,
    its tickers keyed as the captured session's; what it handled and what it kept."""
    ib = IB()
    for req_id, con_id in lines.items():
        ib.wrapper.startTicker(req_id, Contract(conId=con_id), "mktData")
    c = ib.client
    c.sendMsg = lambda msg: None  # startApi's answer to the handshake goes nowhere
    handled: list[list[str]] = []
    interpret = c.decoder.interpret

    def record(fields: list[str]) -> None:
        handled.append(list(fields))
        interpret(fields)

    c.decoder.interpret = record
    pending: list[int] = []
    ib.pendingTickersEvent += lambda tickers: pending.append(len(tickers))
    edges = [0, *cuts, len(stream)]
    for a, b in itertools.pairwise(edges):
        read(c, stream[a:b])
    return {
        "handled": handled,
        "messages": c._numMsgRecv,
        "bytes": c._numBytesRecv,
        "left": c._data,
        "ready": (c._apiReady, c._serverVersion, c._accounts),
        "pending_events": pending,
        # repr: a NaN field compares equal to itself
        "tickers": sorted(repr((t.contract.conId, t.bid, t.ask, t.bidSize, t.askSize,
                                t.last, len(t.ticks))) for t in ib.tickers()),
    }


def test_frame_reader_reads_a_real_session_as_ib_insync_does(sim: IbsimThread) -> None:
    stream, lines = capture_session(sim)
    rng = random.Random(5)
    cuttings = {
        "one read": [],
        "small reads": sorted(rng.sample(range(1, len(stream)), len(stream) // 40)),
        "256 KiB reads": list(range(256 * 1024, len(stream), 256 * 1024)),
        "odd reads": sorted(rng.sample(range(1, len(stream)), 50)),
        "a frame's bytes split": [1, 2, 3, 4, 5, 9, 30],
    }
    for name, cuts in cuttings.items():
        theirs = replay(stream, lines, cuts, lambda c, d: c._onSocketHasData(d))
        ours = replay(stream, lines, cuts, frames.read_frames)
        assert theirs["messages"] > 4000 and theirs["pending_events"], name
        assert ours == theirs, name
    # The stream ends mid-frame too: both keep the same partial frame.
    cut = stream[:-3]
    theirs = replay(cut, lines, [len(cut) // 2], lambda c, d: c._onSocketHasData(d))
    ours = replay(cut, lines, [len(cut) // 2], frames.read_frames)
    assert ours == theirs and ours["left"]


def test_installed_reader_runs_a_live_client(sim: IbsimThread) -> None:
    """On a live socket (as Connection installs it): connects, qualifies, streams."""
    ib = IB()
    frames.install(ib.client)
    ib.RequestTimeout = 5
    ib.connect("127.0.0.1", sim.port, clientId=8, timeout=5)
    try:
        (spy,) = ib.qualifyContracts(
            Contract(symbol="SPY", secType="STK", exchange="SMART", currency="USD"))
        t = ib.reqMktData(spy, "", False, False)
        wait_ib(ib, lambda: t.bid > 0 and t.ask > 0, what="SPY quote")
        before = ib.client.connectionStats().numMsgRecv
        wait_ib(ib, lambda: ib.client.connectionStats().numMsgRecv > before + 20,
                what="more messages")
    finally:
        ib.disconnect()
    other = client(sim, 9)  # the gateway still serves a plain client beside it
    other.disconnect()


def test_installed_reader_replaces_ib_insyncs_own(sim: IbsimThread) -> None:
    """Installed, it is the socket's only reader: every frame is handled once."""
    stream, lines = capture_session(sim)
    ib = IB()
    frames.install(ib.client)
    ib.client.sendMsg = lambda msg: None
    seen: list[str] = []
    interpret = ib.client.decoder.interpret
    ib.client.decoder.interpret = lambda f: (seen.append(f[0]), interpret(f))
    ib.client.conn.hasData.emit(stream)
    plain = replay(stream, lines, [], lambda c, d: c._onSocketHasData(d))
    assert ib.client._numMsgRecv == plain["messages"]
    assert len(seen) == len(plain["handled"])


def test_another_ib_insync_release_keeps_its_own_reader(monkeypatch: Any) -> None:
    """The reader is a copy of 0.9.86's: under another release ib_insync's stays."""
    import ib_insync

    monkeypatch.setattr(ib_insync, "__version__", "0.9.87")
    ib = IB()
    assert frames.install(ib.client) is False
    assert ib.client._onSocketHasData in ib.client.conn.hasData
    assert len(ib.client.conn.hasData) == 1


def test_installed_reader_is_the_only_reader() -> None:
    ib = IB()
    assert frames.install(ib.client) is True
    assert ib.client._onSocketHasData not in ib.client.conn.hasData
    assert len(ib.client.conn.hasData) == 1
