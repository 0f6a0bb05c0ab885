"""The benchmarks still run (tiny sizes): each prints its table and one BENCH_JSON line
with every figure a number. No figure is judged here: CI times nothing (issue 8)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMALL = {
    "outage": ["--outages", "2", "--restarts", "1", "--flaps", "2"],
    "exits": ["--entries", "3"],
    "entry": ["--entries", "2", "--lead", "1"],
    "dashboard": ["--seconds", "1", "--clients", "2"],
    "ticks": ["--step-seconds", "0.5", "--lots", "1", "--rates", "2000,400000"],
    "fills": ["--entries", "2", "--rates", "0.5,4", "--ticks-per-step", "4"],
    "memory": ["--trades", "100", "--messages", "2000"],
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bench_script_runs_and_reports(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *SMALL[name]],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
    assert len(lines) == 1, out.stdout[-2000:]
    report = json.loads(lines[0].removeprefix("BENCH_JSON "))
    assert report["bench"] == name
    assert report["figures"] and all(
        isinstance(v, int | float) and not math.isnan(v) for v in report["figures"].values()
    ), report["figures"]
    assert f"== bench.{name} ==" in out.stdout
    # Beside each goal: what limited the figure, the thing measured or the harness.
    for fig in report["goals_met"]:
        assert report["limited_by"][fig] == "measured" or \
            report["limited_by"][fig].startswith("harness: "), report["limited_by"]
