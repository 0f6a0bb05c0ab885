"""`python -m actors.healthcheck`: exit 0 if the engine answers `status` over ZeroMQ.

Docker's HEALTHCHECK runs it. A gateway that waits for a 2FA login is not an
unhealthy engine, so the link state is printed but does not fail the check.
"""

from __future__ import annotations

import sys
import time

import msgpack
import zmq

from actors.config import ConfigError, load_config


def check(endpoint: str, timeout: float = 3.0) -> tuple[bool, str]:
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
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
    ok, message = check(cfg.zmq.endpoint)
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
