"""Fill models: when a resting limit inside the spread fills (`--fill-model`).

* `kind` (the default, fast tests): every tick the market trades at a seeded point
  across the spread; a sell limit at or under it fills. A limit at the mid fills within
  a few ticks, so a patient seller is flattered.
* `buyers`: nobody trades inside the spread unless a counterparty arrives. Buyers
  arrive at `buyer_rate` a second per contract (Bernoulli per tick, p = 1 - e^-rate*dt,
  dt = the tick interval, not wall time, so a seed replays); each is willing to pay
  bid + spread * U^2 (U uniform from the seed): most pay near the bid, about 29 % pay
  the mid or more. A sell limit fills only at an arrival whose price reaches it; sellers
  meet buy limits the same way, mirrored. Marketable orders still fill at once at the
  touch (the displayed size is there).

The draws come from their own `random.Random`, so the market's stream (and every
price) is the same under both models.
"""

from __future__ import annotations

import math
import random

MODELS = ("kind", "buyers")


class BuyersModel:
    def __init__(self, seed: int, rate: float) -> None:
        if rate < 0:
            raise ValueError("buyer_rate must be >= 0")
        self.rng = random.Random(seed * 7919 + 17)
        self.rate = rate
        self.dt = 0.25  # seconds per tick: the gateway sets its tick interval each tick
        # con_id -> (tick_no, buyer's price or None, seller's price or None)
        self.drawn: dict[int, tuple[int, float | None, float | None]] = {}

    def _draw(self, con_id: int, tick_no: int, bid: float, ask: float) -> \
            tuple[float | None, float | None]:
        got = self.drawn.get(con_id)
        if got is not None and got[0] == tick_no:
            return got[1], got[2]  # one draw per tick: match() also runs after each order
        p = 1 - math.exp(-self.rate * self.dt)
        spread = ask - bid
        buyer = bid + spread * self.rng.random() ** 2 if self.rng.random() < p else None
        seller = ask - spread * self.rng.random() ** 2 if self.rng.random() < p else None
        self.drawn[con_id] = (tick_no, buyer, seller)
        return buyer, seller

    def sell_fills(self, con_id: int, tick_no: int, limit: float, bid: float,
                   ask: float) -> bool:
        """A resting sell limit inside the spread: did a buyer pay it this tick?"""
        buyer, _ = self._draw(con_id, tick_no, bid, ask)
        return buyer is not None and buyer >= limit - 1e-9

    def buy_fills(self, con_id: int, tick_no: int, limit: float, bid: float,
                  ask: float) -> bool:
        _, seller = self._draw(con_id, tick_no, bid, ask)
        return seller is not None and seller <= limit + 1e-9
