"""IB's refusals: the one table of codes a real gateway answers a request with, IB's text
beside each, what it means for this bot, what the operator should do, and how bad it is.

Sources (shared/ib-codes.md has them beside each code): IB's TWS API "Message Codes"
page, IB's historical-data limitations page, ib_insync 0.9.86's wrapper.error and its
issues #1 (321 read-only) and #704 (201 margin text), ib_async issues #191/#217 (10349),
IBC issues #10 and #227. Link and farm codes (1100, 2104 ...) are actors/connection/
codes.py's; this table is the codes tied to a request the engine made (a reqId or an
orderId), plus 100 (pacing), which IB sends for the whole connection.

`effect` is what waiting can do about it:
- "skip": waiting cannot help (a setting or a subscription must change); the entry is
  skipped (or failed by hand) with the fix, never left waiting for its deadline.
- "wait": transient or partial; the request may be asked again later.
- "dead": that order is dead (rejected, cancelled) but a later one may pass.
- "live": a warning only: the order stays live at the broker (never trust a
  "Cancelled" that ib_insync made of it without the gateway's own order status).
- "info": nothing to do.
IB's texts vary in detail (ids, amounts, the quoted token of 321) and are translated
in non-English installations: match on codes, and only split a code by its text where
IB uses one code for causes that need different fixes (201, 321, 162).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import date
from typing import Any


@dataclass(frozen=True)
class RefusalCode:
    code: int
    cause: str  # short machine name of the cause ("read_only", "no_subscription" ...)
    ib_text: str  # IB's text, abridged (the live text is kept on each Refusal)
    meaning: str
    fix: str
    severity: str  # "info" | "warning" | "error" (an alert's severity, by its effect)
    effect: str  # "skip" | "wait" | "dead" | "live" | "info"


def _c(code: int, cause: str, ib_text: str, meaning: str, fix: str, severity: str,
       effect: str) -> RefusalCode:
    return RefusalCode(code, cause, ib_text, meaning, fix, severity, effect)


_SUBSCRIPTIONS = ("in Client Portal (Settings > Market Data Subscriptions) subscribe to "
                  "OPRA (US options) and the underlying's exchange for API use, or allow "
                  "delayed data in a paper profile (gateway.market_data_type = 3)")

# One entry per code; codes IB uses for several causes have variants in _VARIANTS.
REFUSAL_CODES: dict[int, RefusalCode] = {c.code: c for c in (
    _c(321, "read_only",
       "Error validating request.-'bN' : cause - The API interface is currently in "
       "Read-Only mode.",
       "the gateway's Read-Only API setting is on: every order, whatIf included, and the "
       "open-orders request are refused",
       "untick Configure > Settings > API > Settings > 'Read-Only API' in IB Gateway/TWS "
       "(IBC: ReadOnlyApi=no; ib-gateway-docker: READ_ONLY_API=no), then restart the engine",
       "error", "skip"),
    _c(354, "no_subscription",
       "Requested market data is not subscribed. Check API status by selecting the Account "
       "menu then under Management choose Market Data Subscription Manager and/or "
       "availability of delayed data.",
       "no market-data subscription for this line: no quote will come, waiting cannot help",
       _SUBSCRIPTIONS, "error", "skip"),
    _c(10089, "no_api_subscription",
       "Requested market data requires additional subscription for API. See link in "
       "'Market Data Connections' dialog for more details. Delayed market data is available.",
       "the subscription does not cover API use: no live quote for this line",
       _SUBSCRIPTIONS, "error", "skip"),
    _c(10090, "partial_subscription",
       "Part of requested market data is not subscribed. Subscription-independent ticks are "
       "still active.",
       "a partial quote only (e.g. no underlying subscription: no live greeks)",
       _SUBSCRIPTIONS, "warning", "wait"),
    _c(10167, "delayed_offered",
       "Requested market data is not subscribed. Displaying delayed market data.",
       "delayed quotes (15 minutes old) follow instead of live ones: never priced for a "
       "live sale",
       _SUBSCRIPTIONS, "warning", "skip"),
    _c(10168, "delayed_not_enabled",
       "Requested market data is not subscribed. Delayed market data is not enabled.",
       "no subscription and no delayed data: nothing follows",
       _SUBSCRIPTIONS, "error", "skip"),
    _c(10197, "competing_session",
       "No market data during competing live session",
       "the same IB username is logged in elsewhere (TWS, mobile, web) and holds the market "
       "data: this session gets none while it lasts",
       "log out of the other session (TWS, IBKR Mobile, Client Portal) or give the bot its "
       "own IB username; quotes return when the other session ends",
       "error", "wait"),
    _c(200, "no_security_definition",
       "No security definition has been found for the request",
       "the contract asked for does not exist as described (symbol, expiry, strike, "
       "exchange)",
       "check strategy.symbol/exchange and the expiry rule against the option chain "
       "(python -m ops.doctor lists it)",
       "warning", "skip"),
    _c(201, "rejected",
       "Order rejected - reason: ...",
       "the broker rejected the order",
       "read IB's reason; see the order in TWS/Client Portal",
       "error", "dead"),
    _c(460, "no_trading_permissions",
       "No trading permissions.",
       "the account has no trading permission for this product (e.g. options)",
       "request the options trading permission in Client Portal (Settings > Account "
       "Settings > Trading Permissions), then wait for IB's approval",
       "error", "skip"),
    _c(2137, "cross_side_warning",
       "The closing order quantity is greater than your current position.",
       "a warning: a BUY larger than the short position; the order stays live",
       "none needed; TWS can turn the warning off (Presets > cross-side warning)",
       "info", "live"),
    _c(202, "cancelled",
       "Order cancelled - reason: ...",
       "the order was cancelled (ours or IB's)",
       "none if the bot cancelled it; otherwise read IB's reason",
       "info", "dead"),
    _c(110, "min_tick",
       "The price does not conform to the minimum price variation for this contract.",
       "the limit or stop price is not a multiple of the contract's minimum tick",
       "a bug to report: prices are rounded to the contract's minTick before sending",
       "error", "dead"),
    _c(103, "duplicate_order_id",
       "Duplicate order id",
       "the order id was used before in this session",
       "another client shares the client id, or the session's ids restarted: give every "
       "client (engine, doctor, TWS) its own gateway.client_id",
       "error", "dead"),
    _c(162, "historical_data",
       "Historical Market Data Service error message: ...",
       "a historical-data request failed (see the text: pacing, no data, or cancelled)",
       "fewer or slower history requests (IB: 60 per 10 minutes); check permissions",
       "warning", "wait"),
    _c(366, "historical_no_request",
       "No historical data query found for ticker id",
       "a cancel for a history request IB no longer has",
       "none", "info", "info"),
    _c(420, "historical_permissions",
       "Invalid real-time query: ... no market data permissions / pacing",
       "real-time or history request refused: permissions or pacing",
       _SUBSCRIPTIONS, "warning", "wait"),
    _c(100, "pacing",
       "Max rate of messages per second has been exceeded:max=50 rec=N (1)",
       "more than 50 messages a second reached the gateway; it may disconnect the client",
       "a bug to report: ib_insync throttles at 45/s (Client.MaxRequests); find what "
       "bypassed it (status shows the peak rate)",
       "error", "wait"),
    _c(10349, "tif_preset",
       "Order TIF was set to DAY based on order preset.",
       "informational: a TWS order preset changed the time in force; the order stays live "
       "(ib_insync 0.9 marks it Cancelled: the gateway's order status decides)",
       "set the preset's TIF in TWS (Global Configuration > Presets) or accept DAY",
       "warning", "live"),
    _c(10311, "precautionary_routing",
       "This order will be directly routed to ... Precautionary Settings ...",
       "IB's precautionary settings blocked the order",
       "in TWS: Global Configuration > API > Precautions (bypass for API orders) or "
       "Presets > Precautionary Settings",
       "error", "skip"),
    _c(451, "precautionary_value",
       "The value estimate ... exceeds the Total Value Limit ...",
       "IB's precautionary size/value limit blocked the order",
       "raise the Total Value Limit in TWS Presets > Precautionary Settings (or bypass "
       "precautions for API orders)",
       "error", "skip"),
    _c(10147, "cancel_unknown",
       "OrderId ... that needs to be cancelled is not found.",
       "nothing to cancel: the order is unknown or already done",
       "none: the broker's order status and executions say what became of it",
       "info", "info"),
    _c(10148, "cancel_not_cancellable",
       "OrderId ... that needs to be cancelled can not be cancelled, state: ...",
       "the cancel lost a race (often: filled)",
       "none: the broker's executions say whether it filled",
       "info", "info"),
    _c(161, "cancel_not_cancellable",
       "Cancel attempted when order is not in a cancellable state.",
       "the cancel lost a race (often: filled)",
       "none: the broker's executions say whether it filled",
       "info", "info"),
)}

# Codes IB uses for causes that need different fixes, told apart by IB's text.
_VARIANTS: dict[tuple[int, str], RefusalCode] = {
    (201, "margin"): _c(
        201, "margin",
        "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED "
        "POSITION YOUR EQUITY WITH LOAN VALUE [..] MUST EXCEED THE INITIAL MARGIN [..]",
        "not enough margin for the sale",
        "add funds or lower strategy.quantity / risk.max_margin_use; the whatIf check "
        "should refuse first",
        "error", "skip"),
    (201, "permissions"): _c(
        201, "permissions",
        "Order rejected - reason:Account May Not Hold Positions: Short Put (or another "
        "permissions text)",
        "the account lacks the trading permission for this order (selling uncovered puts "
        "needs options level 'naked' or a cash-secured put approval)",
        "request the options trading permission in Client Portal (Settings > Account "
        "Settings > Trading Permissions), then wait for IB's approval",
        "error", "skip"),
    (321, "validation"): _c(
        321, "validation",
        "Error validating request.-'..' : cause - ...",
        "IB found a field of the request invalid",
        "read IB's cause; a bug to report if the bot built the request",
        "error", "dead"),
    (162, "pacing"): _c(
        162, "historical_pacing",
        "Historical Market Data Service error message:Pacing violation",
        "too many history requests (IB: 60 per 10 minutes, none identical within 15 s)",
        "ask for history less often", "warning", "wait"),
    (162, "no_data"): _c(
        162, "historical_no_data",
        "Historical Market Data Service error message:HMDS query returned no data",
        "no bars for that period", "none", "info", "info"),
}


def code_of(code: int, message: str = "") -> RefusalCode | None:
    """The table's entry for `code`, the variant IB's `message` names where the code has
    several causes; None for a code not in the table."""
    text = (message or "").lower()
    if code == 201:
        if "margin" in text or "equity with loan" in text:
            return _VARIANTS[(201, "margin")]
        # "Account May Not Hold Positions: Short Put" is IB's word for a naked put the
        # options permissions do not allow (ibsim/codes.py names its source).
        if ("permission" in text or "not approved" in text or "not allowed" in text
                or "may not hold positions" in text):
            return _VARIANTS[(201, "permissions")]
    if code == 321 and "read-only" not in text and "read only" not in text:
        return _VARIANTS[(321, "validation")]
    if code == 162:
        if "pacing" in text:
            return _VARIANTS[(162, "pacing")]
        if "no data" in text:
            return _VARIANTS[(162, "no_data")]
    return REFUSAL_CODES.get(code)


def all_codes() -> list[RefusalCode]:
    """Every entry and variant (the README's and the doctor's table)."""
    return [*REFUSAL_CODES.values(), *_VARIANTS.values()]


@dataclass(frozen=True)
class Refusal:
    """One refusal as the gateway gave it, named: the outcome a code path reports."""

    code: int
    cause: str
    message: str  # IB's own text, as sent
    meaning: str
    fix: str
    severity: str
    effect: str
    request: str = ""  # what asked: "market data", "whatIf", "order", "contract", "connect"
    subject: str = ""  # the contract's symbol, or the order's ref
    time: float = 0.0
    req_id: int = 0

    @property
    def key(self) -> str:
        """The cause an alert is sent for once a day: the code and its variant."""
        return f"{self.code}:{self.cause}"

    @property
    def blocking(self) -> bool:
        """Waiting cannot help: the entry is skipped or failed, not left waiting."""
        return self.effect == "skip"

    def describe(self) -> str:
        what = f" ({self.request}{' ' + self.subject if self.subject else ''})" \
            if self.request else ""
        return (f"IB {self.code} {self.cause.replace('_', ' ')}{what}: {self.message} "
                f"-- means: {self.meaning}; fix: {self.fix}")


def refusal(code: int, message: str, request: str = "", subject: str = "", at: float = 0.0,
            req_id: int = 0) -> Refusal | None:
    """The named refusal for an IB error, or None for a code not in the table."""
    entry = code_of(code, message)
    if entry is None:
        return None
    return Refusal(code, entry.cause, message, entry.meaning, entry.fix, entry.severity,
                   entry.effect, request, subject, at, req_id)


def delayed_allowed(r: Refusal, market_data_type: int, mode: str) -> Refusal:
    """10167 offers delayed quotes: a paper profile that chose delayed data
    (market_data_type 3 or 4) takes them (a warning, the entry goes on); otherwise it
    blocks like 354."""
    if r.code == 10167 and mode != "live" and market_data_type in (3, 4):
        return replace(r, effect="info", severity="info")
    return r


class RefusalLog:
    """The engine's memory of refusals: the last one (for `status`) and the causes
    alerted today (an alert goes out once per cause per day, not per retry).
    Thread-safe: Connection's loop thread and the actors' threads both use it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last: Refusal | None = None
        self._alerted: dict[str, str] = {}  # cause key -> the day (ET) it was alerted
        self.read_only: Refusal | None = None  # the gateway's Read-Only API, when seen

    def note(self, r: Refusal) -> None:
        with self._lock:
            self.last = r
            if r.key == "321:read_only":
                self.read_only = r

    def first_today(self, r: Refusal, day: date | str) -> bool:
        """True once per cause and day: the caller sends the alert."""
        day_s = str(day)
        with self._lock:
            if self._alerted.get(r.key) == day_s:
                return False
            self._alerted[r.key] = day_s
            return True

    def clear_read_only(self) -> None:
        with self._lock:
            self.read_only = None

    def alert_once(self, alerts: Any, r: Refusal, day: date | str) -> bool:
        """Send the `ib_refused` alert for `r` unless its cause was alerted today, by this
        process or (the alert store remembers: `day` in its details) one before it."""
        if not self.first_today(r, day) or _sent_before(alerts, r, str(day)):
            return False
        alerts.raise_alert("ib_refused", r.describe(), severity=r.severity,
                           details={"code": r.code, "cause": r.cause, "request": r.request,
                                    "subject": r.subject, "fix": r.fix, "day": str(day)})
        return True


