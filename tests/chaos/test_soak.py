"""The CI version of the chaos soak: a few simulated days, >= 30 faults, >= 3 kills.
`make soak SEED=N DAYS=M` runs the long one (tests/chaos/soak.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.soak import Soak

# Seed 2 found an entry left 'started' for ever by a kill before its sale (fixed);
# it stays as the CI seed so that failure keeps being replayed.
CI_SEED, CI_DAYS = 2, 4


@pytest.mark.chaos
@pytest.mark.timeout(300)
def test_short_chaos_soak_keeps_every_invariant(tmp_path: Path) -> None:
    lines: list[str] = []
    report = Soak(CI_SEED, CI_DAYS, tmp_path, log=lines.append).run()
    print("\n".join(lines))
    print(report.text())
    assert sum(report.faults.values()) >= 30, report.text()
    assert report.kills >= 3, report.text()
    assert report.checks["protected"] == CI_DAYS and report.checks["integrity"] > report.kills
    assert report.violations == [], report.text()


def test_a_seed_always_plans_the_same_faults() -> None:
    import random

    from tests.chaos.soak import plan_day

    assert plan_day(random.Random(9), 9, 1) == plan_day(random.Random(9), 9, 1)
    assert plan_day(random.Random(9), 9, 1) != plan_day(random.Random(10), 9, 1)


def test_every_fault_can_be_drawn_and_the_waiting_ones_are_listed_not_drawn() -> None:
    import random

    from tests.chaos.soak import FAULT_KINDS, WAITING_FAULTS, Report, plan_day

    every = {f.kind for seed in range(60)
             for f in plan_day(random.Random(seed), 9, 0, with_waiting=True)}
    assert set(FAULT_KINDS) | set(WAITING_FAULTS) <= every
    drawn = {f.kind for seed in range(60) for f in plan_day(random.Random(seed), 9, 0)}
    assert {"outage_2110", "farm_break"} <= drawn and not drawn & set(WAITING_FAULTS)
    # Every adversity of ibsim's the engine survives is drawn by default now (issues 13,
    # 14 and 16); the report names any that still wait for their engine issue.
    assert {"partial_fills", "stall", "fill_on_cancel", "early_assignment"} <= drawn
    text = Report(1, 1).text()
    assert all(f"{k} -> {why}" in text for k, why in WAITING_FAULTS.items())
