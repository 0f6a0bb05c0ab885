"""A minimal REQ client for tests: one request, one reply, a deadline (Lazy Pirate style)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgpack
import zmq

_ids = itertools.count(1)


def zmq_request(
    endpoint: str,
    op: str,
    args: dict[str, Any] | None = None,
    timeout: float = 5.0,
    **envelope: Any,
) -> dict[str, Any]:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        req = {"v": 1, "id": f"t{next(_ids)}-{time.time_ns()}", "op": op, "args": args or {}}
        req.update(envelope)
        sock.send(msgpack.packb(req, use_bin_type=True))
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply to {op} within {timeout}s")
        return msgpack.unpackb(sock.recv(), raw=False)
    finally:
        sock.close(0)


def wait_until(
    predicate: Any, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns a truthy value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last={last!r}")


def wait_for_value(fetch: Any, accept: Any, timeout: float = 10.0, message: str = "value") -> Any:
    """Fetch repeatedly until `accept(value)` holds; return that value."""
    box: list[Any] = []

    def probe() -> bool:
        box[:] = [fetch()]
        return bool(accept(box[0]))

    wait_until(probe, timeout, message=message)
    return box[0]
