"""The engine's ZeroMQ service: msgpack requests over a ROUTER socket.

Request `{"v": 1, "id", "op", "args"}` (commands may add `sent_at` or `deadline`,
epoch seconds); reply `{"id", "ok": true, "data"}` or `{"id", "ok": false,
"error": {"code", "message"}}`. Every frame gets an answer or is refused: bad
msgpack, a wrong shape, unknown ops, stale or repeated commands. No request can
kill the service. Handlers run on a small worker pool so that a slow command
never holds up reads; replies go back to the socket thread through a queue,
since ZeroMQ sockets are not thread-safe.

With CURVE keys (the default, issue 18) the socket is a CURVE server and a ZAP
handler accepts only the client key from `[zmq] keys_dir`: a peer without it
never gets a request through, so it gets no reply and changes nothing. Refused
handshakes are seen on a socket monitor and logged once a minute at most.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import zmq
from loguru import logger
from zmq.utils.monitor import recv_monitor_message

from wire.keys import CurveKeys

PROTOCOL_VERSION = 1
RECENT_COMMANDS = 1000
REFUSAL_LOG_INTERVAL = 60.0
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


class _OnlyClientKey:
    """ZAP credentials check: the one known client public key, nothing else."""

    def __init__(self, client_public: bytes) -> None:
        self.client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.client_public


def _quiet_zap_log() -> logging.Logger:
    # pyzmq's authenticator logs every denial; the service logs them, rate-limited.
    log = logging.getLogger("trading_bot.zap")
    log.setLevel(logging.ERROR)
    return log


class OpError(Exception):
    """A refused request: `code` is machine-readable, `message` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def parse_request(frame: bytes, max_bytes: int) -> dict[str, Any]:
    """Decode and check the envelope; raises OpError naming what is wrong."""
    if len(frame) > max_bytes:
        raise OpError("too_large", f"request of {len(frame)} bytes exceeds {max_bytes}")
    try:
        req = msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes,
            max_ext_len=max_bytes,
        )
    except Exception as exc:  # unpackb raises many types on bad input: catch them all
        raise OpError("bad_request", f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(req, dict):
        raise OpError("bad_request", "request must be a map")
    if req.get("v") != PROTOCOL_VERSION:
        raise OpError("bad_request", f"unsupported protocol version {req.get('v')!r}")
    rid = req.get("id")
    if (
        isinstance(rid, bool)
        or not isinstance(rid, str | int)
        or (isinstance(rid, str) and not 0 < len(rid) <= 128)
    ):
        raise OpError("bad_request", "id must be a string (1-128 chars) or an integer")
    if not isinstance(req.get("op"), str):
        raise OpError("bad_request", "op must be a string")
    args = req.get("args", {})
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise OpError("bad_args", "args must be a map")
    req["args"] = args
    for key in ("sent_at", "deadline"):
        v = req.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise OpError("bad_request", f"{key} must be epoch seconds")
    return req


class ZmqService:
    def __init__(
        self,
        endpoint: str,
        handler: Callable[[str, dict[str, Any]], Any],
        known_ops: set[str],
        command_ops: set[str],
        max_message_bytes: int = 65536,
        command_max_age: float = 10.0,
        workers: int = 4,
        curve: CurveKeys | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.handler = handler
        self.known_ops = known_ops
        self.command_ops = command_ops
        self.max_bytes = max_message_bytes
        self.command_max_age = command_max_age
        self._ctx = zmq.Context()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="zmq-op")
        self._replies: queue.Queue[tuple[list[bytes], bytes]] = queue.Queue()
        self._recent: OrderedDict[Any, bytes | None] = OrderedDict()
        self._recent_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zmq-service", daemon=True)
        self._bound = threading.Event()
        self._error: Exception | None = None
        self.requests = 0
        self.refused = 0
        self.handshakes_refused = 0
        self._refusals_unlogged = 0
        self._last_refusal_log = float("-inf")
        self._auth: Any = None
        self.log = logger.bind(actor="zmq")

    def start(self) -> None:
        self._thread.start()
        self._bound.wait(10)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    # ---- socket thread -----------------------------------------------------------------

    def _run(self) -> None:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        # Frames a little over the limit get a "too_large" reply; far larger ones are
        # cut off by ZeroMQ itself before they cost memory.
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_bytes * 16)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # A doorbell for replies computed on worker threads.
        bell_rx = self._ctx.socket(zmq.PULL)
        bell_addr = f"inproc://zmq-service-bell-{id(self)}"
        bell_rx.bind(bell_addr)
        self._bell = self._ctx.socket(zmq.PUSH)
        self._bell.connect(bell_addr)
        self._bell_lock = threading.Lock()
        monitor: zmq.Socket[Any] | None = None
        try:
            if self.curve is not None:
                monitor = self._secure(sock)
            if self.endpoint.startswith("ipc://"):
                path = Path(self.endpoint[len("ipc://") :])
                path.parent.mkdir(parents=True, exist_ok=True)
                sock.bind(self.endpoint)
                os.chmod(path, 0o600)  # the owner only, with or without CURVE
            else:
                sock.bind(self.endpoint)
        except Exception as exc:
            self._error = exc
            self._bound.set()
            sock.close(0)
            return
        self._bound.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(bell_rx, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(200))
                if bell_rx in events:
                    while True:
                        try:
                            bell_rx.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                while True:
                    try:
                        envelope, reply = self._replies.get_nowait()
                    except queue.Empty:
                        break
                    self._send(sock, envelope, reply)
                if sock in events:
                    while True:
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_request(sock, parts)
                if monitor is not None and monitor in events:
                    self._on_monitor(monitor)
        finally:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(0)
            sock.close(0)
            bell_rx.close(0)
            self._bell.close(0)

    def _secure(self, sock: zmq.Socket[Any]) -> zmq.Socket[Any]:
        """CURVE server with a ZAP handler that knows one client key; returns a monitor
        socket that reports failed handshakes."""
        from zmq.auth.thread import ThreadAuthenticator

        assert self.curve is not None and self.curve.server_secret is not None
        self._auth = ThreadAuthenticator(self._ctx, log=_quiet_zap_log())
        self._auth.start()
        self._auth.configure_curve_callback(
            domain="*", credentials_provider=_OnlyClientKey(self.curve.client_public)
        )
        sock.curve_publickey = self.curve.server_public
        sock.curve_secretkey = self.curve.server_secret
        sock.curve_server = True
        return sock.get_monitor_socket(_HANDSHAKE_FAILED)

    def _on_monitor(self, monitor: zmq.Socket[Any]) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            if event["event"] & _HANDSHAKE_FAILED:
                self.handshakes_refused += 1
                self._refusals_unlogged += 1
        now = time.monotonic()
        if self._refusals_unlogged and now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL:
            # Once a minute at most: a scanner must not flood the log.
            self.log.warning(
                "refused {} ZeroMQ handshake(s) on {}: peer without the client CURVE key",
                self._refusals_unlogged,
                self.endpoint,
            )
            self._refusals_unlogged = 0
            self._last_refusal_log = now

    def _send(self, sock: zmq.Socket[Any], envelope: list[bytes], reply: bytes) -> None:
        try:
            sock.send_multipart([*envelope, reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.log.debug("reply dropped: {}", exc)

    def _on_request(self, sock: zmq.Socket[Any], parts: list[bytes]) -> None:
        self.requests += 1
        # ROUTER frames: identity, [empty delimiter from REQ], body.
        if len(parts) < 2:
            return
        envelope, body = parts[:-1], parts[-1]
        rid: Any = None
        try:
            req = parse_request(body, self.max_bytes)
            rid = req["id"]
            op = req["op"]
            if op not in self.known_ops:
                raise OpError("unknown_op", f"unknown op {op!r}")
            if op in self.command_ops:
                self._check_command(req)
        except OpError as exc:
            self.refused += 1
            self._send(
                sock,
                envelope,
                pack({"id": rid, "ok": False, "error": {"code": exc.code, "message": exc.message}}),
            )
            return
        self._pool.submit(self._work, envelope, req)

    def _check_command(self, req: dict[str, Any]) -> None:
        now = time.time()
        deadline = req.get("deadline")
        sent_at = req.get("sent_at")
        if deadline is not None and now > deadline:
            raise OpError("stale", "command arrived after its deadline")
        if sent_at is not None and now - sent_at > self.command_max_age:
            raise OpError("stale", f"command is {now - sent_at:.0f}s old")
        key = (req["op"], req["id"])
        with self._recent_lock:
            if key in self._recent:
                raise OpError("duplicate", f"command id {req['id']!r} was already received")
            self._recent[key] = None
            while len(self._recent) > RECENT_COMMANDS:
                self._recent.popitem(last=False)

    # ---- worker threads ----------------------------------------------------------------

    def _work(self, envelope: list[bytes], req: dict[str, Any]) -> None:
        rid, op = req["id"], req["op"]
        try:
            data = self.handler(op, req["args"])
            reply = {"id": rid, "ok": True, "data": data}
        except OpError as exc:
            reply = {"id": rid, "ok": False, "error": {"code": exc.code, "message": exc.message}}
        except Exception as exc:
            self.log.exception("op {} failed", op)
            reply = {
                "id": rid,
                "ok": False,
                "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"},
            }
        try:
            packed = pack(reply)
        except Exception as exc:
            packed = pack(
                {
                    "id": rid,
                    "ok": False,
                    "error": {"code": "internal", "message": f"unpackable reply: {exc}"},
                }
            )
        self._replies.put((envelope, packed))
        with self._bell_lock:
            try:
                self._bell.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
