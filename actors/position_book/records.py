"""The book's records the other actors read and write through it (entries, order
intents, lots, contracts, key-values): one-to-one with the store, so that the store
is only ever used on the book's own thread."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from actors.position_book.base import BookState
from trading.model import ContractInfo
from trading.records import EntryAttempt, Lot, OrderRecord, StoredFill


def contract_key(con_id: int) -> str:
    return f"contract:{con_id}"


class RecordsMixin(BookState):
    """Mixed into PositionBook."""

    def mark_order(self, order_ref: str, **kwargs: Any) -> None:
        self.db.mark_order(order_ref, **kwargs)

    def mark_orders(self, marks: list[tuple[str, dict[str, Any]]]) -> None:
        self.db.mark_orders(marks)

    def remember_contract(self, info: ContractInfo) -> None:
        self.db.set_kv(contract_key(info.con_id), asdict(info))

    def contract(self, con_id: int) -> ContractInfo | None:
        data = self.db.get_kv(contract_key(con_id))
        return ContractInfo(**data) if data else None

    def start_entry(self, trade_date: str, slot: str) -> bool:
        return self.db.start_entry(trade_date, slot)

    def finish_entry(
        self, trade_date: str, slot: str, state: str, reason: str = "", lot_id: int | None = None
    ) -> None:
        self.db.finish_entry(trade_date, slot, state, reason=reason, lot_id=lot_id)

    def entry(self, trade_date: str, slot: str) -> EntryAttempt | None:
        return self.db.entry(trade_date, slot)

    def interrupt_entry(self, trade_date: str, slot: str, reason: str) -> bool:
        return self.db.interrupt_entry(trade_date, slot, reason)

    def reclaim_entry(self, trade_date: str, slot: str) -> bool:
        return self.db.reclaim_entry(trade_date, slot)

    def started_entries(self) -> list[EntryAttempt]:
        return self.db.entries_in_state("started")

    def entries(self, trade_date: str | None = None) -> list[EntryAttempt]:
        return self.db.entries(trade_date)

    def order_by_ref(self, ref: str) -> OrderRecord | None:
        return self.db.order_by_ref(ref)

    def lot(self, lot_id: int) -> Lot | None:
        return self.db.lot(lot_id)

    def open_lots(self) -> list[Lot]:
        return self.db.open_lots()

    def held_contracts(self) -> list[ContractInfo]:
        """The contracts of the open lots (MarketData streams them from its start)."""
        out: dict[int, ContractInfo] = {}
        for lot in self.db.open_lots():
            info = self.contract(lot.con_id)
            if info is not None:
                out[info.con_id] = info
        return list(out.values())

    def lots(self, states: list[str] | None = None) -> list[Lot]:
        return self.db.lots(states)

    def fills(self, lot_id: int | None = None) -> list[StoredFill]:
        return self.db.fills(lot_id)

    def set_exits(self, lot_id: int, **kwargs: Any) -> None:
        self.db.set_exits(lot_id, **kwargs)

    def set_lot_state(self, lot_id: int, state: str) -> None:
        self.db.set_lot_state(lot_id, state)

    def unprotect_lots_on(self, con_id: int) -> list[Lot]:
        return self.db.unprotect_lots_on(con_id)

    def get_kv(self, key: str, default: Any = None) -> Any:
        return self.db.get_kv(key, default)

    def set_kv(self, key: str, value: Any) -> None:
        self.db.set_kv(key, value)

    def contracts_sold_on(self, trade_date: str) -> int:
        return self.db.contracts_sold_on(trade_date)

    def next_sale_serial(self, trade_date: str, slot: str) -> int:
        return self.db.next_sale_serial(trade_date, slot)
