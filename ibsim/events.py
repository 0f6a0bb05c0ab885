"""What the broker tells the gateway: an `Event` per thing clients must hear."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DONE = ("Filled", "Cancelled", "Inactive")  # an order's final states


@dataclass
class Event:
    """Something clients must hear: `kind` in order/exec/position/account; `client_id`
    None means every client of the account that subscribed."""

    kind: str
    data: dict[str, Any]
    client_id: int | None = None

