"""The Connection's order entrance for the OrderExecutor's hot paths: a sale, and the
exit pair of a fresh fill. Through the actor's mailbox an order crossed two threads on
its way out (the executor's, the Connection's, then the loop) and two on the way back;
through the desk it goes from the caller's thread to the loop and back, one hop each
way (bench.exits, bench.entry). Everything else keeps the mailbox.

The running Connection puts its desk in the directory when it starts and takes it away
when it stops (never a later instance's); a desk whose Connection lost its socket
answers NotConnected, as the mailbox does. Nothing here touches ib_insync: the guard
runs on the caller's thread, the send and the acks on the loop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from actors.connection.loop import BrokerCallError
from trading.model import OrderInfo, OrderRequest

if TYPE_CHECKING:
    from actors.connection.actor import Connection


class OrderDesk:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def serves(self, conn: Connection) -> bool:
        return self._conn is conn

    def place_orders(self, reqs: list[OrderRequest],
                     ack_timeout: float | None = None) -> list[OrderInfo]:
        """As Connection.place_orders, on the caller's thread: OrderRefused when the
        guard says no (nothing sent), NotConnected when nothing could be sent, any other
        BrokerCallError when the orders may have gone out; acks missing at the deadline
        come back with the status "Unknown"."""
        started = time.time()
        call = self._conn.start_place_orders(reqs, ack_timeout)  # NotConnected: loop closed
        try:
            return list(call.result())
        except BrokerCallError as exc:
            named = self._conn.paced_name(exc, started)
            if named is exc:
                raise
            raise named from exc

    def place_order(self, req: OrderRequest,
                    ack_timeout: float | None = None) -> OrderInfo:
        return self.place_orders([req], ack_timeout)[0]
