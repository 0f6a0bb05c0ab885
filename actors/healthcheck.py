"""`python -m actors.healthcheck`: exit 0 if the engine answers `status` over ZeroMQ.

Docker's HEALTHCHECK runs it. A gateway that waits for a 2FA login is not an
unhealthy engine, so the link state is printed but does not fail the check.
With CURVE on it loads the client pair from `[zmq] keys_dir`, as the dashboard does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import msgpack
import zmq

from actors.config import ConfigError, load_config
from actors.zmq_keys import KeysError, apply_client, client_keys, curve_keys_dir


def check(endpoint: str, timeout: float = 3.0, keys_dir: Path | None = None) -> tuple[bool, str]:
    keys = None
    if keys_dir is not None:
        try:
            keys = client_keys(keys_dir)
        except KeysError as exc:
            return False, f"engine unreachable: {exc}"
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        apply_client(sock, keys)
    sock.connect(endpoint)
    try:
        sock.send(msgpack.packb({"v": 1, "id": f"health-{time.time_ns()}", "op": "status",
                                 "args": {}}))
        if not sock.poll(int(timeout * 1000)):
            return False, "engine unreachable"
        reply = msgpack.unpackb(sock.recv(), raw=False)
        if not reply.get("ok"):
            return False, f"engine error: {reply.get('error')}"
        return True, f"engine ok, link {reply['data']['link']['state']}"
    finally:
        sock.close(0)


def main() -> int:
    try:
        cfg = load_config(sys.argv[1] if len(sys.argv) > 1 else None)
    except ConfigError as exc:
        print(f"config error: {exc}")
        return 2
    ok, message = check(cfg.zmq.endpoint, keys_dir=curve_keys_dir(cfg))
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
