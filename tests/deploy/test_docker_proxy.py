"""The Docker socket proxy of docker-compose.yml lets the bot restart the gateway and
nothing else, and the bot's restart client treats the proxy's 403 as a clear, alerted
error.

No Docker engine runs here: the proxy is a stand-in HTTP server on loopback that
applies the very allowlist docker-compose.yml gives wollomatic/socket-proxy (its
`-allowPOST` regexps, anchored as that proxy anchors them) and answers 403 to
anything else, as the real proxy does.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.gateway_restart import GatewayRestartError, restart_via_docker
from tests.engine.conftest import RunningEngine

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "TRACE", "OPTIONS")


def proxy_service() -> dict[str, Any]:
    found = [s for s in SERVICES.values() if "/var/run/docker.sock" in str(s.get("volumes"))]
    assert len(found) == 1, "exactly one service mounts the Docker socket (the proxy)"
    return found[0]


def proxy_allowlist() -> dict[str, list[re.Pattern[str]]]:
    """wollomatic/socket-proxy's `-allow<METHOD>=regexp` flags, anchored with ^…$."""
    rules: dict[str, list[re.Pattern[str]]] = {}
    for arg in proxy_service().get("command", []):
        m = re.fullmatch(r"-allow([A-Z]+)=(.*)", arg)
        if m:
            rules.setdefault(m.group(1), []).append(re.compile(f"^{m.group(2)}$"))
    return rules


def allowed(method: str, path: str) -> bool:
    return any(p.match(path) for p in proxy_allowlist().get(method, []))


# ---- the compose file's rules ----------------------------------------------------------


def test_every_image_is_pinned_to_a_release() -> None:
    for name, svc in SERVICES.items():
        image = svc.get("image")
        if image is None:
            assert "build" in svc, name
            continue
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert tag, f"{name}: image {image} has no tag"
        assert tag not in {"latest", "stable", "nightly", "edge"}, f"{name}: {image} floats"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not a release tag"


def test_the_proxy_allows_only_the_gateway_restart() -> None:
    svc = proxy_service()
    env = {k: str(v) for k, v in (svc.get("environment") or {}).items()}
    # tecnativa-style flags: POST=1 beside CONTAINERS=1 opens /containers/create.
    assert not (env.get("POST") == "1" and env.get("CONTAINERS") == "1")
    assert "tecnativa" not in svc["image"] or env.get("POST", "0") == "0"
    rules = proxy_allowlist()
    assert set(rules) == {"POST"}, f"only POST is allowed, got {sorted(rules)}"
    assert allowed("POST", "/containers/ib-gateway/restart")
    assert allowed("POST", "/v1.47/containers/ib-gateway/restart")
    for method, path in [
        ("POST", "/containers/create"),
        ("POST", "/v1.47/containers/create"),
        ("POST", "/containers/ib-gateway/start"),
        ("POST", "/containers/ib-gateway/exec"),
        ("POST", "/containers/ib-gateway/kill"),
        ("POST", "/containers/other/restart"),
        ("POST", "/containers/ib-gateway/restart/../../create"),
        ("POST", "/containers/ib-gateway-2/restart"),
        ("POST", "/images/create"),
        ("GET", "/containers/json"),
        ("DELETE", "/containers/ib-gateway"),
    ]:
        assert not allowed(method, path), f"{method} {path} must be refused"
    args = svc.get("command", [])
    assert "-allowfrom=trading-bot" in args, "only the bot's host may connect"
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in svc["volumes"]


def test_the_restart_target_is_the_gateway_container() -> None:
    gateway = SERVICES["ib-gateway"]
    bot = SERVICES["trading-bot"]["environment"]
    assert gateway["container_name"] == bot["TRADING_BOT__GATEWAY__CONTAINER"] == "ib-gateway"
    assert bot["TRADING_BOT__WATCHDOG__GATEWAY_RESTART"] == "docker"
    port = next(a.split("=", 1)[1] for a in proxy_service()["command"]
                if a.startswith("-proxyport="))
    assert bot["TRADING_BOT__WATCHDOG__DOCKER_SOCKET"] == f"tcp://docker-proxy:{port}"


def test_ib_credentials_reach_the_gateway_only() -> None:
    for name, svc in SERVICES.items():
        text = yaml.safe_dump(svc)
        has_creds = "TWS_PASSWORD" in text or "TWS_USERID" in text
        assert has_creds == (name == "ib-gateway"), name
        assert "env_file" not in svc or name == "ib-gateway", f"{name} gets the whole .env"


# ---- the restart client against the stand-in proxy -----------------------------------


class StandInProxy:
    """Loopback HTTP server applying the compose file's allowlist: 204 or 403."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?", 1)[0]
                outer.requests.append((self.command, path))
                if allowed(self.command, path):
                    self.send_response(204)
                    self.end_headers()
                    return
                body = b"Forbidden\n"
                self.send_response(403)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = do_PUT = _answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy() -> Iterator[StandInProxy]:
    p = StandInProxy()
    yield p
    p.close()


def test_restart_client_restarts_the_configured_container(proxy: StandInProxy) -> None:
    assert restart_via_docker(proxy.endpoint, "ib-gateway", timeout=5) == (
        "docker restarted container ib-gateway")
    assert proxy.requests == [("POST", "/containers/ib-gateway/restart")]


def test_a_403_from_the_proxy_is_a_clear_error(proxy: StandInProxy) -> None:
    with pytest.raises(GatewayRestartError, match=r"proxy .* refused .*403 Forbidden"):
        restart_via_docker(proxy.endpoint, "some-other-container", timeout=5)
    assert proxy.requests == [("POST", "/containers/some-other-container/restart")]


@pytest.mark.parametrize("name", ["../images/create", "ib gateway", "", "a/b", "-x"])
def test_a_name_that_is_no_container_name_sends_nothing(proxy: StandInProxy, name: str) -> None:
    with pytest.raises(GatewayRestartError, match="not a Docker container name"):
        restart_via_docker(proxy.endpoint, name, timeout=5)
    assert proxy.requests == []


def test_a_refused_restart_is_alerted_as_an_error(
    proxy: StandInProxy, start_engine: Any
) -> None:
    """The engine's restart_gateway op (the dashboard's login button) through the
    stand-in proxy: the 403 comes back to the operator and is alerted, and no
    'login required' is claimed for a restart that never happened."""
    eng: RunningEngine = start_engine({
        "gateway": {"container": "not-the-gateway"},
        "watchdog": {"gateway_restart": "docker", "docker_socket": proxy.endpoint},
    })
    data = eng.ask("restart_gateway", timeout=30)
    assert data["started"] is False
    assert "403" in data["message"]
    alerts = eng.ask("alerts")
    items = alerts["alerts"] if isinstance(alerts, dict) else alerts
    restarts = [a for a in items if a["kind"] == "gateway_restart"]
    assert restarts and restarts[0]["severity"] == "error"
    assert "403" in restarts[0]["message"]
    assert not [a for a in items if a["kind"] == "login_required"]
