"""Restarting the gateway: supervisord's XML-RPC, the Docker Engine API, or nothing.

Used by the Watchdog's escalation and the dashboard's login (2FA) button.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import time
import xmlrpc.client
from typing import Any
from urllib.parse import quote, urlsplit

from config.loader import Config


class GatewayRestartError(RuntimeError):
    pass


def restart_gateway(method: str, cfg: Config, timeout: float = 30.0) -> str:
    if method == "none":
        return "gateway restart method is 'none': nothing was restarted"
    if method == "supervisor":
        return restart_via_supervisor(cfg.watchdog.supervisor_url, cfg.gateway.program, timeout)
    if method == "docker":
        return restart_via_docker(cfg.watchdog.docker_socket, cfg.gateway.container, timeout)
    raise GatewayRestartError(f"unknown gateway restart method {method!r}")


def supervisor_proxy(url: str, timeout: float = 30.0) -> Any:
    """A NEW proxy per call: supervisor's transport caches a broken connection."""
    from supervisor.xmlrpc import SupervisorTransport

    user = os.environ.get("SUPERVISOR_USER") or None
    password = os.environ.get("SUPERVISOR_PASSWORD") or None
    if url.startswith("unix://"):
        transport = SupervisorTransport(user, password, url)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
    transport = SupervisorTransport(user, password, url)
    return xmlrpc.client.ServerProxy(url, transport=transport)


# The signal of a supervisord restart: SIGKILL. A program killed by a signal has exit
# status -1 to supervisord, never one of its `exitcodes`, so `autorestart = unexpected`
# (or true) starts it again at once, by supervisord alone: whatever happens to the engine
# after this one call, the gateway is not left stopped. (stopProcess then startProcess
# was two calls: an engine killed between them left the gateway STOPPED, issue 33.)
# Not SIGTERM: a program may catch it and exit 0, an expected exit that is not restarted
# (ibsim does exactly that). The gateway's state is on disk (ibsim saves each change;
# IB's orders live at IB), so nothing is lost that a graceful stop would have kept.
RESTART_SIGNAL = "KILL"
# supervisord's states of a program that is not running and will not start by itself.
NOT_RUNNING = ("STOPPED", "EXITED", "FATAL")


def _program_info(proxy: Any, program: str) -> dict[str, Any]:
    infos = proxy.supervisor.getAllProcessInfo()
    match = [i for i in infos if i["name"] == program or
             f"{i['group']}:{i['name']}" == program]
    if not match:
        raise GatewayRestartError(f"supervisord has no program {program!r}")
    return dict(match[0])


def gateway_state(method: str, cfg: Config, timeout: float = 10.0) -> str | None:
    """The gateway program's state as its keeper reports it (supervisord's statename:
    RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL ...), or None when the method
    cannot tell (docker: its socket proxy allows the restart call only; none): the
    Watchdog then goes by the API port (a refused connect)."""
    if method != "supervisor":
        return None
    try:
        proxy = supervisor_proxy(cfg.watchdog.supervisor_url, timeout)
        return str(_program_info(proxy, cfg.gateway.program)["statename"])
    except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError) as exc:
        raise GatewayRestartError(f"supervisord unreachable for {cfg.gateway.program}'s "
                                  f"state: {exc}") from exc


def restart_via_supervisor(url: str, program: str, timeout: float = 30.0) -> str:
    """One call that supervisord completes alone: a RUNNING gateway is sent SIGKILL
    (supervisord restarts it, see RESTART_SIGNAL); a stopped one is started without
    waiting; one STARTING or in BACKOFF is already being started by supervisord.
    Afterwards it only watches, up to `timeout`, to say what became of it."""
    proxy = supervisor_proxy(url, timeout)
    try:
        info = _program_info(proxy, program)
        name = f"{info['group']}:{info['name']}"
        state, old_pid = info["statename"], info["pid"]
        if state == "RUNNING":
            proxy.supervisor.signalProcess(name, RESTART_SIGNAL)
            done = f"supervisord restarts {name} (sent SIG{RESTART_SIGNAL} to pid {old_pid})"
        elif state in NOT_RUNNING:
            proxy.supervisor.startProcess(name, False)
            done = f"supervisord started {name} (it was {state})"
        else:
            return f"supervisord is already starting {name} ({state}): nothing sent"
    except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError) as exc:
        raise GatewayRestartError(f"supervisord restart of {program} failed: {exc}") from exc
    return done + _watch(url, program, old_pid, min(timeout, 10.0))


def _watch(url: str, program: str, old_pid: int, timeout: float) -> str:
    """What became of the program (for the alert): RUNNING again under a new pid?"""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            info = _program_info(supervisor_proxy(url, timeout), program)
        except (OSError, GatewayRestartError, xmlrpc.client.Fault,
                xmlrpc.client.ProtocolError):
            return "; its state is unknown (supervisord did not answer)"
        state = info["statename"]
        if state == "RUNNING" and info["pid"] != old_pid:
            return f"; RUNNING again (pid {info['pid']})"
        if state in ("FATAL", "BACKOFF"):
            return f"; it is {state}: see supervisord's log"
        time.sleep(0.1)
    return f"; not RUNNING yet after {timeout:.0f}s ({state})"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


# Docker's own rule for container names; anything else never reaches a URL path.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


def restart_via_docker(endpoint: str, container: str, timeout: float = 30.0) -> str:
    """POST /containers/{name}/restart on the Docker Engine API: a unix socket, or tcp://
    for the docker-socket proxy of docker-compose.yml, which allows only that one call.

    Only the configured container, by name: the name is checked before any request,
    and the client sends nothing else (no lookups, no other endpoints)."""
    if not _CONTAINER_NAME.fullmatch(container):
        raise GatewayRestartError(
            f"gateway.container {container!r} is not a Docker container name: nothing restarted")
    if endpoint.startswith("tcp://") or endpoint.startswith("http://"):
        parts = urlsplit(endpoint.replace("tcp://", "http://", 1))
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            parts.hostname or "localhost", parts.port or 2375, timeout=timeout)
    else:
        conn = _UnixHTTPConnection(endpoint.removeprefix("unix://"), timeout)
    path = f"/containers/{quote(container, safe='')}/restart?t=10"
    try:
        conn.request("POST", path, headers={"Content-Length": "0"})
        resp = conn.getresponse()
        body = resp.read()[:300].decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        raise GatewayRestartError(f"Docker API at {endpoint} unreachable: {exc}") from exc
    finally:
        conn.close()
    if resp.status == 403:
        # The socket proxy's answer to a call outside its allowlist.
        raise GatewayRestartError(
            f"the Docker socket proxy at {endpoint} refused POST /containers/{container}/restart "
            f"(403 Forbidden): its allowlist must permit restarting exactly this container "
            f"(docker-compose.yml, docker-proxy -allowPOST; gateway.container = {container!r})")
    if resp.status == 404:
        raise GatewayRestartError(
            f"Docker has no container {container!r} (404): check gateway.container")
    if resp.status != 204:
        raise GatewayRestartError(f"Docker API answered {resp.status}: {body.strip()}")
    return f"docker restarted container {container}"
