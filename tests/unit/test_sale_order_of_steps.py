"""The sale's steps between the margin check and the SELL (issue 34, entry at the second):
our exits on the contract are cancelled without the executor waiting for the answers, and
the sale's lookups and quote are asked before them; the answers are in before the intent
is written and the SELL is sent, and before any exit is placed again. Shown on the
executor's own code with a Connection that records the order it is asked in (the wire is ibsim's, in
tests/engine/test_lifecycle.py): which of two threads answers first is not something a
wire scenario can pin down."""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from loguru import logger

from actors.order_executor.guard import EntryRefused
from actors.order_executor.repair import RepairMixin
from actors.order_executor.sale import SaleMixin
from book.store import Store
from config.loader import load_config
from tests.support.answered import Answered as _Answer
from trading.model import ContractInfo, OrderInfo, Quote
from trading.order_refs import sale_ref
from trading.records import StoredFill

PUT = ContractInfo(7, "SPY", "OPT", "20261201", 585.0, "P", 100, local_symbol="SPY P585")


class _Pending:
    """Connection's PendingCall: the cancels' answers, read when asked."""

    def __init__(self, said: list[str], answers: list[Any],
                 what: str = "cancels answered") -> None:
        self.said, self.answers, self.what = said, answers, what

    def result(self) -> list[Any]:
        self.said.append(self.what)
        return self.answers


def _info(order_id: int, ref: str, status: str, filled: float = 0.0) -> OrderInfo:
    return OrderInfo(order_id, order_id, ref, PUT.con_id, PUT.local_symbol, "SELL", "LMT", 1.0,
                     1.0, None, "", status, filled=filled, avg_fill_price=1.0 if filled else 0)


class _Conn:
    def __init__(self, said: list[str], quote_time: float) -> None:
        self.said, self.quote_time = said, quote_time
        self.bid = 1.0

    def start_cancel_orders(self, ids: list[int]) -> _Answer:
        self.said.append(f"cancels sent {ids}")
        return _Answer(_Pending(self.said, [_info(i, f"x:{i}", "Cancelled") for i in ids]))

    def executions(self) -> _Answer:
        self.said.append("executions")
        return _Answer([])

    def start_executions(self) -> _Answer:
        self.said.append("executions asked")
        return _Answer(_Pending(self.said, [], "executions answered"))

    def start_open_orders(self, ask: bool = True) -> _Answer:
        self.said.append("open orders asked")
        return _Answer(_Pending(self.said, [], "open orders answered"))

    def open_orders(self) -> _Answer:
        self.said.append("open orders")
        return _Answer([])

    def quotes(self, contracts: list[ContractInfo], *args: Any) -> _Answer:
        self.said.append("quote")
        return _Answer([Quote(c.con_id, self.bid, 1.1, None, self.quote_time)
                        for c in contracts])

    def start_quotes(self, contracts: list[ContractInfo], *args: Any) -> _Answer:
        self.said.append("quote asked")
        return _Answer(_Pending(self.said, [Quote(c.con_id, 1.0, 1.1, None, self.quote_time)
                                            for c in contracts], "quote answered"))

    def place_order(self, req: Any) -> _Answer:
        self.said.append(f"SELL {req.order_ref}")
        return _Answer(_info(99, req.order_ref, "Filled", 1.0))

    def watch_order(self, order_id: int, timeout: float) -> _Answer:
        done: Future[OrderInfo] = Future()
        done.set_result(_info(order_id, "s", "Filled", 1.0))
        return _Answer(done)


class _Book:
    def __init__(self, said: list[str]) -> None:
        self.said = said

    def remember_contract(self, contract: ContractInfo) -> _Answer:
        return _Answer(None)

    def lot(self, lot_id: int) -> _Answer:
        return _Answer(SimpleNamespace(id=lot_id, state="unprotected"))


