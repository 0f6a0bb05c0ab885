"""Issue 6: fuzz the engine's ZeroMQ endpoint; every frame is answered or refused,
the service lives, and refused input never reaches the handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibsim.harness import free_port
from wire.server import ZmqService

MAX = 4096


class Counting:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, op: str, args: dict[str, Any]) -> Any:
        self.calls.append((op, args))
        return {"ok": op}


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[ZmqService, Counting, zmq.Socket[Any]]]:
    handler = Counting()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    svc = ZmqService(endpoint, handler, {"status", "pause"}, {"pause"}, max_message_bytes=MAX)
    svc.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    yield svc, handler, sock
    sock.close(0)
    svc.stop()


def roundtrip(sock: zmq.Socket[Any], frame: bytes) -> dict[str, Any]:
    sock.send_multipart([b"", frame])
    assert sock.poll(5000), "no answer"
    parts = sock.recv_multipart()
    return msgpack.unpackb(parts[-1], raw=False)


def alive(sock: zmq.Socket[Any]) -> None:
    reply = roundtrip(sock, msgpack.packb({"v": 1, "id": "ping", "op": "status", "args": {}}))
    assert reply["ok"] and reply["id"] == "ping"


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=600))
def test_random_bytes(service: Any, data: bytes) -> None:
    _svc, handler, sock = service
    before = len(handler.calls)
    reply = roundtrip(sock, data)
    if not reply.get("ok"):
        assert reply["error"]["code"] in ("bad_request", "bad_args", "unknown_op", "too_large",
                                          "stale", "duplicate")
        assert len(handler.calls) == before


I64 = st.integers(-(2**63), 2**63 - 1)
envelopes = st.fixed_dictionaries({}, optional={
    "v": st.one_of(st.just(1), I64, st.text(max_size=3), st.none()),
    "id": st.one_of(st.text(max_size=200), I64, st.booleans(), st.none(),
                    st.lists(I64, max_size=2)),
    "op": st.one_of(st.sampled_from(["status", "pause", "drop_db", ""]), I64),
    "args": st.one_of(st.dictionaries(st.text(max_size=5), I64, max_size=3),
                      st.lists(I64, max_size=3), st.text(max_size=5), st.none()),
    "sent_at": st.one_of(st.floats(allow_nan=False), st.text(max_size=3), st.booleans()),
})


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(envelopes)
def test_random_envelopes(service: Any, req: dict[str, Any]) -> None:
    _svc, handler, sock = service
    before = len(handler.calls)
    reply = roundtrip(sock, msgpack.packb(req))
    if reply.get("ok"):
        assert len(handler.calls) == before + 1
        assert req["op"] in ("status", "pause")
    else:
        assert len(handler.calls) == before


def test_oversized_frame_is_refused_and_service_lives(service: Any) -> None:
    _svc, handler, sock = service
    before = len(handler.calls)
    reply = roundtrip(sock, msgpack.packb({"v": 1, "id": "big", "op": "status",
                                           "args": {"x": "y" * (MAX * 2)}}))
    assert reply["error"]["code"] == "too_large"
    assert len(handler.calls) == before
    alive(sock)


def test_deep_nesting_and_wrong_types(service: Any) -> None:
    _svc, _handler, sock = service
    deep: Any = 1
    for _ in range(3000):
        deep = [deep]
    for frame in (b"\xdd\xff\xff\xff\xff", b"\x91" * 3000 + b"\x01",
                  msgpack.packb([1, 2, 3]), msgpack.packb({"v": 1, "id": 1.5, "op": "status"})):
        reply = roundtrip(sock, frame)
        assert reply["ok"] is False
    alive(sock)


def test_stale_and_duplicate_commands(service: Any) -> None:
    import time

    _svc, handler, sock = service
    stale = {"v": 1, "id": "old", "op": "pause", "args": {}, "sent_at": time.time() - 3600}
    assert roundtrip(sock, msgpack.packb(stale))["error"]["code"] == "stale"
    cmd = {"v": 1, "id": "once", "op": "pause", "args": {}, "sent_at": time.time()}
    before = len(handler.calls)
    assert roundtrip(sock, msgpack.packb(cmd))["ok"]
    assert roundtrip(sock, msgpack.packb(cmd))["error"]["code"] == "duplicate"
    assert len(handler.calls) == before + 1
