"""Connection's one_write (actors/connection/one_write.py) on a real ibsim session: the
requests of a block leave in one socket write, in their order, and the gateway reads
and answers each of them (an exit pair as one OCA group, a batch of cancels)."""

from __future__ import annotations

from typing import Any

import pytest
from ib_insync import IB, LimitOrder, StopOrder

from actors.connection.one_write import one_write
from ibsim.harness import IbsimThread
from tests.ibsim.conftest import client, put, wait_ib


def _writes(ib: IB) -> list[bytes]:
    """Every socket write of `ib` from now on (the transport's own write, counted)."""
    transport: Any = ib.client.conn.transport
    writes: list[bytes] = []
    write = transport.write

    def counted(data: bytes) -> None:
        writes.append(bytes(data))
        write(data)

    transport.write = counted
    return writes


def _pair(ib: IB, contract: Any, tag: str) -> list[Any]:
    legs = (LimitOrder("BUY", 1, 0.05, orderRef=f"{tag}:tp"),
            StopOrder("BUY", 1, 40.0, orderRef=f"{tag}:sl"))
    for leg in legs:
        leg.ocaGroup, leg.ocaType, leg.tif = f"oca-{tag}", 2, "GTC"
    return [ib.placeOrder(contract, leg) for leg in legs]


def _acked(trades: list[Any]) -> bool:
    return all(t.orderStatus.status in ("Submitted", "PreSubmitted") for t in trades)


def test_a_pair_and_its_cancels_leave_in_one_write_each(sim: IbsimThread) -> None:
    ib = client(sim, 61)
    try:
        contract, _ticker = put(ib)
        writes = _writes(ib)
        alone = _pair(ib, contract, "alone")
        assert len(writes) == 2  # ib_insync's own way: a write per request
        wait_ib(ib, lambda: _acked(alone), 10, "the pair sent apart acknowledged")

        writes.clear()
        with one_write(ib):
            together = _pair(ib, contract, "together")
            assert writes == []  # nothing leaves before the block ends
        assert len(writes) == 1
        first, second = (writes[0].index(t.order.orderRef.encode()) for t in together)
        assert first < second  # in the order they were placed
        wait_ib(ib, lambda: _acked(together), 10, "the pair sent together acknowledged")
        assert len({t.order.ocaGroup for t in together}) == 1

        writes.clear()
        with one_write(ib):
            for trade in alone + together:
                ib.cancelOrder(trade.order)
        assert len(writes) == 1
        wait_ib(ib, lambda: all(t.orderStatus.status == "Cancelled"
                                for t in alone + together), 10, "all four cancelled")
        # The client's own sendMsg is back: the next request is its own write again.
        writes.clear()
        ib.reqCurrentTime()
        assert len(writes) == 1
    finally:
        ib.disconnect()


def test_what_was_gathered_is_sent_even_when_the_block_raises(sim: IbsimThread) -> None:
    ib = client(sim, 62)
    try:
        contract, _ticker = put(ib)
        writes = _writes(ib)
        with pytest.raises(RuntimeError), one_write(ib):
            sent = _pair(ib, contract, "raised")
            raise RuntimeError("a later request failed")
        assert len(writes) == 1
        wait_ib(ib, lambda: _acked(sent), 10, "the legs placed before the failure")
    finally:
        ib.disconnect()
