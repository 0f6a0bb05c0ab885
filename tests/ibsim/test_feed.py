"""ibsim's feed for bench.ticks: quote_burst adds size-only quote rounds, and POST /feed
logs the frames sent to each client, which its API client counts the same (issue 23)."""

from __future__ import annotations

import time

import pytest
from ib_insync import IB, Stock

from ibsim.harness import ControlError, IbsimThread


def test_burst_raises_the_rate_and_the_send_log_matches_the_client() -> None:
    with IbsimThread(seed=4, tick_interval=0.01) as sim:
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=7, timeout=10)
        try:
            c = Stock("SPY", "SMART", "USD")
            ib.qualifyContracts(c)
            ib.reqMktData(c, "", False, False)

            def rate(seconds: float = 1.0) -> float:
                n0, t0 = ib.client.connectionStats().numMsgRecv, time.perf_counter()
                ib.sleep(seconds)
                return (ib.client.connectionStats().numMsgRecv - n0) / (
                    time.perf_counter() - t0)

            base = rate()
            assert sim.post("/market", {"quote_burst": 50})["quote_burst"] == 50
            assert rate() > 5 * base
            sim.post("/market", {"quote_burst": 1, "tick_interval": 5.0})
            ib.sleep(0.5)  # the last burst arrives; then nothing ticks for seconds
            sent = next(s for s in sim.post("/feed")["sessions"] if s["client_id"] == 7)
            recv = ib.client.connectionStats().numMsgRecv
            assert abs(sent["sent"] - recv) <= 3, (sent["sent"], recv)
            assert sent["log"] and sent["log"][-1][1] <= sent["sent"]
        finally:
            ib.disconnect()
        with pytest.raises(ControlError, match="400"):
            sim.post("/market", {"quote_burst": 1.5})
        with pytest.raises(ControlError, match="400"):
            sim.post("/feed", {"since": "x"})
