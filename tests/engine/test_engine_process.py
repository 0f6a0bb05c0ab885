"""The engine process as supervisord drives it: SIGTERM stops it, whichever thread the
kernel hands the signal to."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path
from typing import Any

from config.loader import load_config
from tests.engine.conftest import engine_subprocess, write_config
from tests.support.zmq_request import use_keys, wait_until, zmq_request
from wire.keys import keys_dir

# tgkill(2): a signal to one thread of a process (x86_64 234, aarch64 131).
SYS_TGKILL = {"x86_64": 234, "aarch64": 131}


def _tgkill(pid: int, tid: int, sig: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL[os.uname().machine], pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill failed")


def test_sigterm_delivered_to_a_worker_thread_stops_the_engine(
    tmp_path: Path, sim: Any
) -> None:
    # A process-directed signal may land on any thread that does not block it; CPython
    # then only flags it for the main thread. Sent to a worker thread on purpose here.
    cfg = write_config(tmp_path / "engine.toml", sim)
    conf = load_config(cfg, environ={})
    use_keys(conf.zmq.endpoint, keys_dir(conf))
    proc = engine_subprocess(cfg)
    try:
        def ready() -> bool:
            try:
                reply = zmq_request(conf.zmq.endpoint, "status", timeout=2.0)
            except TimeoutError:
                return False
            return bool(reply.get("ok")) and reply["data"]["link"]["state"] == "READY"

        wait_until(ready, 30, message="engine READY")
        workers = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert workers, "the engine runs its actors on threads"
        _tgkill(proc.pid, workers[-1], signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
