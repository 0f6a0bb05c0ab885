"""orderRef: every order of the bot carries one; built and parsed here only.

    tb:<YYYY-MM-DD>:<HHMM>:sale:<n>   the n-th sale attempt of a day's entry slot
    tb:lot<id>:<tp|sl>:<serial>        an exit leg of a lot
    tb-oca-lot<id>-<serial>            the OCA group of a lot's exit pair
    tb:lot<id>:shares:<n>              the n-th sale of the shares an assignment of
                                       lot <id> delivered (strategy.on_assignment)

The broker is asked by these refs after a restart (open orders, executions,
completed orders), so their shape is a contract with the book's history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "tb:"
# Refs of requests that never become orders: the guard's dry run and the margin whatIf.
CHECK_REF = f"{PREFIX}check"
WHAT_IF_REF = f"{PREFIX}whatif"
_SALE = re.compile(r"tb:(\d{4}-\d{2}-\d{2}):(\d{4}):sale:(\d+)")
_EXIT = re.compile(r"tb:lot(\d+):(tp|sl):(\d+)")
_SHARES = re.compile(r"tb:lot(\d+):shares:(\d+)")


@dataclass(frozen=True)
class SaleRef:
    trade_date: str
    slot: str  # "HH:MM"
    attempt: int


@dataclass(frozen=True)
class ExitRef:
    lot_id: int
    role: str  # "tp" | "sl"
    serial: int


def is_ours(ref: str) -> bool:
    return ref.startswith(PREFIX)


def _hhmm(slot: str) -> str:
    return slot.replace(":", "")


def sale_prefix(trade_date: str, slot: str) -> str:
    return f"{PREFIX}{trade_date}:{_hhmm(slot)}:sale:"


def sale_ref(trade_date: str, slot: str, attempt: int) -> str:
    return f"{sale_prefix(trade_date, slot)}{attempt}"


def lot_prefix(lot_id: int) -> str:
    return f"{PREFIX}lot{lot_id}:"


def exit_refs(lot_id: int, serial: int) -> tuple[str, str, str]:
    """(take-profit ref, stop-loss ref, OCA group) of one exit pair."""
    return (
        f"{lot_prefix(lot_id)}tp:{serial}",
        f"{lot_prefix(lot_id)}sl:{serial}",
        f"tb-oca-lot{lot_id}-{serial}",
    )


def parse_sale(ref: str) -> SaleRef | None:
    m = _SALE.fullmatch(ref)
    if m is None:
        return None
    hhmm = m.group(2)
    return SaleRef(m.group(1), f"{hhmm[:2]}:{hhmm[2:]}", int(m.group(3)))


def parse_exit(ref: str) -> ExitRef | None:
    m = _EXIT.fullmatch(ref)
    return ExitRef(int(m.group(1)), m.group(2), int(m.group(3))) if m else None


def share_sale_ref(lot_id: int, attempt: int) -> str:
    return f"{lot_prefix(lot_id)}shares:{attempt}"


def parse_share_sale(ref: str) -> tuple[int, int] | None:
    """(lot id, attempt) of a share-sale ref, else None."""
    m = _SHARES.fullmatch(ref)
    return (int(m.group(1)), int(m.group(2))) if m else None


def is_sale(ref: str) -> bool:
    return parse_sale(ref) is not None
