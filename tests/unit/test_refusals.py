"""Issue 30: the table of IB's refusals (trading/refusals.py) and its memory."""

from __future__ import annotations

from typing import Any

import pytest

from trading.refusals import (
    REFUSAL_CODES,
    RefusalLog,
    all_codes,
    code_of,
    delayed_allowed,
    ib_status,
    refusal,
)

# Every code the issue names has an entry with IB's text, a meaning and a fix.
NAMED = (321, 354, 10089, 10090, 10167, 10168, 10197, 200, 201, 2137, 202, 110, 103, 162,
         366, 420, 100, 10349, 10311, 451, 10147, 10148, 161)

MARGIN_TEXT = ("Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE "
               "DESIRED POSITION YOUR EQUITY WITH LOAN VALUE [1000.00 USD] MUST EXCEED THE "
               "INITIAL MARGIN [58000.00 USD]")


@pytest.mark.parametrize("code", NAMED)
def test_every_named_code_has_ibs_text_meaning_fix_and_severity(code: int) -> None:
    entry = REFUSAL_CODES[code]
    assert entry.ib_text and entry.meaning and entry.fix, entry
    assert entry.severity in ("info", "warning", "error")
    assert entry.effect in ("skip", "wait", "dead", "live", "info")


def test_201_and_321_are_told_apart_by_ibs_text() -> None:
    assert code_of(201, MARGIN_TEXT).cause == "margin"  # type: ignore[union-attr]
    perm = code_of(201, "Order rejected - reason:Account May Not Hold Positions: Short Put")
    assert perm is not None and perm.cause == "permissions" and perm.effect == "skip"
    assert code_of(201, "Order rejected - reason:something else").cause == "rejected"  # type: ignore[union-attr]
    ro = code_of(321, "Error validating request.-'bY' : cause - The API interface is "
                      "currently in Read-Only mode.")
    assert ro is not None and ro.cause == "read_only" and ro.effect == "skip"
    assert code_of(321, "Error validating request.-'cB' : cause - Invalid account code")\
        .cause == "validation"  # type: ignore[union-attr]
    assert code_of(162, "Historical Market Data Service error message:Pacing violation")\
        .cause == "historical_pacing"  # type: ignore[union-attr]
    assert code_of(2104, "Market data farm connection is OK") is None  # codes.py's
    assert len({(c.code, c.cause) for c in all_codes()}) == len(all_codes())


@pytest.mark.parametrize("code", [321, 10311, 451])
def test_a_refusal_a_retry_cannot_change_stops_the_sale(code: int) -> None:
    # A setting in TWS (read-only API, precautionary presets) refuses every attempt alike:
    # a second SELL would only be refused again, with another alert.
    assert REFUSAL_CODES[code].effect == "skip"


def test_a_refusal_names_code_text_meaning_and_fix() -> None:
    r = refusal(354, "Requested market data is not subscribed.", "market data", "SPY P540")
    assert r is not None and r.blocking
    text = r.describe()
    for part in ("IB 354", "market data SPY P540", "Requested market data is not subscribed",
                 "means:", "fix:", "OPRA"):
        assert part in text, text


def test_delayed_data_is_taken_only_in_paper_with_type_3() -> None:
    r = refusal(10167, "Requested market data is not subscribed. Displaying delayed "
                "market data.")
    assert r is not None
    assert delayed_allowed(r, 3, "paper").effect == "info"
    assert delayed_allowed(r, 1, "paper").blocking
    assert delayed_allowed(r, 3, "live").blocking


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, Any]] = []

    def raise_alert(self, kind: str, message: str, severity: str = "warning",
                    details: Any = None) -> int:
        self.sent.append((kind, message, severity, details))
        return len(self.sent)


def test_one_alert_per_cause_and_day_not_per_retry() -> None:
    log, alerts = RefusalLog(), Alerts()
    ro = refusal(321, "... The API interface is currently in Read-Only mode.", "whatIf")
    sub = refusal(354, "Requested market data is not subscribed.", "market data")
    assert ro is not None and sub is not None
    for _ in range(5):
        log.alert_once(alerts, ro, "2026-11-24")
    log.alert_once(alerts, sub, "2026-11-24")
    log.alert_once(alerts, ro, "2026-11-25")
    assert [(k, s, d["code"]) for k, _m, s, d in alerts.sent] == [
        ("ib_refused", "error", 321), ("ib_refused", "error", 354), ("ib_refused", "error", 321)]


def test_status_shows_the_last_refusal_with_its_age_and_read_only() -> None:
    log = RefusalLog()
    assert ib_status(log, 100.0, 1, "paper", {})["refusal"] is None
    r = refusal(321, "... currently in Read-Only mode.", "connect", at=90.0)
    assert r is not None
    log.note(r)
    st = ib_status(log, 100.0, 3, "paper", {"peak_rate": 12})
    assert st["refusal"]["code"] == 321 and st["refusal"]["age"] == 10.0
    assert st["read_only"]["code"] == 321 and "Read-Only API" in st["read_only"]["fix"]
    assert st["market_data"]["name"] == "delayed" and "paper only" in st["market_data"]["note"]
    assert st["pacing"] == {"peak_rate": 12}
    log.clear_read_only()
    assert ib_status(log, 100.0, 1, "paper", {})["read_only"] is None


@pytest.mark.parametrize(("env", "key"), [
    ({"TRADING_BOT__GATEWAY__DOCTOR_CLIENT_ID": "1"}, "gateway.doctor_client_id"),
    ({"TRADING_BOT__GATEWAY__MODE": "live", "TRADING_BOT__GATEWAY__MARKET_DATA_TYPE": "3",
      "TRADING_BOT__ZMQ__ENDPOINT": '"ipc:///tmp/x.sock"'}, "gateway.market_data_type"),
])
def test_config_refuses_a_shared_doctor_id_and_delayed_data_in_live_mode(
        env: dict[str, str], key: str) -> None:
    from config.loader import ConfigError, load_config

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, environ=env)
    assert load_config(None, environ={}).gateway.doctor_client_id == 99


def test_a_cause_alerted_by_an_earlier_process_today_is_not_alerted_again() -> None:
    class Stored(Alerts):
        def recent(self, limit: int) -> list[dict[str, Any]]:
            return [{"kind": k, "details": d} for k, _m, _s, d in self.sent]

    alerts = Stored()
    r = refusal(354, "Requested market data is not subscribed.", "market data")
    assert r is not None
    assert RefusalLog().alert_once(alerts, r, "2026-11-24")
    assert not RefusalLog().alert_once(alerts, r, "2026-11-24")  # a new process
    assert RefusalLog().alert_once(alerts, r, "2026-11-25")
    assert len(alerts.sent) == 2
