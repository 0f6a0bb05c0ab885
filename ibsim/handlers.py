"""The TWS API requests of a session (startApi, positions, open orders, account
updates and summaries, executions, ids, time) and the table of every request ibsim
serves: message id -> handler(gateway, session, fields)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from ibsim import account, codes, lookups, quotes, schedule, services, wire
from ibsim.contracts import int_field
from ibsim.faults import FARM_CODES, LOSS_TEXT
from ibsim.ordering import Ordering

if TYPE_CHECKING:
    from ibsim.client import Session
    from ibsim.parts import Handler, Parts


async def start_api(gw: Parts, s: Session, f: list[str]) -> None:
    client_id = int(f[2])
    if any(o.client_id == client_id for o in gw.sessions if o is not s):
        s.send(wire.error(-1, 326, codes.text(326)))
        await s.writer.drain()
        s.close()
        return
    s.client_id = client_id
    s.send(wire.frame(15, 1, ",".join(gw.broker.accounts)))
    s.send(wire.frame(9, 1, gw.broker.next_order_id))
    if gw.in_outage:
        # A gateway cut off from IB says so at once, and has no farm to report OK.
        s.send(wire.error(-1, gw.outage_code, LOSS_TEXT[gw.outage_code]))
    else:
        for farm, (broken, ok) in FARM_CODES.items():
            code, text = broken if farm in gw.farms_broken else ok
            s.send(wire.error(-1, code, text))
    gw.log.info("client {} connected from {}", client_id, s.peer)


async def req_positions(gw: Parts, s: Session, f: list[str]) -> None:
    s.wants_positions = True
    for acct, book in gw.broker.books():  # every managed account's (IB: reqPositions)
        for pos in book.values():
            if pos["position"] != 0:
                s.send(wire.position(acct, pos["contract"], pos["position"], pos["avg_cost"]))
    s.send(wire.frame(62, 1))


async def cancel_positions(gw: Parts, s: Session, f: list[str]) -> None:
    s.wants_positions = False


async def req_open_orders(gw: Parts, s: Session, f: list[str]) -> None:
    if gw.read_only:
        # IB: 321 on id -1 and no openOrderEnd; ib_insync's connect waits out its timeout
        # for the open orders ("open orders request timed out") unless readonly=True.
        s.send(wire.error(-1, 321, codes.read_only("bY")))
        return
    only = None if int(f[0]) == 16 else s.client_id
    for o in gw.broker.open_orders(only):
        if o["status"] == "PendingSubmit":
            continue
        s.send(wire.open_order(o))
        s.send(wire.order_status(o))
    s.send(wire.frame(53, 1))


async def req_account_updates(gw: Parts, s: Session, f: list[str]) -> None:
    s.wants_account = f[2] == "1"
    if not s.wants_account:
        return
    acct = f[3] if len(f) > 3 and f[3] else gw.broker.account
    if acct != gw.broker.account:
        # Another managed account: its portfolio; its values are not modelled.
        s.wants_account = False
        for pos in gw.broker.book(acct).values():
            if pos["position"] != 0:
                _bid, _ask, mark = gw.broker.quote_of(pos["contract"])
                mult = float(pos["contract"].get("multiplier") or 1)
                s.send(wire.portfolio(acct, pos["contract"], pos["position"], mark,
                                      pos["avg_cost"],
                                      pos["position"] * (mark * mult - pos["avg_cost"]), 0.0))
        s.send(wire.frame(54, 1, acct))
        return
    gw._send_account_values(s)
    for pos in gw.broker.positions.values():
        if pos["position"] != 0:
            gw._send_portfolio(s, pos)
    s.send(wire.frame(8, 1, datetime.now().strftime("%H:%M")))
    s.send(wire.frame(54, 1, gw.broker.account))


async def req_account_summary(gw: Parts, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    tags = f[4] if len(f) > 4 else "All"
    fig = gw.extras.account.figures()
    for tag, value, ccy in account.summary_rows(fig, tags):
        s.send(wire.frame(63, 1, req_id, gw.broker.account, tag, value, ccy))
    s.send(wire.frame(64, 1, req_id))


async def req_account_multi(gw: Parts, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    if len(f) > 3 and f[3] and f[3] != gw.broker.account:
        s.send(wire.frame(74, 1, req_id))  # another account: values not modelled
        return
    fig = gw.extras.account.figures()
    for key, value, ccy in account.update_rows(fig):
        s.send(wire.frame(73, 1, req_id, gw.broker.account, "", key, value, ccy))
    s.send(wire.frame(74, 1, req_id))


async def req_executions(gw: Parts, s: Session, f: list[str]) -> None:
    req_id = int(f[2])
    want_client = int_field(f[3]) if len(f) > 3 else 0
    # IB's "current day": only executions since the last reset (00:15 ET; ibsim/schedule.py).
    since = schedule.last_reset(gw.market.now()).isoformat()
    for e in gw.broker.executions:
        if want_client and e["client_id"] != want_client:
            continue
        if e.get("sim_time") and datetime.fromisoformat(e["sim_time"]) < \
                datetime.fromisoformat(since):
            continue
        s.send(wire.exec_details(req_id, e))
        s.send(wire.commission_report(e))
    s.send(wire.frame(55, 1, req_id))


async def req_current_time(gw: Parts, s: Session, f: list[str]) -> None:
    s.send(wire.frame(49, 1, int(time.time())))


async def req_ids(gw: Parts, s: Session, f: list[str]) -> None:
    s.send(wire.frame(9, 1, gw.broker.next_order_id))


async def req_global_cancel(gw: Parts, s: Session, f: list[str]) -> None:
    gw._dispatch(gw.broker.cancel_all())


async def req_market_data_type(gw: Parts, s: Session, f: list[str]) -> None:
    s.data_type = int(f[2])


async def noop(gw: Parts, s: Session, f: list[str]) -> None:
    return None


HANDLERS: dict[int, Handler] = {
    71: start_api, 61: req_positions, 64: cancel_positions, 5: req_open_orders,
    16: req_open_orders, 15: noop, 63: noop, 90: noop, 6: req_account_updates,
    76: req_account_multi, 62: req_account_summary, 7: req_executions,
    49: req_current_time, 8: req_ids, 58: req_global_cancel, 59: req_market_data_type,
    9: lookups.req_contract_details, 78: lookups.req_sec_def_opt_params,
    1: quotes.req_mkt_data, 2: quotes.cancel_mkt_data, 3: Ordering.place_order,
    4: Ordering.cancel_order, 20: services.req_historical_data,
    87: services.req_head_timestamp, 99: services.req_completed_orders,
}
