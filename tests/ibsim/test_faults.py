"""Issue 2: injected faults, what the client sees, and robustness against bad input."""

from __future__ import annotations

import json
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

import pytest
from ib_insync import IB, Stock

from ibsim.harness import ControlError
from tests.ibsim.conftest import wait_ib


def errors_of(ib: IB) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req, code, msg, c: codes.append(code)
    return codes


@pytest.mark.parametrize("restore", [1102, 1101, 2110])
def test_outage_sends_1100_then_the_restore_code(sim: Any, connect: Any, restore: int) -> None:
    ib = connect()
    codes = errors_of(ib)
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    t = ib.reqMktData(spy)
    wait_ib(ib, lambda: t.bid > 0)
    sim.post("/fault/outage", {"seconds": 30, "restore_code": restore})
    wait_ib(ib, lambda: 1100 in codes, what="1100")
    assert ib.isConnected()  # the socket stays up: only errorEvent says so
    assert sim.get_state()["faults"]["outage"]
    sim.post("/fault/outage_end", {})
    wait_ib(ib, lambda: restore in codes, what=str(restore))
    if restore == 1101:  # data lost: nothing streams until the client asks again
        assert sim.get_state()["clients"][0]["subscriptions"] == 0
        ib.cancelMktData(spy)
        t = ib.reqMktData(spy)
        last = t.last
        wait_ib(ib, lambda: t.last != last, what="ticks after resubscribing")


def test_drop_fires_disconnected_and_restart_allows_a_reconnect(sim: Any, connect: Any) -> None:
    ib = connect(5)
    dropped: list[bool] = []
    ib.disconnectedEvent += lambda: dropped.append(True)
    sim.post("/fault/drop", {})
    try:
        wait_ib(ib, lambda: dropped, what="disconnectedEvent")
    except ConnectionError:
        pass  # ib.sleep re-raises "Socket disconnect" in blocking mode, as documented
    assert dropped
    assert not ib.isConnected()
    sim.post("/restart", {"seconds": 2.0})
    ib2 = IB()
    with pytest.raises(ConnectionRefusedError):
        ib2.connect("127.0.0.1", sim.port, clientId=5, timeout=1)

    def reconnect() -> bool:
        try:
            ib2.connect("127.0.0.1", sim.port, clientId=5, timeout=1)
        except (ConnectionRefusedError, TimeoutError, OSError):
            return False
        return True

    wait_ib(ib2, reconnect, 10, "reconnect")
    ib2.disconnect()


def test_logout_makes_connect_time_out(sim: Any) -> None:
    sim.post("/fault/logout", {"seconds": 30})
    ib = IB()
    with pytest.raises(TimeoutError):
        ib.connect("127.0.0.1", sim.port, clientId=9, timeout=0.5)
    sim.post("/fault/login", {})
    ib.connect("127.0.0.1", sim.port, clientId=9, timeout=2)
    assert ib.isConnected()
    ib.disconnect()


def _raw(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    return s


@pytest.mark.parametrize(
    "payload",
    [
        b"GET / HTTP/1.1\r\n\r\n",  # not the API handshake
        b"API\0" + struct.pack(">I", 2**31) + b"x",  # absurd length
        b"API\0" + struct.pack(">I", 9) + b"v157..176" + struct.pack(">I", 4) + b"xx\0\0",
    ],
)
def test_bad_frames_hurt_only_their_own_client(sim: Any, connect: Any, payload: bytes) -> None:
    good = connect()
    s = _raw(sim.port)
    s.sendall(payload)
    s.sendall(b"API\0" + struct.pack(">I", 6) + b"999\0\0\0")  # unknown id / garbage
    s.settimeout(2)
    try:
        while s.recv(65536):
            pass
    except (TimeoutError, ConnectionResetError):
        pass
    s.close()
    assert good.isConnected()
    assert good.reqCurrentTime() is not None
    assert good.qualifyContracts(Stock("SPY", "SMART", "USD"))


def _http(sim: Any, method: str, path: str, body: bytes | None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{sim.control_port}{path}", data=body, method=method
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/market", b"{not json", 400),
        ("/market", b'{"spot": "high"}', 400),
        ("/market", b'{"spot": -5}', 400),
        ("/market", b'{"sport": 5}', 400),
        ("/fault/outage", b'{"restore_code": 1234}', 400),
        ("/fault/reject", b'{"count": "two"}', 400),
        ("/clock", b'{"now": "soon"}', 400),
        ("/nope", b"{}", 404),
    ],
)
def test_control_api_rejects_bad_requests_and_changes_nothing(
    sim: Any, path: str, body: bytes, status: int
) -> None:
    before = sim.get_state()
    code, reply = _http(sim, "POST", path, body)
    assert code == status and reply["error"]
    after = sim.get_state()
    assert after["faults"] == before["faults"]
    assert abs(after["spot"] - before["spot"]) < 5
    with pytest.raises(ControlError):
        sim.post("/fault/hold_fills", {"seconds": "x"})


def test_expiry_via_the_clock_settles_positions(sim: Any, connect: Any) -> None:
    from ib_insync import MarketOrder, Option

    ib = connect()
    otm, itm = (
        ib.qualifyContracts(Option("SPY", "20261127", k, "P", "SMART"))[0] for k in (595, 640)
    )
    for c in (otm, itm):
        t = ib.placeOrder(c, MarketOrder("SELL", 1))
        wait_ib(ib, lambda t=t: t.isDone(), what=f"sale of {c.localSymbol}: {t.log}")
    sim.post("/market", {"spot": 600.0, "walk_sigma": 0.0})
    st = sim.post("/clock", {"now": "2026-11-27T16:30:00-05:00"})
    outcomes = {s["local_symbol"][-8:-3]: s["outcome"] for s in st["settled"]}
    assert outcomes == {"00595": "expired", "00640": "assigned"}
    positions = {p["local_symbol"]: p["position"] for p in sim.get_state()["positions"]}
    assert positions == {"SPY": 100.0}