class _Intents:
    """The executor's own store (real SQLite), saying when an intent is written."""

    def __init__(self, said: list[str], path: Path) -> None:
        self.said, self.store = said, Store(path)

    def unprotect_lots_on(self, con_id: int) -> list[Any]:
        self.said.append("lots marked")
        return [SimpleNamespace(id=3, state="unprotected",
                                exit_order_id=lambda role: {"tp": 11, "sl": 12}[role])]

    def next_sale_serial(self, trade_date: str, slot: str) -> int:
        return self.store.next_sale_serial(trade_date, slot)

    def record_intent(self, **row: Any) -> None:
        self.store.record_intent(**row)
        self.said.append(f"intent {row['order_ref']}")


class _Executor(SaleMixin):
    def __init__(self, tmp: Path, quote_time: float) -> None:
        self.said: list[str] = []
        self.cfg = load_config(None, environ={})
        self.conn = _Conn(self.said, quote_time)  # type: ignore[misc]
        self.book = _Book(self.said)  # type: ignore[misc]
        self.intents = _Intents(self.said, tmp / "book.sqlite")
        self.log = logger
        self.alerts = SimpleNamespace(raise_alert=lambda *a, **k: None)
        self.directory = SimpleNamespace(farms_broken=set())
        self._steps = self._cancels = self._remembered = self._lookups = None
        self._quote_asked = None
        self._unrecorded: list[OrderInfo] = []

    def _t(self, extra: float = 0.0) -> float:
        return 5.0 + extra

    def _record(self, info: OrderInfo) -> None:
        self._record_all([info])

    def _record_all(self, infos: list[OrderInfo]) -> None:
        if infos:
            self.said.append(f"recorded {sorted(i.order_id for i in infos)}")

    def place_exits(self, lot: Any, contract: Any = None) -> bool:
        self.said.append(f"exits placed for lot {lot.id}")
        return True


def test_the_lookups_go_out_while_the_cancels_are_answered_and_the_sale_after(
    tmp_path: Path,
) -> None:
    ex = _Executor(tmp_path, time.time())
    ex._remembered = ex.book.remember_contract(PUT)
    ex._start_earlier_sale_lookups(PUT)
    cancelled = ex._start_cancelling_exits(PUT).lot_ids
    filled, info, _ = ex._sell("2026-11-24", "09:35", PUT, cancelled, 600.0)
    assert filled and info is not None
    ref = sale_ref("2026-11-24", "09:35", 1)
    # The slot's first sale asks the broker too (a restored book may not know a sale),
    # and for its quote, ahead of the cancels; it reads the answers, and writes the
    # intent and sells only once the cancels are answered (a kill while they are leaves
    # no intent that was never sent).
    assert ex.said == ["executions asked", "open orders asked", "quote asked", "lots marked",
                       "cancels sent [11, 12]", "executions answered", "open orders answered",
                       "quote answered", "cancels answered", f"intent {ref}", f"SELL {ref}",
                       "recorded [11, 12]", "recorded [99]"], ex.said  # answers: after the send
    assert ex._lookups is None and ex._quote_asked is None  # read once: a later look asks


def test_a_slot_with_an_earlier_sale_intent_asks_the_broker_before_selling(
    tmp_path: Path,
) -> None:
    """A slot run again (its first attempt's intent in the book): the broker is asked
    for that sale's fills and working orders before the next one goes."""
    ex = _Executor(tmp_path, time.time())
    ex.intents.store.record_intent(
        order_ref=sale_ref("2026-11-24", "09:35", 1), role="sale", con_id=PUT.con_id,
        action="SELL", order_type="LMT", qty=1, lmt_price=1.0, trade_date="2026-11-24")
    cancelled = ex._start_cancelling_exits(PUT).lot_ids
    filled, _info2, _ = ex._sell("2026-11-24", "09:35", PUT, cancelled, 600.0)
    assert filled
    ref = sale_ref("2026-11-24", "09:35", 2)
    assert ex.said.index("executions") < ex.said.index("open orders") \
        < ex.said.index(f"intent {ref}") < ex.said.index(f"SELL {ref}"), ex.said


