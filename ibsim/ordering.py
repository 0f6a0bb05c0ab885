"""placeOrder and cancelOrder from a client: the order read and checked, placed (at
once, or late under /fault/slow_orders), cancelled, or losing its race with a fill
(/fault/fill_on_cancel). Mixed into `Gateway` (ibsim/server.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from ibsim import checks, codes, universe, wire
from ibsim.contracts import contract_from, float_field, int_field, no_secdef
from ibsim.events import Event

if TYPE_CHECKING:
    from ibsim.client import Session


def min_tick(c: dict[str, Any]) -> float:
    """The contract's minimum tick, as its contract details report it (ibsim/wire.py:
    0.01; a forex pair its own)."""
    inst = universe.BY_CON_ID.get(c.get("con_id", 0))
    return inst.tick if inst is not None and c.get("sec_type") == "CASH" else 0.01


class Ordering:
    """Order requests (a mixin of Gateway)."""

    async def place_order(self, s: Session, f: list[str]) -> None:
        if len(f) < 48:
            raise ValueError(f"placeOrder with {len(f)} fields")
        if self.read_only:
            # Read-Only API: IB refuses every order, a whatIf too, before reading it.
            self.log.info("order {}/{} refused: Read-Only API", s.client_id, f[1])
            s.send(wire.error(int(f[1]), 321, codes.read_only("bN")))
            return
        if checks.check_order(self, s, f):
            return  # a whatIf answered, or an order ibsim refuses (its id, its reason)
        order = {
            "order_id": int(f[1]), "client_id": s.client_id,
            "contract": contract_from(f, 2), "action": f[16],
            "qty": float(f[17]), "order_type": f[18], "lmt_price": float_field(f[19]),
            "aux_price": float_field(f[20]), "tif": f[21], "oca_group": f[22],
            "account": f[23] or self.broker.account, "order_ref": f[26],
            "transmit": f[27] != "0", "parent_id": int_field(f[28]), "oca_type": int_field(f[47]),
            "outside_rth": f[33] == "1",
        }
        if order["action"] not in ("BUY", "SELL"):
            raise ValueError(f"bad action {order['action']!r}")
        if order["account"] not in self.broker.accounts:
            # IB validates the account before it takes the order: 321 on the order id,
            # no openOrder, no orderStatus (README: "Accounts").
            self.log.warning("order {}/{} refused: account {} is not managed ({})",
                             s.client_id, order["order_id"], order["account"],
                             ",".join(self.broker.accounts))
            s.send(wire.error(order["order_id"], 321,
                              codes.text(321, token="cq", cause=codes.INVALID_ACCOUNT)))
            return
        resolved = self.broker.resolve(order["contract"])
        if len(resolved) != 1:
            no_secdef(s, order["order_id"])
            return
        order["contract"] = resolved[0]
        if order["order_type"] == "LMT" and order["lmt_price"] is None:
            s.send(wire.error(order["order_id"], 201, "Order rejected - reason: a limit order"
                                                      " needs a limit price"))
            return
        if order["order_type"] == "STP" and order["aux_price"] is None:
            s.send(wire.error(order["order_id"], 201, "Order rejected - reason: a stop order"
                                                      " needs a stop price"))
            return
        if self._off_tick(s, order):
            return
        preset = self.broker.tif_preset
        if preset and order["tif"] != preset and self.broker.find(*self._key(order)) is None:
            order["tif"], order["tif_preset_applied"] = preset, True
        if self.slow_orders > 0 and self.slow_orders_action in ("", order["action"]):
            key = (order["client_id"], order["order_id"])
            self._slow_pending[key] = False
            self._spawn(self._place_later(order, self.slow_orders))
            return
        self._place(order)

    @staticmethod
    def _key(order: dict[str, Any]) -> tuple[int, int]:
        return order["client_id"], order["order_id"]

    def _off_tick(self, s: Session, order: dict[str, Any]) -> bool:
        """IB's 110: a limit or stop price that is not a multiple of the contract's minimum
        tick (the minTick its contract details report). A new order is not placed; a
        modify leaves the working order as it was. True when refused."""
        tick = min_tick(order["contract"])
        for price in (order["lmt_price"], order["aux_price"]):
            if price is not None and abs(price / tick - round(price / tick)) > 1e-6:
                self.log.info("order {}/{}: price {} is not a multiple of {}",
                              s.client_id, order["order_id"], price, tick)
                s.send(wire.error(order["order_id"], 110, codes.text(110)))
                return True
        return False

    async def _place_later(self, order: dict[str, Any], delay: float) -> None:
        # Held `delay` seconds, or until /fault/slow_orders {"release": true} lets every
        # held order through at once (a test that needs the hold to outlast a kill).
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self._slow_release.wait(), delay)
        key = (order["client_id"], order["order_id"])
        cancelled = self._slow_pending.pop(key, False)
        self._place(order)
        if cancelled:  # a cancel that came after this order is handled after it
            self._dispatch(self.broker.cancel(*key))

    def _place(self, order: dict[str, Any]) -> None:
        key = (order["client_id"], order["order_id"])
        if self.broker.find(*key) is not None and self._late(key, modify=True):
            return
        self.log.info("order {}/{} {} {} {} lmt={} aux={} ref={}", order["client_id"],
                      order["order_id"], order["action"], order["qty"], order["order_type"],
                      order["lmt_price"], order["aux_price"], order["order_ref"])
        self._dispatch(self.broker.place(order, self.in_outage))
        if not self.in_outage:
            self._dispatch(self.broker.match())

    async def cancel_order(self, s: Session, f: list[str]) -> None:
        assert s.client_id is not None
        key = (s.client_id, int(f[2]))
        if self.read_only:
            s.send(wire.error(key[1], 321, codes.read_only("b7")))
            return
        if key in self._slow_pending:
            # A gateway handles one client's messages in order: a cancel never
            # overtakes the order it names, however slow that order is.
            self._slow_pending[key] = True
            return
        if self._late(key):
            return
        self._dispatch(self.broker.cancel(*key))

    def _late(self, key: tuple[int, int], modify: bool = False) -> bool:
        """/fault/fill_on_cancel: this cancel or modify lost the race with a fill. The
        order fills first; then 10148 (or 161) for a cancel, 104 for a modify."""
        o = self.broker.find(*key)
        if self.fill_on_cancel <= 0 or o is None or o["status"] in ("Filled", "Cancelled",
                                                                      "Inactive",
                                                                      "PendingSubmit"):
            return False
        self.fill_on_cancel -= 1
        self.log.warning("order {}/{}: {} arrives after its fill", *key,
                         "modify" if modify else "cancel")
        self._dispatch(self.broker.fill_before(o))
        if modify:
            code, text = 104, codes.text(104)
        elif self.late_cancel_code == 161:
            code, text = 161, codes.text(161, perm_id=o["perm_id"])
        else:
            code, text = 10148, codes.text(10148, order_id=key[1], state="Filled")
        self._dispatch([Event("error", {"id": key[1], "code": code, "message": text}, key[0])])
        return True
