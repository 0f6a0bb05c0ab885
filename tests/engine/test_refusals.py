"""Issue 30: IB's refusals on a first day, posed by ibsim (issue 31) over TCP to the
unmodified ib_insync client: each reaches the code path that asked and becomes a named
outcome (IB's code, text, meaning, fix), one `ib_refused` alert a day per cause however
often it is retried, a `status` line with its age, and nothing sold."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actors.connection.loop import IbRefusedError
from ibsim import codes
from tests.engine.conftest import SESSION_NOW, RunningEngine
from tests.support.zmq_request import wait_for_value, zmq_request
from trading.model import OrderRequest
from trading.order_refs import WHAT_IF_REF

TODAY = SESSION_NOW.date().isoformat()


def kinds(eng: RunningEngine) -> list[str]:
    return [a["kind"] for a in eng.ask("alerts")["alerts"]]


def ib_alerts(eng: RunningEngine) -> list[dict[str, Any]]:
    return [a for a in eng.ask("alerts")["alerts"] if a["kind"] == "ib_refused"]


def enter(eng: RunningEngine) -> dict[str, Any]:
    reply = zmq_request(eng.endpoint, "enter_now", {}, sent_at=time.time())
    assert reply["ok"], reply
    return reply["data"]


def entry_outcome(eng: RunningEngine, states: tuple[str, ...]) -> Any:
    """The day's entry once it reached one of `states` (the run is in the background)."""
    return wait_for_value(
        lambda: next(iter(eng.book().entries(TODAY).get(timeout=5)), None),
        lambda e: e is not None and e.state in states,
        30,
        f"the entry {states}",
    )


def nothing_sold(sim: Any) -> None:
    state = sim.get_state()
    assert state["executions"] == [], state["executions"]
    assert not [o for o in state["open_orders"] if o["action"] == "SELL"], state["open_orders"]


@pytest.mark.parametrize("sim", [{"read_only": True}], indirect=True)
def test_read_only_api_refuses_every_entry_and_says_so(sim: Any, start_engine: Any) -> None:
    t0 = time.monotonic()
    eng = start_engine()
    # The open-orders request refused at connect ends the sync at once (no timeout wait).
    assert time.monotonic() - t0 < 10
    st = wait_for_value(lambda: eng.ask("status"), lambda s: s["read_only"] is not None, 10,
                        "status says read-only")
    assert st["link"]["read_only"] is True and st["ready_to_trade"] is False
    assert "read-only API" in st["link"]["note"] and "Read-Only API" in st["link"]["note"]
    assert st["refusal"]["code"] == 321 and st["refusal"]["cause"] == "read_only"
    assert st["refusal"]["age"] is not None and st["refusal"]["age"] >= 0
    for _ in range(2):  # refused again: still one alert
        reply = enter(eng)
        assert not reply["accepted"], reply
        assert "read-only API" in reply["reason"] and "321" in reply["reason"], reply
    alerts = wait_for_value(lambda: ib_alerts(eng), lambda a: len(a) >= 1, 10, "ib_refused")
    assert len(alerts) == 1 and alerts[0]["severity"] == "error", alerts
    assert "Read-Only" in alerts[0]["message"] and "margin" not in alerts[0]["message"]
    assert not {"risk_limit", "order_rejected"} & set(kinds(eng))
    nothing_sold(sim)
    # An engine started again the same day (a restart) does not alert the cause again.
    eng.engine.stop()
    again = start_engine()
    wait_for_value(lambda: again.ask("status"), lambda s: s["read_only"] is not None, 10,
                   "read-only again")
    assert not enter(again)["accepted"]
    assert len(ib_alerts(again)) == 1


