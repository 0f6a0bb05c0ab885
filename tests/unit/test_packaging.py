"""Issue 7: what can be checked of the Docker files without a Docker engine (none runs
here): the image's commands run outside Docker, the compose file parses and names the
right ports, the healthcheck answers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim", text, re.M)  # pinned to a release
    assert re.search(r"^USER bot", text, re.M)
    assert "HEALTHCHECK" in text and "ops.healthcheck" in text
    # The same supervisord.conf operators use, no wrapper (issue 18).
    assert 'CMD ["supervisord", "-n", "-c", "/app/supervisord.conf"]' in text
    assert "ln -s /usr/local /app/.venv" in text  # %(here)s/.venv/bin/python exists
    for path in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / path).exists(), path


def test_compose_uses_the_socat_ports_and_publishes_the_dashboard_on_loopback() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "gnzsnz/ib-gateway" in text
    assert "GATEWAY_SOCAT_PORT:-4004" in text and '"4003"' in text
    assert '"127.0.0.1:8080:8080"' in text
    # The proxy's allowlist itself: tests/deploy/test_docker_proxy.py.
    assert "socket-proxy" in text and "-allowPOST=" in text
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in text
    for name in ("paper", "live"):
        cfg = (ROOT / "config" / f"{name}.toml").read_text()
        assert f"port = {4004 if name == 'paper' else 4003}" in cfg


def test_healthcheck_reports_an_unreachable_engine(tmp_path: Path) -> None:
    from ibsim.harness import free_port

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[zmq]\nendpoint = "tcp://127.0.0.1:{free_port()}"\n')
    out = subprocess.run([sys.executable, "-m", "ops.healthcheck", str(cfg)], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "unreachable" in out.stdout


def test_supervisord_conf_needs_no_environment_variable() -> None:
    """Issue 18: supervisord refuses a file naming an undefined ENV variable, so the
    file names none (paths from %(here)s, settings in config/*.toml)."""
    conf = (ROOT / "supervisord.conf").read_text()
    assert not re.findall(r"%\(ENV_\w+\)s", conf)
    assert not re.search(r"^\s*password\s*=", conf, re.M)  # no constant: an owner-only socket
