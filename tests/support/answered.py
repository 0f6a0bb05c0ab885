"""A pykka future that is already answered: what a stand-in actor proxy's method
returns, so code under test can call `.get(timeout=...)` on it as on a real one."""

from __future__ import annotations

from typing import Any


class Answered:
    def __init__(self, value: Any) -> None:
        self.value = value

    def get(self, timeout: float | None = None) -> Any:
        return self.value
