"""Issue 18: the engine's ZeroMQ service speaks CURVE and accepts only its client key."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from loguru import logger

from config.loader import ConfigError, load_config
from ops.healthcheck import check
from tests.support.zmq_request import wait_until, zmq_request
from wire.keys import KEY_FILES, KeysError, ensure_keys, keys_dir


def _raw_request(endpoint: str, op: str, args: dict[str, Any],
                 keys: tuple[bytes, bytes, bytes] | None) -> bytes | None:
    """A bare REQ socket (optionally with CURVE `keys`: public, secret, server public);
    the reply, or None if none came within 3 s."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    # A deadline on the send too: a refused handshake can leave a REQ socket with no
    # peer to queue to, and its send then blocked until pytest's timeout (seen in CI).
    sock.setsockopt(zmq.SNDTIMEO, 3000)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = keys
    sock.connect(endpoint)
    try:
        sock.send(msgpack.packb({"v": 1, "id": f"x{time.time_ns()}", "op": op, "args": args,
                                 "sent_at": time.time()}))
        return sock.recv() if sock.poll(3000) else None
    except zmq.Again:  # not even sent: no answer either
        return None
    finally:
        sock.close(0)


def test_requests_without_the_client_key_get_nothing_and_change_nothing(
    start_engine: Any,
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        eng = start_engine()
        service = eng.engine.zmq
        directory = keys_dir(eng.engine.cfg)
        server_public = (directory / "server.key").read_text()
        assert "public-key" in server_public
        server_key = zmq.auth.load_certificate(str(directory / "server.key"))[0]
        wrong_public, wrong_secret = zmq.curve_keypair()
        # No key at all, then a key pair the engine does not know.
        assert _raw_request(eng.endpoint, "kill_switch", {"on": True}, None) is None
        assert _raw_request(eng.endpoint, "pause", {},
                            (wrong_public, wrong_secret, server_key)) is None
        wait_until(lambda: service.handshakes_refused >= 2, 10, message="two refusals seen")
        assert service.requests == 0  # neither frame reached the service
        status = eng.ask("status")  # the known client key still works
        assert status["kill_switch"] is False and status["paused"] is False
        # Refusals are logged, once a minute at most.
        assert _raw_request(eng.endpoint, "pause", {}, None) is None
        wait_until(lambda: service.handshakes_refused >= 3, 10, message="third refusal")
        refused = [ln for ln in lines if "refused" in ln and "handshake" in ln]
        assert len(refused) == 1, refused
    finally:
        logger.remove(sink)


def test_keys_are_written_at_first_start_with_private_secrets(start_engine: Any) -> None:
    eng = start_engine()
    directory = keys_dir(eng.engine.cfg)
    assert directory == Path(eng.engine.cfg.storage.path).parent / "zmq-keys"
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == sorted(
        KEY_FILES)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("server.key_secret", "client.key_secret"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
        public, secret = zmq.auth.load_certificate(str(directory / name))
        assert public and secret  # create_certificates' format
    before = (directory / "client.key_secret").read_bytes()
    assert ensure_keys(directory) is False  # a later start keeps them
    assert (directory / "client.key_secret").read_bytes() == before
    (directory / "server.key").unlink()  # half a set is refused, not silently replaced
    with pytest.raises(KeysError, match=r"server\.key"):
        ensure_keys(directory)


def test_healthcheck_loads_the_client_keys(start_engine: Any) -> None:
    eng = start_engine()
    ok, message = check(eng.endpoint, keys_dir=keys_dir(eng.engine.cfg))
    assert ok and "engine ok" in message, message
    ok, message = check(eng.endpoint, timeout=1.0)  # without keys: refused
    assert not ok and "unreachable" in message


def test_zmq_request_helper_without_keys_times_out(start_engine: Any, tmp_path: Path) -> None:
    eng = start_engine()
    empty = tmp_path / "no-keys"
    empty.mkdir()
    with pytest.raises(TimeoutError):
        zmq_request(eng.endpoint, "status", timeout=1.0, keys_dir=empty)


def test_curve_off_only_for_ipc_in_live_mode(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[gateway]\nmode = "live"\n[zmq]\nendpoint = "tcp://127.0.0.1:5557"\n'
                   "curve = false\n")
    with pytest.raises(ConfigError, match=r"zmq\.curve"):
        load_config(cfg, environ={})
    cfg.write_text('[gateway]\nmode = "live"\n[zmq]\nendpoint = "ipc:///tmp/x.sock"\n'
                   "curve = false\n")
    assert load_config(cfg, environ={}).zmq.curve is False
    cfg.write_text('[gateway]\nmode = "paper"\n[zmq]\nendpoint = "tcp://127.0.0.1:5557"\n'
                   "curve = false\n")
    assert load_config(cfg, environ={}).zmq.curve is False


def test_ipc_socket_is_owner_only(tmp_path: Path) -> None:
    from wire.server import ZmqService

    path = tmp_path / "run" / "engine.sock"
    service = ZmqService(f"ipc://{path}", lambda op, args: {"ok": 1}, {"status"}, set())
    service.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reply = zmq_request(f"ipc://{path}", "status", timeout=5.0)
        assert reply["ok"]
    finally:
        service.stop()
