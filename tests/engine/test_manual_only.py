"""Issue 18: `schedule.entry_times = []` means entries by hand only, with a warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loguru import logger

from config.loader import load_config
from tests.engine.test_lifecycle import enter_and_wait


def test_empty_schedule_is_accepted_and_warned_about(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[schedule]\nentry_times = []\n")
    assert load_config(cfg, environ={}).schedule.entry_times == []


def test_no_schedule_warns_at_start_and_on_status_and_enters_by_hand(
    start_engine: Any, sim: Any
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="WARNING")
    try:
        eng = start_engine({"schedule": {"entry_times": []},
                            "strategy": {"strike_selection": "otm_distance"}})
    finally:
        logger.remove(sink)
    assert any("entries by hand only" in ln for ln in lines), lines
    status = eng.ask("status")
    assert status["entry"]["slots"] == []
    assert any("entries by hand only" in w for w in status["warnings"])
    sim.post("/market", {"spot": 601.0, "walk_sigma": 0.0})
    lot = enter_and_wait(eng, 0)  # the slot is the minute of the request: 10:00 ET
    assert lot.slot == "10:00"
    assert eng.ask("status")["entry"]["slots"] == []
