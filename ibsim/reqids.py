"""Where the request id sits in each client message ibsim may not serve, so that a
request it cannot answer gets an error with *that* id (IB does the same: a client
waits on the id, and an error with id -1 leaves it hanging until its timeout).

Layouts from ib_async 2.1.0 / ib_insync 0.9.86 client.py at server version 176.
"""

from __future__ import annotations

# Requests without a version field: the id is field 1.
_ID_AT_1 = {3, 20, 22, 78, 79, 81, 83, 84, 86, 87, 88, 92, 94, 96, 97, 100, 102, 104}
# Requests with a version field: the id is field 2.
_ID_AT_2 = {1, 4, 7, 9, 10, 21, 50, 52, 54, 55, 62, 67, 68, 69, 74, 76}
# Cancels of a subscription: IB sends nothing back for one it does not know.
CANCELS = {2, 11, 23, 25, 51, 53, 56, 57, 63, 70, 75, 77, 89, 90, 93, 95, 98, 101, 103}

NAMES = {
    10: "reqMktDepth", 12: "reqNewsBulletins", 20: "reqHistoricalData",
    21: "exerciseOptions", 22: "reqScannerSubscription", 24: "reqScannerParameters",
    50: "reqRealTimeBars", 52: "reqFundamentalData", 54: "calculateImpliedVolatility",
    55: "calculateOptionPrice", 67: "queryDisplayGroups", 74: "reqPositionsMulti",
    79: "reqSoftDollarTiers", 81: "reqMatchingSymbols", 83: "reqSmartComponents",
    84: "reqNewsArticle", 86: "reqHistoricalNews", 88: "reqHistogramData", 92: "reqPnL",
    94: "reqPnLSingle", 96: "reqHistoricalTicks", 97: "reqTickByTickData",
    100: "reqWshMetaData", 102: "reqWshEventData", 104: "reqUserInfo",
}


def request_id(fields: list[str]) -> int | None:
    """The request (or order) id of a message, or None for one that has none."""
    if not fields:
        return None
    try:
        msg = int(fields[0])
    except ValueError:
        return None
    at = 1 if msg in _ID_AT_1 else 2 if msg in _ID_AT_2 else None
    if at is None or len(fields) <= at:
        return None
    try:
        return int(fields[at])
    except ValueError:
        return None


def unserved_text(msg: int) -> str:
    name = NAMES.get(msg, f"message id {msg}")
    return f"Error reading request.-'{name}' : cause - ibsim does not serve {name}"
