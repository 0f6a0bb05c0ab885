"""Fuzzing ibsim's frame parser and message handlers: garbage from one client gets
an error or a closed socket for that client only; no order, position or execution
appears, and an unmodified ib_insync client is served as before."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ib_insync import IB

from ibsim import wire
from ibsim.harness import IbsimThread

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
# Message ids ibsim handles, minus 58 (global cancel: a valid message of one field).
KNOWN = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 49, 59, 61, 62, 63, 64, 71, 76, 78, 99]
fields = st.one_of(st.text(max_size=12), st.integers(-10**9, 10**9).map(str),
                   st.floats(allow_nan=True).map(str), st.just(""), st.just("SPY"))
messages = st.tuples(st.one_of(st.sampled_from(KNOWN).map(str), st.text(max_size=4)),
                     st.lists(fields, max_size=30)).map(lambda t: [t[0], *t[1]])


@given(chunks=st.lists(st.binary(max_size=64), max_size=8))
def test_frame_reader_raises_only_frame_error(chunks: list[bytes]) -> None:
    reader = wire.FrameReader()
    try:
        for chunk in chunks:
            for frame in reader.feed(chunk):
                assert isinstance(frame, list) and all(isinstance(f, str) for f in frame)
    except wire.FrameError:
        pass


@given(frames=st.lists(st.lists(st.text(
           st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=8),
           min_size=1, max_size=6).filter(lambda f: f[-1] != ""), min_size=1, max_size=5),
       cut=st.integers(1, 50))
def test_frames_survive_any_chunking(frames: list[list[str]], cut: int) -> None:
    data = b"API\0" + b"".join(wire.frame(*f) for f in frames)
    reader = wire.FrameReader()
    got: list[list[str]] = []
    for i in range(0, len(data), cut):
        got += reader.feed(data[i:i + cut])
    assert got == frames


@pytest.fixture(scope="module")
def sim() -> Iterator[IbsimThread]:
    with IbsimThread(seed=21, tick_interval=0.05, now="2026-11-24T10:00:00-05:00") as s:
        yield s


def _raw_session(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"API\0" + struct.pack(">I", 9) + b"v100..176")
    s.recv(4096)  # server version and time
    s.sendall(wire.frame(71, 2, 77, ""))  # startApi as client 77
    return s


@FUZZ
@given(batch=st.lists(messages, min_size=1, max_size=6), garbage=st.binary(max_size=40))
def test_random_messages_change_nothing_and_hurt_no_other_client(
    sim: IbsimThread, batch: list[list[str]], garbage: bytes
) -> None:
    s = _raw_session(sim.port)
    try:
        for msg in batch:
            s.sendall(wire.frame(*msg))
        s.sendall(garbage)
    except OSError:
        pass  # the gateway closed this client: allowed
    finally:
        s.close()
    state = sim.get_state()
    assert state["open_orders"] == [] and state["positions"] == []
    assert state["executions"] == []


def test_after_the_fuzz_a_real_client_is_served(sim: IbsimThread) -> None:
    ib = IB()
    ib.connect("127.0.0.1", sim.port, clientId=5, timeout=5)
    try:
        assert ib.reqCurrentTime() is not None
        assert ib.managedAccounts() == ["DU1234567"]
    finally:
        ib.disconnect()
