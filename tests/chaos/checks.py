"""The chaos soak's checks: open lots protected at the broker, the book matching the
broker, and the final checks (fills once, P&L from the fills, alerts delivered)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.chaos.harness import Harness
from tests.chaos.plan import ENTRY_TIMES, OUR_ACCOUNT


class Checks(Harness):
    """What the soak checks of the book against the broker, each day and at the end."""

    def open_lots(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM lots WHERE state != 'closed' ORDER BY id")

    def unprotected(self) -> list[str]:
        """Open lots without a live TP and SL of theirs (one OCA group) at the broker."""
        state = self.broker()
        if state is None:
            return ["the gateway is not answering"]
        live = {o["order_ref"]: o for o in state["open_orders"]}
        problems = []
        for lot in self.open_lots():
            tp, sl = live.get(lot["tp_order_ref"] or ""), live.get(lot["sl_order_ref"] or "")
            if lot["state"] != "open" or tp is None or sl is None:
                problems.append(f"lot {lot['id']} state={lot['state']} tp={tp is not None} "
                                f"sl={sl is not None}")
            elif tp["oca_group"] != sl["oca_group"] or tp["order_type"] != "LMT" \
                    or sl["order_type"] != "STP":
                problems.append(f"lot {lot['id']}: exits are not one TP LMT + SL STP pair")
        return problems

    def mismatch(self) -> list[str]:
        """Book's open lots vs the broker's short option positions, contract by contract.
        A long option is no lot: an exit that filled after its position was gone (a
        cancel crossed by a fill, fill_on_cancel, on an assigned lot) leaves one, which
        the engine must not trade but must report (outside_position, critical)."""
        state = self.broker()
        if state is None:
            return ["the gateway is not answering"]
        # Our account's only: the second account of the login trades the same puts.
        options = [p for p in state["positions"] if p["sec_type"] == "OPT"
                   and p.get("account", OUR_ACCOUNT) == OUR_ACCOUNT]
        broker = {p["con_id"]: -p["position"] for p in options if p["position"] < 0}
        book: Counter[int] = Counter()
        for lot in self.open_lots():
            book[lot["con_id"]] += lot["qty"]
        problems = [f"con_id {c}: book {book.get(c, 0)} short, broker {broker.get(c, 0)} short"
                    for c in sorted(set(book) | set(broker))
                    if book.get(c, 0) != broker.get(c, 0)]
        reported = {(b.get("details") or {}).get("con_id")
                    for b in self.sink.bodies("outside_position") if b["severity"] == "critical"}
        problems += [f"con_id {p['con_id']}: held long x{p['position']:g}, never reported"
                     for p in options if p["position"] > 0 and p["con_id"] not in reported]
        return problems

    def away_not_a_lot(self) -> list[str]:
        """The sale that filled while the engine was away across IB's reset: a lot of
        ours, of what filled, not an outside sale."""
        lots = self.rows("SELECT * FROM lots WHERE order_ref = ?", (self.away_ref,))
        if not lots:
            return [f"sale {self.away_ref} filled while away across the reset: no lot"]
        if any(lot["imported"] for lot in lots):
            return [f"sale {self.away_ref}: adopted as an outside sale, not our lot"]
        return []

    def check(self, day: str, name: str, problems: Callable[[], list[str]],
              timeout: float) -> None:
        self.report.checks[name] += 1
        found = self.wait(lambda: not problems(), timeout)
        if not found:
            left = problems()
            if left:
                self.report.violate(day, f"{name} after {timeout:.0f} s: {'; '.join(left)}")

    def final_checks(self) -> None:
        end = "end"
        self.check_integrity("end")
        # Entries: never more than the slots per day (the broker's sales, by their refs).
        state = self.broker() or {"executions": []}
        sales: Counter[str] = Counter()
        for e in state["executions"]:
            if e["order_ref"].startswith("tb:") and ":sale:" in e["order_ref"] \
                    and e["side"] in ("SLD", "SELL"):
                sales[e["order_ref"].split(":")[1]] += e["qty"]
        self.report.checks["entries_per_day"] += 1
        for day, qty in sorted(sales.items()):
            if qty > len(ENTRY_TIMES) * self.quantity:
                self.report.violate(day, f"{qty} sold, more than {len(ENTRY_TIMES)} slots of "
                                         f"{self.quantity}")
        # Fills: every execution of ours stored once; nothing stored the broker never did.
        self.report.checks["fills_once"] += 1
        # (A sale filled while the engine was away across the reset: IB never reports its
        # execution to the engine; its lot comes from the broker's position.)
        made = {e["exec_id"] for e in state["executions"] if e["order_ref"].startswith("tb:")}
        ours = {e["exec_id"] for e in state["executions"] if e["order_ref"].startswith("tb:")
                and e["order_ref"] not in self.away_refs}
        stored = Counter(r["exec_id"] for r in self.rows("SELECT exec_id FROM fills"))
        dup = [x for x, n in stored.items() if n > 1]
        if dup:
            self.report.violate(end, f"fills stored more than once: {dup}")
        if len(state["executions"]) < 500:  # the control API shows the last 500
            # An away sale's execution seen after all is no fault: the broker made it.
            missing, extra = ours - set(stored), set(stored) - made
            if missing:
                self.report.violate(end, f"broker executions missing from the book: {missing}")
            if extra:
                self.report.violate(end, f"book fills the broker never made: {extra}")
        # Realized P&L = the sum over the fills, per sale: a lot and the pieces its exit
        # slices closed (same slot, contract and entry time) together, once all closed.
        self.report.checks["pnl_from_fills"] += 1
        families: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for lot in self.rows("SELECT * FROM lots"):
            if lot["state"] == "closed":
                self.report.lots[lot["close_reason"] or "closed"] += 1
                if not lot["close_reason"]:  # closed iff gone at the broker, with a reason
                    self.report.violate(end, f"lot {lot['id']} closed without a reason")
            key = (lot["trade_date"], lot["slot"], lot["con_id"], lot["entry_time"])
            families.setdefault(key, []).append(lot)
        for lots in families.values():
            if any(lot["state"] != "closed" or lot["close_reason"] not in (
                    "take_profit", "stop_loss", "expired") for lot in lots):
                continue
            if any(lot["order_ref"] in self.away_refs for lot in lots):
                continue  # its sale's execution was never reported: no fill to sum
            fills = [f for lot in lots
                     for f in self.rows("SELECT * FROM fills WHERE lot_id = ?", (lot["id"],))]
            mult = lots[0]["multiplier"] or 100
            # The buys that covered the sale: a further one (both legs of an OCA pair
            # filled in one instant) is a long the account holds, not realized P&L.
            left = float(sum(lot["qty"] for lot in lots))
            cash = 0.0
            for f in sorted(fills, key=lambda f: (f["time"], f["exec_id"])):
                if f["side"] == "SLD":
                    cash += f["price"] * f["qty"] * mult
                else:
                    take = min(float(f["qty"]), left)
                    left -= take
                    cash -= f["price"] * take * mult
            expected = round(cash - sum(f["commission"] or 0.0 for f in fills), 2)
            realized = sum(lot["realized_pnl"] or 0.0 for lot in lots)
            if abs(expected - realized) > 0.011 * len(lots):
                self.report.violate(end, f"lots {[lot['id'] for lot in lots]} realized "
                                         f"{realized:.2f} but their fills say {expected}")
        self.report.lots["open"] = len(self.open_lots())
        # Lots of our sales (pieces included; not imported ones): what the soak traded.
        self.report.contracts_sold = int(sum(lot["qty"] for lot in self.rows(
            "SELECT qty FROM lots WHERE order_ref != '' AND imported = 0")))
        # Alerts: all delivered, each once, in order.
        self.report.checks["alerts_delivered"] += 1
        delivered = self.wait(lambda: not self.rows(
            "SELECT 1 FROM alert_outbox WHERE delivered_at IS NULL LIMIT 1"), 60)
        if not delivered:
            self.report.violate(end, "alerts still undelivered 60 s after the sink came back")
        bodies = self.sink.bodies()
        ids = [b["id"] for b in bodies if b.get("id")]
        self.report.crash_alerts = sum(1 for b in bodies if b.get("kind") == "process_crashed")
        self.report.alerts_delivered = len(ids)
        self.report.alert_kinds = Counter(b.get("kind", "?") for b in bodies if b.get("id"))
        stored_ids = [r["id"] for r in self.rows("SELECT id FROM alerts ORDER BY id")]
        dups = sorted(x for x, n in Counter(ids).items() if n > 1)
        # At least once across kill -9: the sink answers after it has the alert, and a
        # kill before the engine marks it delivered sends it again (same id: receivers
        # dedupe by id). A repeat is that only if a kill came between the two copies,
        # right after the first; any other repeat is a violation.
        raced = [x for x in dups if self.redelivered_after_kill(x)]
        self.report.redelivered_after_kill = raced
        dups = [x for x in dups if x not in raced]
        if dups:
            self.report.violate(end, f"alerts delivered more than once: {dups}")
        if ids != sorted(ids):
            self.report.violate(end, "alerts delivered out of order")
        if set(stored_ids) - set(ids):
            lost = sorted(set(stored_ids) - set(ids))
            self.report.violate(end, f"alerts never delivered: {lost}")
        self.report.checks["missed_alerted"] += 1
        texts = [b.get("message", "") for b in bodies if b.get("kind") == "entry_missed"]
        for day in self.missed_days:
            if not any(day in t for t in texts):
                self.report.violate(day, "entry missed without an entry_missed alert")

    def redelivered_after_kill(self, alert_id: int) -> bool:
        """Each repeat of `alert_id` at the sink follows a kill -9 of the engine that came
        within 2 s after the copy before it (its delivery not yet marked)."""
        with self.sink._lock:
            times = sorted(r["time"] for r in self.sink.requests
                           if isinstance(r["json"], dict) and r["json"].get("id") == alert_id)
        return all(any(a - 0.5 <= k <= a + 2.0 and k < b for k in self.kill_times)
                   for a, b in itertools.pairwise(times))