def test_exits_are_never_placed_again_before_their_cancels_are_answered(
    tmp_path: Path,
) -> None:
    """A stale quote refuses the sale after the cancels were sent: the restore that
    follows waits for their answers first (a pair placed beside legs still being
    cancelled could be adopted, then cancelled under it)."""
    ex = _Executor(tmp_path, time.time() - 600)  # the put's quote is ten minutes old
    cancelled = ex._start_cancelling_exits(PUT).lot_ids
    with pytest.raises(EntryRefused):
        ex._sell("2026-11-24", "09:35", PUT, cancelled, 600.0)
    ex._restore(cancelled)
    assert ex.said.index("cancels answered") < ex.said.index("exits placed for lot 3")
    assert not any(s.startswith(("intent", "SELL")) for s in ex.said), ex.said


class _Repair(RepairMixin):
    """The executor's repair part with a Connection that says what it is asked."""

    def __init__(self, tmp: Path, live: list[OrderInfo]) -> None:
        self.said: list[str] = []
        self.intents = Store(tmp / "book.sqlite")
        self.live = live
        conn = SimpleNamespace(
            open_orders=lambda: self.said.append("open orders") or _Answer(self.live),
            executions=lambda: self.said.append("executions") or _Answer([]),
            cancel_order=lambda oid: self.said.append(f"cancel {oid}") or _Answer(
                _info(oid, "rest", "Cancelled")),
        )
        self.conn = conn  # type: ignore[misc]
        self.log = logger

    def _t(self, extra: float = 0.0) -> float:
        return 5.0 + extra

    def _record(self, info: OrderInfo) -> None:
        pass

    def sale(self, ref: str, qty: int, sold: int) -> None:
        """Today's earlier sale of `qty`, marked filled at its first slice of `sold`."""
        self.intents.record_intent(order_ref=ref, role="sale", con_id=PUT.con_id,
                                   action="SELL", order_type="LMT", qty=qty, lmt_price=1.0,
                                   trade_date="2026-11-24")
        self.intents.mark_order(ref, status="filled", order_id=40 + qty)
        self.intents.add_fill(StoredFill(f"e-{ref}", ref, 40 + qty, 1, PUT.con_id, "SLD",
                                         sold, 1.0, None, 1.0, None))


def test_an_earlier_sale_sold_in_full_is_not_asked_of_the_broker(tmp_path: Path) -> None:
    """Each entry asked the broker's open orders for every sale of the day marked filled
    (its rest might still work): by the day's end a request listing every exit, ms per
    entry. A sale whose stored fills cover its quantity has no rest: not asked."""
    rep = _Repair(tmp_path, [])
    rep.sale(sale_ref("2026-11-24", "09:35", 1), 1, 1)
    rep._resolve_earlier_sales("2026-11-24", "09:36")
    assert rep.said == []


def test_the_working_rest_of_a_sale_filled_in_part_is_still_ended_first(
    tmp_path: Path,
) -> None:
    rest = _info(42, sale_ref("2026-11-24", "09:35", 1), "PendingCancel", 1.0)
    rep = _Repair(tmp_path, [rest])
    rep.sale(sale_ref("2026-11-24", "09:35", 1), 2, 1)  # one of two sold, the rest works
    rep._resolve_earlier_sales("2026-11-24", "09:36")
    assert rep.said == ["open orders", "cancel 42"]


def test_the_quote_asked_ahead_is_judged_fresh_when_the_sale_is_priced(
    tmp_path: Path,
) -> None:
    """The quote asked before the cancels went out passes the same freshness rule as one
    asked at the sale (strategy.max_quote_age at the moment of pricing): past it (an
    earlier attempt was walked meanwhile: test_money_paths' path 4), it is asked afresh,
    and a stale answer then sells nothing."""
    ex = _Executor(tmp_path, time.time() - 600)
    ex._start_earlier_sale_lookups(PUT)
    cancelled = ex._start_cancelling_exits(PUT).lot_ids
    with pytest.raises(EntryRefused):
        ex._sell("2026-11-24", "09:35", PUT, cancelled, 600.0)
    assert ex.said.index("quote answered") < ex.said.index("quote")
    assert not any(s.startswith(("intent", "SELL")) for s in ex.said), ex.said


