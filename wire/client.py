"""The one ZeroMQ client (dashboard and healthcheck): the zguide's Lazy Pirate over REQ
sockets.

Each call has a deadline; a request that got no reply closes its socket (a REQ
socket that missed a reply is stuck) and is retried on a new one. Commands carry
an id and `sent_at`, so the engine drops a retried duplicate or a stale one
instead of running it twice. After the retries: EngineUnreachable.

With CURVE on, each new socket loads the client pair and the server's public key
from `[zmq] keys_dir` (read again per socket, so keys the engine writes at its
first start are picked up without restarting the dashboard).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import zmq

from config.loader import ZmqConfig
from wire.keys import KeysError, apply_client, client_keys

COMMAND_TIMEOUT = 15.0


class EngineUnreachable(Exception):
    pass


class EngineError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class EngineClient:
    def __init__(self, cfg: ZmqConfig, keys_dir: Path | None = None) -> None:
        """`keys_dir`: CURVE keys to use (None: plain sockets, `[zmq] curve = false`)."""
        self.cfg = cfg
        self.keys_dir = keys_dir
        self.ctx = zmq.Context.instance()
        self._local = threading.local()  # one socket per WSGI thread

    def _socket(self) -> zmq.Socket[Any]:
        sock = getattr(self._local, "sock", None)
        if sock is None:
            keys = None
            if self.keys_dir is not None:
                try:
                    keys = client_keys(self.keys_dir)
                except KeysError as exc:  # the engine has not written them yet
                    raise EngineUnreachable(f"engine unreachable: {exc}") from None
            sock = self.ctx.socket(zmq.REQ)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            if keys is not None:
                apply_client(sock, keys)
            sock.connect(self.cfg.endpoint)
            self._local.sock = sock
        return sock

    def _reset(self) -> None:
        sock = getattr(self._local, "sock", None)
        if sock is not None:
            sock.close(0)
        self._local.sock = None

    def close(self) -> None:
        """Close this thread's socket (a short-lived caller such as the healthcheck)."""
        self._reset()

    def call(self, op: str, args: dict[str, Any] | None = None, command: bool = False) -> Any:
        timeout = COMMAND_TIMEOUT if command else self.cfg.request_timeout
        req: dict[str, Any] = {"v": 1, "id": uuid.uuid4().hex, "op": op, "args": args or {}}
        if command:
            req["sent_at"] = time.time()
        frame = msgpack.packb(req, use_bin_type=True)
        for _attempt in range(self.cfg.retries + 1):
            sock = self._socket()
            sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
            try:
                sock.send(frame)
            except zmq.Again:
                self._reset()  # IMMEDIATE: no engine connected within the deadline
                continue
            if sock.poll(int(timeout * 1000)):
                reply = msgpack.unpackb(sock.recv(), raw=False)
                if reply.get("id") != req["id"]:
                    self._reset()
                    continue
                if reply.get("ok"):
                    return reply.get("data")
                err = reply.get("error") or {}
                if command and err.get("code") == "duplicate":
                    raise EngineError("duplicate", "the engine already received this command")
                raise EngineError(str(err.get("code")), str(err.get("message")))
            self._reset()
        raise EngineUnreachable("engine unreachable")
