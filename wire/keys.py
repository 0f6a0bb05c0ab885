"""CURVE keys for the engine's ZeroMQ service (issue 18).

One server pair and one client pair in `[zmq] keys_dir` (default: `zmq-keys/`
beside the SQLite file), in the files `zmq.auth.create_certificates` writes:
`server.key`, `server.key_secret`, `client.key`, `client.key_secret`. The engine
writes them at its first start (secret files 0600, the folder 0700); the
dashboard and the healthcheck load the client pair and the server's public key.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from config.loader import Config

KEY_FILES = ("server.key", "server.key_secret", "client.key", "client.key_secret")


class KeysError(RuntimeError):
    """Keys missing, partial or unreadable; the message names the file."""


@dataclass(frozen=True)
class CurveKeys:
    server_public: bytes
    server_secret: bytes | None  # None on the client side
    client_public: bytes
    client_secret: bytes | None  # None on the server side


def keys_dir(cfg: Config) -> Path:
    """`[zmq] keys_dir`, or `zmq-keys/` beside the SQLite file."""
    if cfg.zmq.keys_dir:
        return Path(cfg.zmq.keys_dir)
    return Path(cfg.storage.path).parent / "zmq-keys"


def curve_keys_dir(cfg: Config) -> Path | None:
    """Where a client finds its keys, or None when `[zmq] curve = false`."""
    return keys_dir(cfg) if cfg.zmq.curve else None


def ensure_keys(directory: Path) -> bool:
    """Write both pairs if none exist yet; True if they were written now.

    A half-written set (some files missing) is refused rather than replaced: an
    operator may have copied the client pair elsewhere, so silently new keys would
    lock that client out. Files are made in a private temp folder, then moved in.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a") as lock:  # engine and a tool starting together
        fcntl.flock(lock, fcntl.LOCK_EX)
        present = [n for n in KEY_FILES if (directory / n).exists()]
        if len(present) == len(KEY_FILES):
            return False
        if present:
            missing = sorted(set(KEY_FILES) - set(present))
            raise KeysError(f"{directory}: incomplete CURVE keys, missing {', '.join(missing)}"
                            " (delete the folder to have new keys written)")
        tmp = Path(tempfile.mkdtemp(dir=directory, prefix=".new-"))  # 0700
        try:
            zmq.auth.create_certificates(str(tmp), "server")
            zmq.auth.create_certificates(str(tmp), "client")
            for name in KEY_FILES:
                os.chmod(tmp / name, 0o600 if name.endswith("_secret") else 0o644)
            for name in KEY_FILES:
                os.replace(tmp / name, directory / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        os.chmod(directory, 0o700)
        return True


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise KeysError(f"{path}: cannot load CURVE key: {exc}") from None


def server_keys(directory: Path) -> CurveKeys:
    spub, ssec = _load(directory / "server.key_secret")
    cpub, _ = _load(directory / "client.key")
    return CurveKeys(spub, ssec, cpub, None)


def client_keys(directory: Path) -> CurveKeys:
    spub, _ = _load(directory / "server.key")
    cpub, csec = _load(directory / "client.key_secret")
    return CurveKeys(spub, None, cpub, csec)


def apply_client(sock: zmq.Socket[Any], keys: CurveKeys) -> None:
    """Make `sock` a CURVE client of the engine (before connect)."""
    assert keys.client_secret is not None
    sock.curve_publickey = keys.client_public
    sock.curve_secretkey = keys.client_secret
    sock.curve_serverkey = keys.server_public
