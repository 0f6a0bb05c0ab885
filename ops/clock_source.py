"""The clock the engine runs on, chosen from `[clock]`: real time, a simulated start and
speed, or a FileClock whose time another process sets (the chaos soak)."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

from config.loader import ClockConfig
from trading.clock import Clock, RealClock, SimClock


class ClockFileError(RuntimeError):
    pass


class FileClock:
    """Simulated time that another process sets (the chaos soak drives days this way).

    The file holds JSON {"at": ISO time, "speed": x, "wall": epoch seconds}; now is
    `at + (time.time() - wall) * speed`. Unlike SimClock it survives a restart of
    the engine: a process killed at 10:02 simulated comes back at 10:02, not at a
    start time. A file being rewritten (or broken) keeps the last good anchor.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._mtime = -1
        self._anchor = self._read()
        if self._anchor is None:
            raise ClockFileError(f"clock.file {self.path}: no readable time in it")

    def _read(self) -> tuple[datetime, float, float] | None:
        try:
            data = json.loads(self.path.read_text())
            at = datetime.fromisoformat(data["at"])
            speed, wall = float(data["speed"]), float(data["wall"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if at.tzinfo is None or speed < 0:
            return None
        return at, speed, wall

    def now(self) -> datetime:
        with self._lock:
            mono = time.monotonic()
            if mono - self._checked > 0.01:
                self._checked = mono
                try:
                    mtime = self.path.stat().st_mtime_ns
                except OSError:
                    mtime = self._mtime
                if mtime != self._mtime:
                    anchor = self._read()
                    if anchor is not None:
                        self._anchor, self._mtime = anchor, mtime
            assert self._anchor is not None
            at, speed, wall = self._anchor
        return at + timedelta(seconds=(time.time() - wall) * speed)


def write_clock_file(path: str | os.PathLike[str], at: datetime, speed: float) -> None:
    """Set a FileClock's time atomically (write + rename: readers never see half)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps({"at": at.isoformat(), "speed": speed, "wall": time.time()}))
    os.replace(tmp, target)


def clock_from_config(cfg: ClockConfig) -> Clock:
    if cfg.file:
        return FileClock(cfg.file)
    if not cfg.start:
        return RealClock()
    return SimClock(datetime.fromisoformat(cfg.start), cfg.speed)
