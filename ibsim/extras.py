"""The per-gateway state the market-data ticks and the outside clients' services share:
the margin account, the seeded walks of every instrument and their day statistics."""

from __future__ import annotations

from ibsim import account, history, universe
from ibsim.broker import Broker
from ibsim.market import ET, Market


def price_digits(symbol: str) -> int:
    """Decimals a price of this walk is quoted in (forex: 5, yen pairs 3)."""
    inst = universe.INSTRUMENTS.get(symbol)
    if inst is None or inst.sec_type != "CASH":
        return 2
    return 3 if inst.currency == "JPY" else 5


class Extras:
    """Per-gateway state of these services, on the gateway's broker and market."""

    def __init__(self, broker: Broker, market: Market, seed: int = 0) -> None:
        self.market = market
        self.seed = seed
        self.account = account.AccountModel(broker)
        self.stats: dict[str, history.DayStats] = {}
        universe.start_spot(market)  # other instruments move relative to SPY from here

    def spot(self, symbol: str) -> float:
        inst = universe.INSTRUMENTS.get(symbol)
        return universe.price(inst, self.market) if inst else self.market.spot

    def walk(self, symbol: str = "SPY") -> history.Walk:
        m = self.market
        return history.Walk(self.seed, symbol, m.volatility, self.spot(symbol), m.now())

    def day_stats(self, symbol: str = "SPY") -> history.DayStats:
        today = self.market.now().astimezone(ET).date()
        st = self.stats.get(symbol)
        if st is None or st.day != today:
            st = history.day_stats(self.walk(symbol), price_digits(symbol))
            self.stats[symbol] = st
        return st
