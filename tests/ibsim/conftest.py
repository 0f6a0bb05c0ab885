"""ibsim tests: the unmodified ib_insync client over real TCP sockets."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from ib_insync import IB

from ibsim.harness import IbsimThread

NOW = "2026-11-24T10:00:00-05:00"
_client_ids = itertools.count(1)


@pytest.fixture
def sim() -> Iterator[IbsimThread]:
    with IbsimThread(seed=5, spot=600.0, tick_interval=0.02, now=NOW) as s:
        yield s


@pytest.fixture
def connect(sim: IbsimThread) -> Iterator[Callable[..., IB]]:
    clients: list[IB] = []

    def make(client_id: int | None = None, **kw: Any) -> IB:
        ib = client(sim, client_id or next(_client_ids), **kw)
        clients.append(ib)
        return ib

    yield make
    for ib in clients:
        ib.disconnect()


def client(sim: IbsimThread, client_id: int = 1, timeout: float = 5, **kw: Any) -> IB:
    """An unmodified ib_insync client connected to `sim`; the caller disconnects it."""
    ib = IB()
    ib.RequestTimeout = 5
    ib.connect("127.0.0.1", sim.port, clientId=client_id, timeout=timeout, **kw)
    return ib


@contextmanager
def connected(sim: IbsimThread, at: str | None = None, client_id: int = 1) -> Iterator[IB]:
    """A client of `sim` (once its clock is moved to `at`, if given), disconnected after."""
    if at is not None:
        sim.post("/clock", {"now": at})
    ib = client(sim, client_id)
    try:
        yield ib
    finally:
        ib.disconnect()


def wait_ib(
    ib: IB, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
) -> Any:
    """Let ib_insync process events until `predicate()` holds (deadline, no bare sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        ib.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


EXPIRY = "20261201"  # a SPY expiry ibsim lists on the tests' default date


def put(ib: IB, strike: float = 585) -> Any:
    """A qualified SPY put with a live quote (bid and ask)."""
    from ib_insync import Option

    (opt,) = ib.qualifyContracts(Option("SPY", EXPIRY, strike, "P", "SMART"))
    t = ib.reqMktData(opt)
    wait_ib(ib, lambda: t.bid > 0 and t.ask > 0, what="option quote")
    return opt, t
