"""Restarting the gateway: supervisord's XML-RPC, the Docker Engine API, or nothing.

Used by the Watchdog's escalation and the dashboard's login (2FA) button.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
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


def restart_via_supervisor(url: str, program: str, timeout: float = 30.0) -> str:
    proxy = supervisor_proxy(url, timeout)
    try:
        infos = proxy.supervisor.getAllProcessInfo()
        match = [i for i in infos if i["name"] == program or
                 f"{i['group']}:{i['name']}" == program]
        if not match:
            raise GatewayRestartError(f"supervisord has no program {program!r}")
        name = f"{match[0]['group']}:{match[0]['name']}"
        if match[0]["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
            proxy.supervisor.stopProcess(name, True)
        proxy.supervisor.startProcess(name, True)
    except (OSError, xmlrpc.client.Fault, xmlrpc.client.ProtocolError) as exc:
        raise GatewayRestartError(f"supervisord restart of {program} failed: {exc}") from exc
    return f"supervisord restarted {name}"


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
