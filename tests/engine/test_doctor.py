"""Issue 30: `python -m ops.doctor --config FILE`, as an operator runs it, against ibsim
over TCP: every line PASS on a good gateway; on a read-only one the read-only line FAILs
with its fix and the exit status is non-zero. It never places an order."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import ROOT, write_config

CHECKS = ("gateway", "accounts", "underlying", "chain", "option", "read-only", "margin",
          "clock", "market data")


def doctor(config: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    r = subprocess.run([sys.executable, "-m", "ops.doctor", "--config", str(config)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    lines = {}
    for line in r.stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status in ("PASS", "WARN", "FAIL"):
            name = next(c for c in CHECKS if rest.strip().startswith(c))
            lines[name] = status
    return r.returncode, lines, r.stdout


def test_doctor_passes_every_check_on_a_good_gateway(tmp_path: Path, sim: Any) -> None:
    # The engine's own overrides apply: the port comes from TRADING_BOT__GATEWAY__PORT.
    cfg = write_config(tmp_path / "e.toml", sim, {"gateway": {"port": 1}})
    code, lines, out = doctor(cfg, {"TRADING_BOT__GATEWAY__PORT": str(sim.port)})
    assert code == 0, out
    assert lines == dict.fromkeys(CHECKS, "PASS"), out
    state = sim.get_state()
    assert state["open_orders"] == [] and state["executions"] == []  # whatIf only


@pytest.mark.parametrize("sim", [{"read_only": True}], indirect=True)
def test_doctor_fails_the_read_only_line_with_its_fix(tmp_path: Path, sim: Any) -> None:
    code, lines, out = doctor(write_config(tmp_path / "e.toml", sim))
    assert code == 1, out
    assert lines["read-only"] == "FAIL" and lines["gateway"] == "PASS", out
    assert "Read-Only mode" in out and "fix: untick" in out and "Read-Only API" in out


def test_doctor_fails_an_unreachable_gateway(tmp_path: Path, sim: Any) -> None:
    cfg = write_config(tmp_path / "e.toml", sim)
    code, lines, out = doctor(cfg, {"TRADING_BOT__GATEWAY__PORT": "1"})
    assert code == 1 and lines["gateway"] == "FAIL" and "unreachable" in out, out


def test_doctor_names_a_missing_options_subscription(tmp_path: Path, sim: Any) -> None:
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "none"})
    code, lines, out = doctor(write_config(tmp_path / "e.toml", sim))
    assert code == 1, out
    assert lines["option"] == "FAIL" and lines["underlying"] == "PASS", out
    assert "IB 354" in out and "OPRA" in out, out
