"""Issue 2: injected faults, what the client sees, and robustness against bad input."""

from __future__ import annotations

import json
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

import pytest
from ib_insync import IB, LimitOrder, Stock

from ibsim.harness import ControlError
from tests.ibsim.conftest import put, wait_ib


def errors_of(ib: IB) -> list[int]:
    codes: list[int] = []
    ib.errorEvent += lambda req, code, msg, c: codes.append(code)
    return codes


@pytest.mark.parametrize(("loss", "restore"), [(1100, 1102), (1100, 1101), (2110, 1102),
                                               (2110, 1101)])
def test_outage_sends_the_loss_then_the_restore_code(sim: Any, connect: Any, loss: int,
                                                     restore: int) -> None:
    ib = connect()
    codes = errors_of(ib)
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    t = ib.reqMktData(spy)
    wait_ib(ib, lambda: t.bid > 0)
    body: dict[str, Any] = {"seconds": 30, "restore_code": restore}
    if loss != 1100:
        body["code"] = loss
    sim.post("/fault/outage", body)
    wait_ib(ib, lambda: loss in codes, what=str(loss))
    assert 2110 not in codes or loss == 2110
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


def test_outage_restore_code_2110_is_refused(sim: Any) -> None:
    with pytest.raises(ControlError):  # 2110 is a loss, never a restore
        sim.post("/fault/outage", {"seconds": 5, "restore_code": 2110})
    with pytest.raises(ControlError):
        sim.post("/fault/outage", {"seconds": 5, "code": 1102})
    assert not sim.get_state()["faults"]["outage"]


@pytest.mark.parametrize("loss", [1100, 2110])
def test_a_client_connecting_during_an_outage_gets_the_loss_at_once(sim: Any, loss: int) -> None:
    sim.post("/fault/outage", {"seconds": 30, "code": loss, "restore_code": 1102})
    ib = IB()
    codes = errors_of(ib)
    ib.connect("127.0.0.1", sim.port, clientId=21, timeout=3)
    try:
        assert codes and codes[0] == loss  # before any farm code; and no farm is OK
        assert not {2104, 2106, 2158} & set(codes)
        sim.post("/fault/outage_end", {})
        wait_ib(ib, lambda: 1102 in codes, what="1102")
    finally:
        ib.disconnect()


def test_a_broken_market_farm_stops_quotes_until_it_is_ok(sim: Any, connect: Any) -> None:
    ib = connect()
    codes = errors_of(ib)
    spy = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))[0]
    t = ib.reqMktData(spy)
    wait_ib(ib, lambda: t.bid > 0)
    sim.post("/fault/farm", {"farm": "market", "broken": True})
    wait_ib(ib, lambda: 2103 in codes, what="2103")
    ib2 = IB()
    codes2 = errors_of(ib2)
    ib2.connect("127.0.0.1", sim.port, clientId=22, timeout=3)
    try:
        assert 2103 in codes2 and 2104 not in codes2 and 2158 in codes2
        t2 = ib2.reqMktData(spy)
        ib2.sleep(0.5)
        assert not t2.bid > 0  # nothing streams from a broken farm
        sim.post("/fault/farm", {"farm": "market", "broken": False})
        wait_ib(ib2, lambda: 2104 in codes2 and t2.bid > 0, what="2104 and quotes again")
    finally:
        ib2.disconnect()
    with pytest.raises(ControlError):
        sim.post("/fault/farm", {"farm": "nope", "broken": True})


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
        ("/fault/slow_orders", b'{"seconds": 1, "release": "yes"}', 400),
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
    # After the close (13:00 on this half day) nothing has changed yet: OCC settles overnight.
    st = sim.post("/clock", {"now": "2026-11-27T16:30:00-05:00"})
    assert st["settled"] == [] and len(sim.get_state()["positions"]) == 2
    sim.post("/market", {"spot": 700.0})  # after the close: does not decide the outcome
    st = sim.post("/clock", {"now": "2026-11-30T02:30:00-05:00"})  # Monday: the next session
    outcomes = {s["local_symbol"][-8:-3]: s["outcome"] for s in st["settled"]}
    assert outcomes == {"00595": "expired", "00640": "assigned"}
    positions = {p["local_symbol"]: p["position"] for p in sim.get_state()["positions"]}
    assert positions == {"SPY": 100.0}


def test_slow_orders_hold_an_order_until_released(sim: Any, connect: Any) -> None:
    """/fault/slow_orders holds a new order's acknowledgement for its seconds; with
    "release": true the orders held now go through at once (a test can kill its client
    inside the hold however slow the machine is, then let the order arrive)."""
    ib = connect()
    opt, _quote = put(ib)
    sim.post("/fault/slow_orders", {"seconds": 300, "action": "BUY"})
    trade = ib.placeOrder(opt, LimitOrder("BUY", 1, 0.05, orderRef="tb:lot1:tp:1"))
    ib.sleep(0.3)  # not a synchronisation: the order must still be held after it
    assert trade.orderStatus.status == "PendingSubmit"
    assert not [o for o in sim.get_state()["open_orders"] if o["order_ref"] == "tb:lot1:tp:1"]
    reply = sim.post("/fault/slow_orders", {"seconds": 0, "release": True})
    assert reply["released"] is True
    wait_ib(ib, lambda: trade.orderStatus.status == "Submitted", what="the held order")
    assert [o["order_ref"] for o in sim.get_state()["open_orders"]] == ["tb:lot1:tp:1"]