def test_read_only_ticked_later_names_the_margin_check_read_only(
        sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    sim.post("/fault/read_only", {"on": True})
    # The whatIf itself (the margin check's request): IB's 321 named read-only, never
    # "whatIf answer lacks initMarginBefore" (what the engine said before).
    spy = eng.engine.directory.proxy("connection").qualify_stock("SPY", "SMART").get(timeout=10)
    req = OrderRequest(WHAT_IF_REF, spy, "SELL", "LMT", 1, lmt_price=1.0, tif="DAY")
    with pytest.raises(IbRefusedError) as err:
        eng.engine.directory.proxy("connection").what_if(req).get(timeout=10)
    assert err.value.refusal.key == "321:read_only" and err.value.refusal.request == "whatIf"
    reply = enter(eng)
    reason = reply["reason"] if not reply["accepted"] else \
        entry_outcome(eng, ("failed", "skipped")).reason
    assert "read-only API" in reason and "321" in reason and "fix:" in reason, reason
    assert "margin" not in reason.split("fix:")[0], reason
    st = eng.ask("status")
    assert st["read_only"] is not None and st["refusal"]["code"] == 321
    assert enter(eng)["accepted"] is False  # the guard refuses now, before any request
    alerts = wait_for_value(lambda: ib_alerts(eng), lambda a: len(a) >= 1, 10, "ib_refused")
    assert len(alerts) == 1, alerts
    assert not {"risk_limit", "order_rejected"} & set(kinds(eng))
    nothing_sold(sim)


@pytest.mark.parametrize("mode", ["none", "delayed"])
def test_no_option_subscription_fails_the_entry_with_354_not_a_wait(
        sim: Any, start_engine: Any, mode: str) -> None:
    # "delayed": IB offers delayed data only to a client that asked for type 3; the
    # engine (type 1, live) gets 354 and never prices on delayed quotes.
    eng = start_engine({"schedule": {"entry_times": ["15:00", "15:30", "15:45"]}})
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": mode})
    t0 = time.monotonic()
    assert enter(eng)["accepted"]
    entry = entry_outcome(eng, ("failed", "skipped", "interrupted"))
    assert entry.state == "failed", entry  # by hand: failed (the schedule: skipped)
    assert time.monotonic() - t0 < 20  # named at once, not waited out
    assert "354" in entry.reason and "Market Data Subscription" in entry.reason
    assert "fix:" in entry.reason
    assert enter(eng)["accepted"]  # a retry by hand: refused again, no second alert
    wait_for_value(lambda: eng.book().entries(TODAY).get(timeout=5)[0],
                   lambda e: e.state == "failed" and "354" in e.reason, 30, "retry")
    st = eng.ask("status")
    assert st["refusal"]["code"] == 354 and st["refusal"]["request"] == "market data"
    # The schedule's run of the next slot: skipped (not failed, not waiting), no new alert.
    result = eng.engine.directory.proxy("order_executor").run_entry(TODAY, "15:45").get(
        timeout=30)
    assert not result.accepted
    slot = next(e for e in eng.book().entries(TODAY).get(timeout=5) if e.slot == "15:45")
    assert slot.state == "skipped" and "354" in slot.reason, slot
    alerts = ib_alerts(eng)
    assert len(alerts) == 1 and "354" in alerts[0]["message"], alerts
    assert not {"risk_limit", "order_rejected"} & set(kinds(eng))
    nothing_sold(sim)


@pytest.mark.parametrize("sim", [{"market_data": {"OPT": "delayed"}}], indirect=True)
def test_paper_profile_that_allows_delayed_data_says_so(sim: Any, start_engine: Any) -> None:
    eng = start_engine({"gateway": {"market_data_type": 3}})
    st = eng.ask("status")
    assert st["market_data"]["type"] == 3 and st["market_data"]["name"] == "delayed"
    assert "delayed market data" in st["market_data"]["note"]
    assert enter(eng)["accepted"]
    entry = entry_outcome(eng, ("done", "failed", "skipped", "interrupted"))
    # 10167 is taken in paper with type 3: no refusal, no alert; the sale is priced on the
    # delayed quotes (fifteen minutes old: it may not fill, which is the price of them).
    assert entry.state in ("done", "failed") and "IB " not in entry.reason, entry
    assert eng.book().order_by_ref(f"tb:{TODAY}:1500:sale:1").get(timeout=5) is not None
    assert "ib_refused" not in kinds(eng)


def test_competing_session_is_a_named_wait(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    sim.post("/fault/market_data", {"sec_type": "OPT", "mode": "competing"})
    assert enter(eng)["accepted"]
    entry = entry_outcome(eng, ("interrupted", "failed", "skipped"))
    # The other session may end: the slot waits (the schedule asks again), named.
    assert entry.state == "interrupted", entry
    assert "10197" in entry.reason and "competing" in entry.reason, entry.reason
    st = eng.ask("status")
    assert st["refusal"]["code"] == 10197 and st["refusal"]["cause"] == "competing_session"
    alerts = wait_for_value(lambda: ib_alerts(eng), lambda a: len(a) >= 1, 10, "ib_refused")
    assert len(alerts) == 1, alerts
    nothing_sold(sim)


def test_a_competing_session_that_ends_no_longer_refuses_the_lines_kept_open(
    sim: Any, start_engine: Any
) -> None:
    # The SPY line stays open all day (MarketData's): the 10197 it got must not outlive
    # the other session, or every later entry would fail on an answer IB no longer gives.
    eng = start_engine()
    sim.post("/fault/market_data", {"sec_type": "STK", "mode": "competing"})
    assert enter(eng)["accepted"]
    entry = entry_outcome(eng, ("interrupted", "failed", "skipped"))
    assert "10197" in entry.reason, entry.reason
    nothing_sold(sim)
    sim.post("/fault/market_data", {"sec_type": "STK", "mode": "live"})  # logged out there
    assert enter(eng)["accepted"]
    done = entry_outcome(eng, ("done",))
    assert done.lot_id is not None
    assert [e["side"] for e in sim.get_state()["executions"]] == ["SLD"]


# IB's reject of a naked put the account's permissions do not allow (ibsim names the source).
PERMISSIONS = codes.text(201, reason=codes.NO_NAKED_PUTS)


def test_sale_refused_for_permissions_fails_once(sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    sim.post("/fault/reject", {"count": 5, "code": 201, "action": "SELL", "sec_type": "OPT",
                               "message": PERMISSIONS})
    assert enter(eng)["accepted"]
    entry = entry_outcome(eng, ("failed", "skipped"))
    assert "201" in entry.reason and "permission" in entry.reason and "fix:" in entry.reason
    assert "Short Put" in entry.reason
    # One attempt, not sale_attempts of them: no attempt can pass.
    assert sim.get_state()["faults"]["rejects"][0]["count"] == 4
    st = eng.ask("status")
    assert st["refusal"]["code"] == 201 and st["refusal"]["cause"] == "permissions"
    alerts = wait_for_value(lambda: ib_alerts(eng), lambda a: len(a) >= 1, 10, "ib_refused")
    assert len(alerts) == 1, alerts
    assert "order_rejected" not in kinds(eng)
    nothing_sold(sim)


def client_stats(sim: Any, client_id: int = 1) -> dict[str, Any]:
    return next(c for c in sim.get("/stats")["clients"] if c["client_id"] == client_id)


def test_entry_by_delta_over_many_strikes_stays_under_ibs_pacing(
        sim: Any, start_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from ib_insync import Client

    # Something in the process turned ib_insync's throttle off: the engine turns it on.
    monkeypatch.setattr(Client, "MaxRequests", 0)
    eng = start_engine()  # the weekly profile: strike by delta over 25 candidate lines
    assert enter(eng)["accepted"]
    entry = entry_outcome(eng, ("done", "failed", "skipped", "interrupted"))
    assert entry.state == "done", entry
    stats = client_stats(sim)
    assert stats["refused"] == 0 and 0 < stats["peak_rate"] <= 50, stats
    pacing = eng.ask("status")["pacing"]
    assert pacing["limit"] == 50 and pacing["throttle"] == 45
    assert 0 < pacing["peak_rate"] <= 50, pacing
    assert eng.ask("status")["refusal"] is None
    assert "ib_refused" not in kinds(eng)


@pytest.mark.slow(seconds=12, reason="paces requests at a low rate for several seconds")
@pytest.mark.parametrize("sim", [{"max_rate": 12}], indirect=True)
def test_pacing_error_100_is_a_named_refusal(sim: Any, start_engine: Any) -> None:
    # A gateway stricter than ib_insync's 45/s throttle (as if something bypassed it).
    eng = start_engine()
    assert enter(eng)["accepted"]
    st = wait_for_value(lambda: eng.ask("status"),
                        lambda s: s["refusal"] is not None and s["refusal"]["code"] == 100,
                        30, "status names error 100")
    assert st["refusal"]["cause"] == "pacing" and "Max rate" in st["refusal"]["message"]
    alerts = wait_for_value(lambda: ib_alerts(eng), lambda a: len(a) >= 1, 10, "ib_refused")
    assert [a["details"]["code"] for a in alerts if a["details"]["code"] == 100] == [100]
    entry = entry_outcome(eng, ("done", "failed", "skipped", "interrupted"))
    if entry.state != "done":  # a request IB did not serve: its timeout named 100
        assert "IB 100 pacing" in entry.reason, entry.reason
        nothing_sold(sim)
    assert client_stats(sim)["refused"] > 0
    assert len([a for a in ib_alerts(eng) if a["details"]["code"] == 100]) == 1


@pytest.mark.parametrize("sim", [{"tif_preset": "DAY"}], indirect=True)
def test_tif_preset_10349_leaves_the_exits_live_not_cancelled(
        sim: Any, start_engine: Any) -> None:
    # IB's preset turns the GTC exits into DAY orders with 10349: a warning, the orders
    # work. ib_insync 0.9 marks them Cancelled; the engine must not believe it (no exits
    # placed again beside them, the lot stays protected).
    from tests.engine.test_lifecycle import broker_orders, enter_and_wait

    eng = start_engine()
    lot = enter_and_wait(eng, 0)
    st = wait_for_value(lambda: eng.ask("status"),
                        lambda s: s["refusal"] is not None and s["refusal"]["code"] == 10349,
                        10, "status names 10349")
    assert st["refusal"]["severity"] == "warning"
    exits = [o for o in broker_orders(sim, lot.con_id)
             if o["order_ref"] in (lot.tp_order_ref, lot.sl_order_ref)]
    assert len(exits) == 2, exits
    reply = zmq_request(eng.endpoint, "repair_exits", {}, sent_at=time.time())
    assert reply["ok"] and reply["data"]["repaired"] == 0, reply  # nothing to repair
    after = [o for o in broker_orders(sim, lot.con_id) if o["action"] == "BUY"]
    assert len(after) == 2, after  # no second pair beside the live one
    assert eng.book().lot(lot.id).get(timeout=5).state == "open"
    states = {o["status"] for o in eng.ask("orders")["orders"]
              if o.get("order_ref") in (lot.tp_order_ref, lot.sl_order_ref)}
    assert "cancelled" not in {s.lower() for s in states}, states
    assert [a["details"]["code"] for a in ib_alerts(eng)] == [10349]


def test_a_cancel_refused_by_a_read_only_gateway_leaves_the_exit_working(
        sim: Any, start_engine: Any) -> None:
    # Read-Only API ticked after the exits went out: IB refuses the cancel with 321 on
    # the exit's id and the exit works on. ib_insync 0.9 marks it Cancelled; the engine
    # must not (a repair would then place a second pair beside a live one).
    from tests.engine.test_lifecycle import broker_orders, enter_and_wait

    eng = start_engine()
    lot = enter_and_wait(eng, 0)
    tp = next(o for o in eng.ask("orders")["orders"] if o.get("order_ref") == lot.tp_order_ref)
    sim.post("/fault/read_only", {"on": True})
    conn = eng.engine.directory.proxy("connection")
    info = conn.cancel_order(tp["order_id"], 1.0).get(timeout=10)
    assert info.error_code == 321 and info.status != "Cancelled", info
    live = [o for o in broker_orders(sim, lot.con_id) if o["order_ref"] == lot.tp_order_ref]
    assert len(live) == 1, live
    sim.post("/fault/read_only", {"on": False})
    reply = zmq_request(eng.endpoint, "repair_exits", {}, sent_at=time.time())
    assert reply["ok"], reply
    after = [o for o in broker_orders(sim, lot.con_id) if o["action"] == "BUY"]
    assert len(after) == 2, after  # still the one pair


@pytest.mark.parametrize("sim", [{"tif_preset": "GTC", "fill_model": "buyers", "buyer_rate": 0.3}],
                         indirect=True)
def test_tif_preset_10349_on_the_sale_is_not_a_rejected_attempt(
        sim: Any, start_engine: Any) -> None:
    from tests.engine.test_lifecycle import enter_and_wait

    eng = start_engine()
    lot = enter_and_wait(eng, 0)
    sales = [e for e in sim.get_state()["executions"] if e["side"] in ("SLD", "SELL")]
    assert sales, sim.get_state()["executions"]
    refs = {e["order_ref"] for e in sales}
    assert len(refs) == 1, refs  # one attempt sold
    # The 10349 "Cancelled" was not taken for a rejection: no attempt counted dead for it
    # (before: "sale attempt 1 rejected: 10349" and an order_rejected alert).
    assert "order_rejected" not in kinds(eng)
    assert lot.qty == 1


def test_no_security_definition_is_named_by_the_lookup_that_asked(
        sim: Any, start_engine: Any) -> None:
    eng = start_engine()
    conn = eng.engine.directory.proxy("connection")
    with pytest.raises(IbRefusedError) as err:
        conn.qualify_stock("NOSUCH", "SMART").get(timeout=10)
    r = err.value.refusal
    assert r.code == 200 and r.request == "contract details", r
    assert "No security definition" in r.message and r.fix
    # One unknown strike among many asked is not a refusal: the others qualify.
    spy = conn.qualify_stock("SPY", "SMART").get(timeout=10)
    expirations, strikes = conn.option_chain("SPY", spy.con_id).get(timeout=10)
    found = conn.qualify_options("SPY", expirations[3], [strikes[100], 0.5], "P").get(
        timeout=20)
    assert [c.strike for c in found] == [strikes[100]]
    assert eng.ask("status")["refusal"]["code"] == 200
