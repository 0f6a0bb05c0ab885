"""An entry prepared in the minute before its slot: the contract lookups done and the
candidate puts' quote lines already streaming, so that at the slot the choice and the
sale take milliseconds, not the second that 25 new lines need for bid, ask and greeks.

Nothing is decided here: at the slot the executor still reads the quotes (fresh by
`strategy.max_quote_age`) and chooses; the prepared lines only save the waiting.
Used by the OrderExecutor (on its own thread); it speaks to Connection only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from config.loader import StrategyConfig
from trading.model import ContractInfo
from trading.strikes import candidate_strikes, choose_expiry_by_rule, choose_strike_by_distance


@dataclass(frozen=True)
class PreparedEntry:
    trade_date: str
    slot: str
    underlying: ContractInfo
    expiry: str
    strikes: tuple[float, ...]  # every strike of the chain (for the choice at the slot)
    contracts: tuple[ContractInfo, ...]  # the candidate puts, lines open

    def contracts_for(self, wanted: list[float]) -> list[ContractInfo] | None:
        """The prepared puts for these strikes, or None if any is missing (spot moved)."""
        by_strike = {c.strike: c for c in self.contracts}
        if not all(k in by_strike for k in wanted):
            return None
        return [by_strike[k] for k in wanted]


def wanted_strikes(s: StrategyConfig, strikes: list[float], spot: float) -> list[float]:
    if s.strike_selection == "otm_distance":
        return [choose_strike_by_distance(strikes, spot, s.otm_distance)]
    return candidate_strikes(strikes, spot, 25)


def prepare(conn: Any, s: StrategyConfig, trade_date: str, slot: str, spot: float,
            timeout: float) -> PreparedEntry:
    """Qualify, choose the expiry and the candidate strikes around `spot` (a few extra on
    each side for a move before the slot), and open their lines (Connection.subscribe)."""
    underlying = conn.qualify_stock(s.symbol, s.exchange).get(timeout=timeout)
    expirations, strikes = conn.option_chain(s.symbol, underlying.con_id).get(timeout=timeout)
    expiry = choose_expiry_by_rule(expirations, date.fromisoformat(trade_date), s.target_dte,
                                   s.expiry_rule)
    wanted = set(wanted_strikes(s, strikes, spot))
    # A minute's move (about 0.5 %) must not leave the choice outside the prepared set.
    for moved in (spot * 0.995, spot * 1.005):
        wanted |= set(wanted_strikes(s, strikes, moved))
    contracts = conn.qualify_options(s.symbol, expiry, sorted(wanted), "P").get(
        timeout=timeout + 10)
    conn.subscribe(contracts).get(timeout=timeout)
    return PreparedEntry(trade_date, slot, underlying, expiry, tuple(strikes), tuple(contracts))


def release(conn: Any, prepared: PreparedEntry, keep: set[int]) -> None:
    """Close the prepared lines no held lot needs (IB counts every line)."""
    gone = [c.con_id for c in prepared.contracts if c.con_id not in keep]
    if gone:
        conn.unsubscribe(gone)
