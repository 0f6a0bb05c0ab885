"""Every error code ibsim sends, with IB's text (one table; /work/shared/ib-codes.md and
IB's TWS API "Message Codes" page). Texts with {fields} are filled by `text()`.

IB's texts are matched by code, never by wording (a translated TWS sends other words),
but the engine logs and alerts show them, so they read as IB's do.
"""

from __future__ import annotations

from typing import Any

# code -> IB's text. The quoted token of 321/320 ('bN', 'b7', 'bY', 'cq') varies at IB.
CODES: dict[int, str] = {
    # pacing (IB's table; the text as IB's logs show it). TWS "will likely disconnect".
    100: "Max rate of messages per second has been exceeded:max={max} rec={rec} (1)",
    101: "Max number of tickers has been reached.",
    103: "Duplicate order id",
    104: "Can't modify a filled order",
    110: "The price does not conform to the minimum price variation for this contract.",
    161: "Cancel attempted when order is not in a cancellable state. Order permId ={perm_id}",
    162: "Historical Market Data Service error message:{why}",
    200: "No security definition has been found for the request",
    # 201 carries IB's reason after the colon (no space after it in IB's own reasons).
    201: "Order rejected - reason:{reason}",
    202: "Order Canceled - reason:{reason}",
    320: "Error validating request.-'{token}' : cause - {cause}",
    321: "Error validating request.-'{token}' : cause - {cause}",
    326: "Unable to connect as the client id is already in use. Retry with a unique client id.",
    354: "Requested market data is not subscribed. Check API status by selecting the Account"
         " menu then under Management choose Market Data Subscription Manager and/or"
         " availability of delayed data.",
    399: "Order message:\n{message}",
    # 460: IB's table, as quoted in QuantConnect/Lean.Brokerages.InteractiveBrokers pull
    # request #245 ("Invalidate orders rejected with errors 200 and 460").
    460: "No trading permissions.",
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2109: "Order Event Warning:Attribute \"Outside Regular Trading Hours\" is ignored based on"
          " the order type and destination. PlaceOrder is now being processed.",
    2110: "Connectivity between Trader Workstation and server is broken. It will be restored"
          " automatically.",
    2137: "The closing order quantity is greater than your current position.",
    2157: "Sec-def data farm connection is broken:secdefnj",
    2158: "Sec-def data farm connection is OK:secdefnj",
    10147: "OrderId {order_id} that needs to be cancelled is not found.",
    10148: "OrderId {order_id} that needs to be cancelled cannot be cancelled, state: {state}.",
    10167: "Requested market data is not subscribed. Displaying delayed market data.",
    10197: "No market data during competing live session",
    10349: "Order TIF was set to DAY based on order preset.",
}

# 321's causes (its text after "cause - ").
READ_ONLY = "The API interface is currently in Read-Only mode."
INVALID_ACCOUNT = "Invalid account code"

# 201's reasons. The margin text is IB's (ib_insync issue #704); the [..] are filled.
MARGIN_SHORT = ("YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR"
                " EQUITY WITH LOAN VALUE [{ewl:.2f} USD] MUST EXCEED THE INITIAL MARGIN"
                " [{init:.2f} USD]")
# A naked (uncovered) put the account's options permissions do not allow. IB's order
# reject reads "Account May Not Hold Positions: Short Call" for the call side (an IBKR
# introducing broker's FAQ on that exact message:
# https://www.mexem.co.za/faqs/what-does-the-error-message-account-may-not-hold-positions-short-call-mean
# -- a cash account, or "Limited Option Trading" where a naked put must be cash-covered);
# the put side is the same message with "Short Put" (its wording inferred from the call's,
# not seen in a source). With no options permission at all IB answers 460 (in CODES).
# Posed with POST /fault/reject {"code": 201, "sec_type": "OPT", "action": "SELL",
# "message": codes.text(201, reason=codes.NO_NAKED_PUTS)}.
NO_NAKED_PUTS = "Account May Not Hold Positions: Short Put"
NO_NAKED_PUTS_SOURCE = ("https://www.mexem.co.za/faqs/"
                        "what-does-the-error-message-account-may-not-hold-positions-short-call-mean")


def text(code: int, **fields: Any) -> str:
    """IB's text for `code`, its {fields} filled (a KeyError names a missing one)."""
    return CODES[code].format(**fields) if fields or "{" in CODES[code] else CODES[code]


def read_only(token: str = "bN") -> str:
    return text(321, token=token, cause=READ_ONLY)
