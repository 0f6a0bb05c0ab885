"""IB's message codes as IB means them: the one table the engine reads them from.

Source: IB's TWS API "Message Codes" page and what ib_insync 0.9.86 does with them
(wrapper.error). Each code says what it does to the link, to market data and to
orders, with IB's text (abridged) beside it. 2110 is a LOSS like 1100 (a warning-range
code, not a restore: the seed's bot had it backwards).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeEffect:
    link: str  # "lost" | "restored" | "evidence" (a sign of IB's side) | "retry" | "new_port" | ""
    market_data: str  # "lost" | "resubscribe" | "kept" | "stale" | "fresh" | ""
    orders: str  # "working" (a warning: the order lives) | "dead" | ""
    farm: str  # "market" | "hmds" | "secdef" | ""
    text: str


IB_CODES: dict[int, CodeEffect] = {
    1100: CodeEffect("lost", "stale", "", "",
                     "Connectivity between IB and Trader Workstation has been lost."),
    2110: CodeEffect("lost", "stale", "", "",
                     "Connectivity between Trader Workstation and server is broken. "
                     "It will be restored automatically."),
    1101: CodeEffect("restored", "resubscribe", "", "",
                     "Connectivity between IB and TWS has been restored - data lost."),
    1102: CodeEffect("restored", "kept", "", "",
                     "Connectivity between IB and TWS has been restored - data maintained."),
    1300: CodeEffect("new_port", "", "", "",
                     "TWS socket port has been reset and this connection is being dropped. "
                     "Please reconnect on port ..."),
    326: CodeEffect("retry", "", "", "",
                    "Unable to connect as the client id is already in use. "
                    "Retry with a unique client id."),
    2103: CodeEffect("", "stale", "", "market", "A market data farm is disconnected."),
    2104: CodeEffect("evidence", "fresh", "", "market", "Market data farm connection is OK."),
    2105: CodeEffect("", "", "", "hmds", "A historical data farm is disconnected."),
    2106: CodeEffect("evidence", "", "", "hmds", "A historical data farm is connected."),
    2157: CodeEffect("", "", "", "secdef", "Sec-def data farm connection is broken."),
    2158: CodeEffect("evidence", "", "", "secdef", "Sec-def data farm connection is OK."),
    399: CodeEffect("", "", "working", "",
                    "Order message: ... (e.g. will not be placed at the exchange until ...)"),
    2109: CodeEffect("", "", "working", "",
                     "Order Event Warning: Attribute 'Outside Regular Trading Hours' is "
                     "ignored ..."),
    201: CodeEffect("", "", "dead", "", "Order rejected - reason: ..."),
    202: CodeEffect("", "", "dead", "", "Order cancelled - reason: ..."),
}

LINK_LOST = frozenset(c for c, e in IB_CODES.items() if e.link == "lost")
LINK_RESTORED = frozenset(c for c, e in IB_CODES.items() if e.link == "restored")
FARM_OK = frozenset(c for c, e in IB_CODES.items() if e.link == "evidence")
FARM_BROKEN = frozenset(c for c, e in IB_CODES.items() if e.farm and e.link != "evidence")
CLIENT_ID_IN_USE = 326
# IB's pacing: 50 messages a second per client, error 100 past it (trading/refusals.py);
# ib_insync's throttle (Client.MaxRequests per second) keeps under it.
IB_MAX_MESSAGES = 50
THROTTLE_PER_SECOND = 45


def effect(code: int) -> CodeEffect | None:
    return IB_CODES.get(code)
