"""`python -m ops.healthcheck`: exit 0 if the engine answers `status` over ZeroMQ.

Docker's HEALTHCHECK runs it. A gateway that waits for a 2FA login is not an
unhealthy engine, so the link state is printed but does not fail the check.
With CURVE on it loads the client pair from `[zmq] keys_dir`, as the dashboard does.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from config.loader import ConfigError, ZmqConfig, load_config
from wire.client import EngineClient, EngineError, EngineUnreachable
from wire.keys import curve_keys_dir


def check(endpoint: str, timeout: float = 3.0, keys_dir: Path | None = None) -> tuple[bool, str]:
    """One `status` over the dashboard's own client (no retry: a probe, not a user)."""
    cfg = dataclasses.replace(ZmqConfig(), endpoint=endpoint, request_timeout=timeout, retries=0)
    client = EngineClient(cfg, keys_dir)
    try:
        status = client.call("status")
    except EngineUnreachable as exc:
        return False, str(exc)
    except EngineError as exc:
        return False, f"engine error: {exc}"
    finally:
        client.close()
    return True, f"engine ok, link {status['link']['state']}"


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
