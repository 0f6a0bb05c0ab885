"""The contract requests: reqContractDetails and reqSecDefOptParams answered (a broken
secdef farm answers nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibsim import sessions, universe, wire
from ibsim.contracts import contract_from, no_secdef, under_con_id
from ibsim.market import SPY_CON_ID, expirations

if TYPE_CHECKING:
    from ibsim.client import Session
    from ibsim.parts import Parts


async def req_contract_details(gw: Parts, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    if "secdef" in gw.farms_broken:
        return  # no farm to look it up: the request goes unanswered (client timeout)
    spec = contract_from(f, 3)
    found = gw.broker.resolve(spec)
    if spec["exchange"] and spec["sec_type"] in ("", "STK"):
        found = [dict(c, exchange=spec["exchange"]) for c in found]
    if not found:
        no_secdef(s, req_id)
        return
    for c in found:
        now = gw.market.now()
        s.send(wire.contract_details(req_id, c, under_con_id(c),
                                     sessions.hours(c, now, liquid=False),
                                     sessions.hours(c, now, liquid=True)))
    s.send(wire.frame(52, 1, req_id))


async def req_sec_def_opt_params(gw: Parts, s: Session, f: list[str]) -> None:
    """The option chains: SPY's, QQQ's and IWM's. A broken secdef farm answers nothing
    for SPY (QQQ's and IWM's chains come regardless)."""
    inst = universe.WITH_OPTIONS.get(f[2].upper()) if len(f) > 2 else None
    req_id = int(f[1])
    if inst is None:
        if "secdef" in gw.farms_broken:
            return
        if f[2].upper() != "SPY":
            no_secdef(s, req_id)
            return
        con_id, symbol = SPY_CON_ID, "SPY"
        exps = expirations(gw.market.now())
        strikes = gw.market.strikes()
    else:
        con_id, symbol = inst.con_id, inst.symbol
        exps = expirations(gw.market.now())
        strikes = universe.strikes(inst, gw.market)
    for exch in ("SMART", "CBOE"):
        s.send(wire.frame(75, req_id, exch, con_id, symbol, 100, len(exps), *exps,
                          len(strikes), *strikes))
    s.send(wire.frame(76, req_id))
