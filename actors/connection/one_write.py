"""Several requests sent as one socket write.

ib_insync writes each request on its own (`Connection.sendMsg` -> `transport.write`, with
TCP_NODELAY: one segment each). An exit pair or a batch of cancels then reaches the
gateway as separate reads, and a gateway that answers each read before the next (ibsim
persists its state first) sees the second leg of an OCA pair only after it has handled
the first (bench.exits: ~3 ms between the legs). Inside `one_write(ib)` the framed
messages are gathered and written together when the block ends, in their order, so the
gateway reads them in one go. Requests that ib_insync's throttle defers are sent later
by its own timer, as before. Loop thread only, with no await inside the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ib_insync import IB


@contextmanager
def one_write(ib: IB) -> Iterator[None]:
    conn = ib.client.conn
    send = conn.sendMsg
    own = vars(conn).get("sendMsg")  # an instance's own sendMsg, if one was set
    gathered: list[bytes] = []
    conn.sendMsg = gathered.append  # type: ignore[method-assign]
    try:
        yield
    finally:
        if own is None:
            del conn.sendMsg  # the class's own again
        else:
            conn.sendMsg = own  # type: ignore[method-assign]
        if gathered:
            # What was gathered was sent as far as ib_insync knows (its Trade exists):
            # written even if a later request in the block raised.
            send(b"".join(gathered))
            # One call, many requests: the count the pacing view reads stays per request.
            conn.numMsgSent += len(gathered) - 1
