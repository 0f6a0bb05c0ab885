"""Issue 24 acceptance: the default profile trades the seed's shape on ibsim.

The engine runs the shipped defaults (no strategy keys but test speed-ups), its clock at
09:35 ET on the seed's sale dates; its scheduler sells by itself. The seed's bot sold the
2026-04-30 put on 2026-01-23 and on 2026-02-04 (strikes 624-632, premiums near $6).
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.engine.conftest import RunningEngine
from tests.support.zmq_request import wait_for_value

ET = ZoneInfo("America/New_York")
FAST = {"schedule": {"entry_times": ["09:35"], "tick_seconds": 0.05, "repair_interval": 3600.0}}


def move(eng: RunningEngine, sim: Any, when: datetime) -> None:
    sim.post("/clock", {"now": when.isoformat()})
    eng.clock.set(when)


@pytest.mark.parametrize(
    ("day", "spot", "expiry"),
    [
        (date(2026, 2, 4), 693.5, "20260430"),  # the seed's 624P, 85 days
        (date(2026, 1, 23), 694.8, "20260430"),  # the seed's 625P, 97 days
        # 2026-05-29 is 70 days out, 2026-06-30 is 102: 102 is nearer 90.
        (date(2026, 3, 20), 688.0, "20260630"),
    ],
)
def test_default_profile_sells_the_month_end_put_ten_percent_below_spot(
    sim: Any, start_engine: Any, day: date, spot: float, expiry: str
) -> None:
    entry_at = datetime.combine(day, datetime.min.time(), ET).replace(hour=9, minute=35)
    before = entry_at - timedelta(minutes=5)
    sim.post("/clock", {"now": before.isoformat()})
    sim.post("/market", {"spot": spot, "walk_sigma": 0.0})  # hold spot: the strike is exact
    eng = start_engine(FAST, now=before, weekly=False)
    s = eng.engine.cfg.strategy
    assert (s.expiry_rule, s.target_dte, s.strike_selection, s.otm_distance) == (
        "month_end", 90, "otm_distance", 0.10)

    move(eng, sim, entry_at)
    wait_for_value(
        lambda: [e for e in eng.book().entries().get(timeout=5)
                 if e.trade_date == day.isoformat()],
        lambda rows: rows and rows[0].state == "done",
        30,
        f"the scheduler's entry on {day}",
    )
    (lot,) = eng.open_lots()
    assert lot.expiry == expiry
    # The highest $1 strike at or below 90% of spot: about 10% out of the money.
    assert lot.strike == math.floor(spot * 0.9)
    assert 0.09 < 1 - lot.strike / spot <= 0.101
    fill = lot.entry_price
    assert 4.5 <= fill <= 8.0, fill  # near the seed's $5.48-6.16 premiums
    assert lot.tp_price == pytest.approx(round(fill * 0.4, 2), abs=0.011)
    assert lot.sl_price == pytest.approx(round(fill * 3.0, 2), abs=0.011)

    # The broker agrees: one sale of that put at that price, TP and SL resting in one OCA.
    # (the exits follow the sale's fill: wait for both to rest).
    exits = wait_for_value(
        lambda: {o["order_type"]: o for o in sim.get_state()["open_orders"]
                 if o["action"] == "BUY" and o["status"] == "Submitted"},
        lambda found: set(found) == {"LMT", "STP"},
        30,
        "TP and SL resting at the broker",
    )
    (sale,) = [e for e in sim.get_state()["executions"] if e["side"] == "SLD"]
    assert sale["con_id"] == lot.con_id and sale["price"] == fill
    assert sale["local_symbol"].startswith(f"SPY   {expiry[2:]}P")
    assert exits["LMT"]["lmt_price"] == lot.tp_price
    assert exits["STP"]["aux_price"] == lot.sl_price
    assert exits["LMT"]["oca_group"] == exits["STP"]["oca_group"] != ""
    assert {o["con_id"] for o in exits.values()} == {lot.con_id}