def test_a_quote_asked_ahead_that_aged_meanwhile_is_asked_again(tmp_path: Path) -> None:
    ex = _Executor(tmp_path, time.time() - 600)
    ex._start_earlier_sale_lookups(PUT)
    ex.conn.quote_time = time.time()  # the line ticks again by the time it is asked
    filled, _info4, _ = ex._sell("2026-11-24", "09:35", PUT, [], 600.0)
    assert filled and ex.said.index("quote answered") < ex.said.index("quote"), ex.said


def test_a_quote_asked_ahead_that_failed_is_asked_again(tmp_path: Path) -> None:
    ex = _Executor(tmp_path, time.time())

    class _Lost:
        def result(self) -> list[Any]:
            raise TimeoutError("no answer")

    ex._quote_asked = _Lost()
    filled, _info3, _ = ex._sell("2026-11-24", "09:35", PUT, [], 600.0)
    assert filled and "quote" in ex.said, ex.said


def test_lookups_not_asked_ahead_when_the_connection_is_down_are_asked_at_the_sale(
    tmp_path: Path,
) -> None:
    """The Connection being restarted (its proxy raises) does not end the entry in an
    exception: nothing is asked ahead, and the sale asks the broker itself."""
    ex = _Executor(tmp_path, time.time())

    def down(*_: Any, **__: Any) -> Any:
        raise RuntimeError("actor connection is not running")

    ex.conn.start_executions = down  # type: ignore[method-assign]
    ex._start_earlier_sale_lookups(PUT)
    assert ex._lookups is None and ex._quote_asked is None
    filled, _info5, _ = ex._sell("2026-11-24", "09:35", PUT, [], 600.0)
    assert filled and ex.said.index("executions") < ex.said.index("quote"), ex.said


def test_a_quote_that_aged_while_the_cancels_were_answered_is_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cancels of our exits on the contract answered past strategy.max_quote_age
    (a gateway in trouble): the sale is priced from a quote asked after them, not from
    the one read before (the clock is moved, not waited for)."""
    from actors.order_executor import sale as sale_module
    from trading.pricing import limit_walk

    moved = [0.0]
    monkeypatch.setattr(sale_module, "time", SimpleNamespace(
        time=lambda: time.time() + moved[0], monotonic=time.monotonic, sleep=time.sleep))
    ex = _Executor(tmp_path, time.time())
    conn = ex.conn
    max_age = ex.cfg.strategy.max_quote_age

    class _SlowCancels(_Pending):
        def result(self) -> list[Any]:
            moved[0] = max_age + 5.0  # the answers came this late
            conn.quote_time, conn.bid = time.time() + moved[0], 0.9  # the line moved
            return super().result()

    conn.start_cancel_orders = lambda ids: _Answer(_SlowCancels(  # type: ignore[method-assign]
        ex.said, [_info(i, f"x:{i}", "Cancelled") for i in ids]))
    cancelled = ex._start_cancelling_exits(PUT).lot_ids
    filled, _info5, _ = ex._sell("2026-11-24", "09:35", PUT, cancelled, 600.0)
    assert filled
    ref = sale_ref("2026-11-24", "09:35", 1)
    assert ex.said.index("cancels answered") < ex.said.index("quote", ex.said.index(
        "cancels answered")) < ex.said.index(f"intent {ref}"), ex.said
    s = ex.cfg.strategy
    first = limit_walk(0.9, 1.1, s.limit_walk_step, max(2, round(1 / s.limit_walk_step) + 1),
                       0.01)[0]
    assert ex.intents.store.order_by_ref(ref).lmt_price == first != limit_walk(
        1.0, 1.1, s.limit_walk_step, max(2, round(1 / s.limit_walk_step) + 1), 0.01)[0]
