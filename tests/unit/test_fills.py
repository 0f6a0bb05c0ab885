"""trading/fills.py: a lot from its slices, exit slices, an order's remainder."""

from __future__ import annotations

from trading.fills import EXIT_OCA_TYPE, exit_slice, remaining, vwap
from trading.records import StoredFill


def _slice(qty: float, price: float) -> StoredFill:
    return StoredFill(f"e{qty}", "tb:s", 1, 1, 42, "SLD", qty, price, None, 1.0, None)


def test_vwap_of_slices() -> None:
    assert vwap([_slice(1, 1.71), _slice(2, 2.10)]) == (3, 1.97)
    assert vwap([]) == (0, 0.0)


def test_exit_slice_never_more_than_the_lot() -> None:
    assert exit_slice(3, 1) == 1
    assert exit_slice(2, 5) == 2


def test_remaining_and_oca_type() -> None:
    assert remaining(3.0, 1.0) == 2
    assert remaining(1.0, 2.0) == 0
    assert EXIT_OCA_TYPE == 2  # reduce with block: the SL shrinks as the TP fills
