"""Exponential backoff, written once: initial, 2x, 4x ... capped at a maximum."""

from __future__ import annotations


def backoff_delay(attempt: int, initial: float, maximum: float = float("inf")) -> float:
    """The wait before retry number `attempt` (counted from 1)."""
    return min(maximum, initial * 2 ** max(0, attempt - 1))


class Backoff:
    """The same sequence for a loop that keeps its place: wait `delay`, then `grow()`
    after a failure; `reset()` after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self.attempt = 1

    @property
    def delay(self) -> float:
        return backoff_delay(self.attempt, self.initial, self.maximum)

    def grow(self) -> None:
        self.attempt += 1

    def reset(self) -> None:
        self.attempt = 1
