"""orderRef: built and parsed in one place (trading/order_refs.py)."""

from __future__ import annotations

from trading.order_refs import (
    ExitRef,
    SaleRef,
    exit_refs,
    is_ours,
    is_sale,
    lot_prefix,
    parse_exit,
    parse_sale,
    sale_prefix,
    sale_ref,
)


def test_sale_refs_round_trip() -> None:
    ref = sale_ref("2026-11-24", "09:35", 3)
    assert ref == "tb:2026-11-24:0935:sale:3"
    assert ref.startswith(sale_prefix("2026-11-24", "09:35"))
    assert parse_sale(ref) == SaleRef("2026-11-24", "09:35", 3)
    assert is_sale(ref) and is_ours(ref)


def test_exit_refs_round_trip() -> None:
    tp, sl, oca = exit_refs(7, 123)
    assert (tp, sl, oca) == ("tb:lot7:tp:123", "tb:lot7:sl:123", "tb-oca-lot7-123")
    assert parse_exit(tp) == ExitRef(7, "tp", 123) and parse_exit(sl) == ExitRef(7, "sl", 123)
    assert tp.startswith(lot_prefix(7)) and not tp.startswith(lot_prefix(71))


def test_other_refs_are_not_parsed() -> None:
    for ref in ("", "manual", "tb:x:0935:sale:1", "tb:lot7:tp:", "tb:lot7:xx:1",
                "tb:2026-11-24:0935:sale:1:extra", "TB:lot1:tp:1"):
        assert parse_exit(ref) is None
        assert parse_sale(ref) is None or ref == ""
    assert not is_ours("manual")
