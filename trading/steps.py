"""Where a stretch of work spends its time: named steps on a monotonic clock, rendered
as one log line (`name=1.23` in ms) that bench.entry reads back ("margin -> SELL sent")."""

from __future__ import annotations

import re
import time

STEP = re.compile(r"([a-z_]+)=([0-9.]+)")


class Steps:
    """Each mark ends the step begun at the previous mark (or at creation)."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.spent: list[tuple[str, float]] = []  # (name, seconds), in order

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.spent.append((name, now - self._last))
        self._last = now

    def render(self) -> str:
        """`a=0.31 b=12.40` in milliseconds (a name marked twice is summed)."""
        total: dict[str, float] = {}
        for name, seconds in self.spent:
            total[name] = total.get(name, 0.0) + seconds
        return " ".join(f"{name}={seconds * 1000:.2f}" for name, seconds in total.items())


def parse(text: str) -> dict[str, float]:
    """Steps.render's line back to seconds per name."""
    return {name: float(ms) / 1000 for name, ms in STEP.findall(text)}
