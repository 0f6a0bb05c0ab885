"""A minimal REQ client for tests: one request, one reply, a deadline (Lazy Pirate style).

The engine speaks CURVE: a test tells `use_keys(endpoint, keys_dir)` where the
engine at that endpoint keeps its keys (`engine_keys_dir(storage_path)` for the
default folder), and every `zmq_request` to it loads the client pair from there.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from wire.keys import KeysError, apply_client, client_keys

_ids = itertools.count(1)
_keys: dict[str, Path] = {}


def engine_keys_dir(storage_path: str | Path) -> Path:
    """The engine's default `[zmq] keys_dir`: `zmq-keys/` beside its SQLite file."""
    return Path(storage_path).parent / "zmq-keys"


def use_keys(endpoint: str, keys_dir: str | Path) -> None:
    """Requests to `endpoint` use the CURVE client keys in `keys_dir`."""
    _keys[endpoint] = Path(keys_dir)


def _load_keys(keys_dir: Path, deadline: float) -> Any:
    # A subprocess engine writes its keys at start: wait for them within the deadline.
    while True:
        try:
            return client_keys(keys_dir)
        except KeysError as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no CURVE keys yet: {exc}") from None
        time.sleep(0.05)


def zmq_request(
    endpoint: str,
    op: str,
    args: dict[str, Any] | None = None,
    timeout: float = 5.0,
    keys_dir: str | Path | None = None,
    **envelope: Any,
) -> dict[str, Any]:
    """One request; `keys_dir` (or the folder given to `use_keys`) for CURVE, else plain."""
    directory = Path(keys_dir) if keys_dir is not None else _keys.get(endpoint)
    keys = _load_keys(directory, time.monotonic() + timeout) if directory else None
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        apply_client(sock, keys)
    sock.connect(endpoint)
    try:
        req = {"v": 1, "id": f"t{next(_ids)}-{time.time_ns()}", "op": op, "args": args or {}}
        req.update(envelope)
        sock.send(msgpack.packb(req, use_bin_type=True))
        if not sock.poll(int(timeout * 1000)):
            how = f"CURVE keys {directory}" if directory else "no CURVE keys (see use_keys)"
            raise TimeoutError(f"no reply to {op} within {timeout}s ({how})")
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


def hold_for(seconds: float, check: Any, interval: float = 0.05) -> None:
    """`check()` (which asserts) must hold all along `seconds`: an absence over a window
    (no restart, no READY, no answer yet), the one wait that has no condition to end it."""
    end = time.monotonic() + seconds
    while True:
        check()
        if time.monotonic() >= end:
            return
        time.sleep(interval)


def wait_for_value(fetch: Any, accept: Any, timeout: float = 10.0, message: str = "value") -> Any:
    """Fetch repeatedly until `accept(value)` holds; return that value."""
    box: list[Any] = []

    def probe() -> bool:
        box[:] = [fetch()]
        return bool(accept(box[0]))

    wait_until(probe, timeout, message=message)
    return box[0]
