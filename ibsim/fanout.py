"""The broker's events to the wire: who hears an order's status and executions, and
the position and account updates subscribed clients get. Mixed into `Gateway`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ibsim import account, wire
from ibsim.events import Event

if TYPE_CHECKING:
    from ibsim.client import Session


class Fanout:
    """Events to sessions (a mixin of Gateway)."""

    def _clients(self, client_id: int | None) -> list[Session]:
        return [s for s in self.sessions if s.client_id is not None
                and (client_id is None or s.client_id == client_id)]

    def _order_audience(self, client_id: int | None) -> list[Session]:
        """Who hears an order's status and executions: the client that owns it (client 0
        for an order typed into TWS), plus the master API client if one is set."""
        out = self._clients(client_id)
        master = self.master_client_id
        if client_id is not None and master is not None and master != client_id:
            out += self._clients(master)
        return out

    def _dispatch(self, events: list[Event]) -> None:
        for ev in events:
            if ev.kind == "order":
                for s in self._order_audience(ev.client_id):
                    s.send(wire.open_order(ev.data))
                    s.send(wire.order_status(ev.data))
            elif ev.kind == "exec":
                for s in self._order_audience(ev.client_id):
                    s.send(wire.exec_details(-1, ev.data))
                    s.send(wire.commission_report(ev.data))
            elif ev.kind == "reject":
                self.log.info("order {} rejected: {} {}", ev.data["order_id"], ev.data["code"],
                              ev.data["message"])
                for s in self._clients(ev.client_id):
                    s.send(wire.error(ev.data["order_id"], ev.data["code"], ev.data["message"]))
            elif ev.kind == "error":
                for s in self._clients(ev.client_id):
                    s.send(wire.error(ev.data["id"], ev.data["code"], ev.data["message"]))
            elif ev.kind == "position":
                self._push_positions(ev.data["con_id"], ev.data.get("account"))

    def _push_positions(self, con_id: int, account: str | None = None) -> None:
        b = self.broker
        account = account or b.account
        pos = b.book(account).get(con_id)
        for s in self.sessions:
            if pos is not None and s.wants_positions:
                s.send(wire.position(account, pos["contract"], pos["position"], pos["avg_cost"]))
            if account != b.account:
                continue  # portfolio and account values: the first account's (reqAccountUpdates)
            if s.wants_account:
                if pos is not None:
                    self._send_portfolio(s, pos)
                self._send_account_values(s)

    def _send_portfolio(self, s: Session, pos: dict[str, Any]) -> None:
        c = pos["contract"]
        _bid, _ask, mark = self.broker.quote_of(c)
        mult = float(c.get("multiplier") or 1)
        unreal = pos["position"] * (mark * mult - pos["avg_cost"])
        s.send(wire.portfolio(self.broker.account, c, pos["position"], mark, pos["avg_cost"],
                              unreal, 0.0))

    def _send_account_values(self, s: Session) -> None:
        """updateAccountValue (6) for every key, as reqAccountUpdates gets them (the margin
        account: ibsim/account.py)."""
        fig = self.extras.account.figures()
        for key, value, ccy in account.update_rows(fig):
            s.send(wire.frame(6, 2, key, value, ccy, self.broker.account))