def _sent_before(alerts: Any, r: Refusal, day: str) -> bool:
    """An `ib_refused` alert of this cause and day among the latest stored alerts (an
    engine restarted by the watchdog or by hand must not alert the same cause again)."""
    recent = getattr(alerts, "recent", None)
    if recent is None:
        return False
    try:
        rows = recent(200)
    except Exception:  # the store is busy: an alert too many beats one missing
        return False
    return any(a.get("kind") == "ib_refused" and (a.get("details") or {}).get("day") == day
               and (a.get("details") or {}).get("code") == r.code
               and (a.get("details") or {}).get("cause") == r.cause for a in rows)


MARKET_DATA_TYPES = {1: "live", 2: "frozen", 3: "delayed", 4: "delayed frozen"}


def ib_status(log: RefusalLog, now: float, market_data_type: int, mode: str,
              pacing: dict[str, Any]) -> dict[str, Any]:
    """The `status` reply's view of IB's refusals, the market-data type and pacing."""
    last = log.last
    ro = log.read_only
    kind = MARKET_DATA_TYPES.get(market_data_type, str(market_data_type))
    return {
        "refusal": None if last is None else {
            "code": last.code, "cause": last.cause, "message": last.message,
            "meaning": last.meaning, "fix": last.fix, "severity": last.severity,
            "request": last.request, "subject": last.subject, "time": last.time,
            "age": round(now - last.time, 1) if last.time else None,
        },
        "read_only": None if ro is None else {
            "code": ro.code, "message": ro.message, "fix": ro.fix, "time": ro.time,
        },
        "market_data": {
            "type": market_data_type, "name": kind,
            # Delayed quotes are never priced live; a paper profile says it takes them.
            "note": "" if market_data_type == 1 else
            f"{kind} market data (type {market_data_type}): quotes may be 15 minutes old"
            + (" — paper only" if mode != "live" else ""),
        },
        "pacing": dict(pacing),
    }
