"""A feed faster than a client: extra quote rounds per tick (POST /market quote_burst).

Each extra round re-sends every streaming line's bid and ask at the tick's prices with
a new size (sizes cycle, so no two rounds in a row repeat: ib_insync skips a tick that
changes nothing). Frames come from a small pool encoded once per tick, so a round costs
ibsim a list lookup, not an encoding: the benchmarks can offer more than a client
absorbs (bench.ticks). Past a backlog of BACKLOG bytes unsent to a client the extra
rounds pause for it, as ibsim would otherwise buffer without bound.
"""

from __future__ import annotations

from typing import Any

from ibsim import wire

POOL = 20  # sizes 100..2000 in steps of 100
BACKLOG = 8 << 20


def burst(s: Any, rounds: int) -> None:
    """`rounds` size-only rounds of every quoted line to session `s`, in one write."""
    if s.closed or s.held is not None:
        return
    transport = s.writer.transport
    if transport is not None and transport.get_write_buffer_size() > BACKLOG:
        return
    pools = []
    for sub in s.subs.values():
        if sub.touch is None or sub.snapshot:
            continue
        bid_t, ask_t, bid, ask = sub.touch
        pools.append([wire.tick_price(sub.req_id, bid_t, bid, 100 * (j + 1))
                      + wire.tick_price(sub.req_id, ask_t, ask, 100 * (POOL - j))
                      for j in range(POOL)])
    if not pools:
        return
    out = [pool[r % POOL] for r in range(rounds) for pool in pools]
    s.send(b"".join(out), frames=2 * len(out))
