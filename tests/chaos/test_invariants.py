"""The soak's money invariants (tests/chaos/invariants.py) on hand-made broker states."""

from __future__ import annotations

from typing import Any

from tests.chaos.invariants import (
    exit_qty_over_position,
    fills_once,
    naked_shorts,
    pairs_per_lot,
    sales_per_slot,
)


def order(ref: str, otype: str, qty: float, oca: str, filled: float = 0.0,
          con_id: int = 7) -> dict[str, Any]:
    return {"order_id": hash(ref) % 1000, "order_ref": ref, "action": "BUY",
            "order_type": otype, "qty": qty, "filled": filled, "oca_group": oca,
            "con_id": con_id}


def state(orders: list[dict[str, Any]], short: float = 3,
          executions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"open_orders": orders, "executions": executions or [],
            "positions": [{"con_id": 7, "sec_type": "OPT", "position": -short}] if short else []}


PAIR = [order("tb:lot1:tp:1", "LMT", 3, "g1", filled=1), order("tb:lot1:sl:1", "STP", 2, "g1")]


def test_a_pair_counts_once_and_its_remainder_fits_the_position() -> None:
    assert exit_qty_over_position(state(PAIR, short=2)) == []
    assert exit_qty_over_position(state(PAIR, short=1))  # 2 live for 1 short
    second = [order("tb:lot1:tp:2", "LMT", 2, "g2"), order("tb:lot1:sl:2", "STP", 2, "g2")]
    assert exit_qty_over_position(state(PAIR + second, short=2))
    assert pairs_per_lot(state(PAIR + second)) == ["lot 1: 2 live exit groups"]


def test_a_short_without_both_legs_is_naked() -> None:
    assert naked_shorts(state(PAIR)) == set()
    assert naked_shorts(state(PAIR[:1])) == {7}
    assert naked_shorts(state([], short=0)) == set()


def test_one_sale_per_slot_and_fills_once() -> None:
    ex = [{"exec_id": "a", "order_ref": "tb:2026-11-24:0935:sale:1", "side": "SLD",
           "qty": 1, "price": 1.0},
          {"exec_id": "b", "order_ref": "tb:2026-11-24:0935:sale:2", "side": "SLD",
           "qty": 1, "price": 1.1}]
    assert sales_per_slot(state([], executions=ex[:1]), 1) == []
    assert len(sales_per_slot(state([], executions=ex), 3)) == 1
    stored = [{"exec_id": "a", "qty": 1, "price": 1.0}, {"exec_id": "b", "qty": 2, "price": 1.1}]
    assert fills_once(state([], executions=ex), stored) == [
        "fill b stored as 2 @ 1.1, the broker's slice is 1 @ 1.1"]
    assert fills_once(state([], executions=ex), stored[:1] * 2) == ["fill a stored 2 times"]
