"""`strategy.on_assignment = "close_shares"` (issue 16): the shares an assignment
delivered are sold at the next session's open, a limit walked from the mid to the bid
like the option sale, with an intent written first and an orderRef from
trading/order_refs.py. Runs on the executor's thread (it waits on the broker); the job
itself (pending, selling, sold, failed) is the book's, in its key-value table."""

from __future__ import annotations

import time
from typing import Any

from trading.freshness import stale_reason
from trading.model import OrderRequest
from trading.order_refs import share_sale_ref
from trading.pricing import limit_walk
from trading.risk import OrderRefused


def sell_shares(ex: Any, lot_id: int) -> str:
    """One attempt for the job of lot `lot_id`; returns its new state."""
    book, s = ex.book, ex.cfg.strategy
    job = book.claim_share_sale(lot_id).get(timeout=ex._t())
    if job is None:
        return "not due"
    state, note = "pending", ""
    try:
        contract = ex.conn.qualify_stock(job["symbol"], s.exchange).get(timeout=ex._t())
        quote = ex.conn.quotes([contract], 2.0, False, s.max_quote_age).get(
            timeout=ex._t(3))[0]
        stale = stale_reason(quote, time.time(), s.max_quote_age, job["symbol"])
        if quote.bid is None or quote.ask is None:
            note = "no quote"
        elif stale:  # the quote-age rule of every sale: tried again later
            note = stale
        else:
            action = "SELL" if job["qty"] > 0 else "BUY"
            qty = abs(int(job["qty"]))
            prices = limit_walk(quote.bid, quote.ask, s.limit_walk_step,
                                max(2, round(1 / s.limit_walk_step) + 1), contract.min_tick)
            if action == "BUY":  # shares delivered short: walk from the mid up to the ask
                prices = [round(quote.bid + quote.ask - p, 2) for p in prices]
            ref = share_sale_ref(lot_id, int(job["attempts"]))
            ex.intents.record_intent(order_ref=ref, role="shares", con_id=contract.con_id,
                                     action=action, order_type="LMT", qty=qty,
                                     lmt_price=prices[0], trade_date=ex.today())
            ex.log.info("share sale for lot {}: {} {} x{} LMT {} ref={}", lot_id, action,
                        contract.local_symbol or job["symbol"], qty, prices[0], ref)
            req = OrderRequest(ref, contract, action, "LMT", qty, lmt_price=prices[0],
                               tif="DAY")
            info = ex.conn.place_order(req).get(timeout=ex._t(s.order_ack_timeout))
            ex._record(info)
            if info.status == "Unknown":
                state, note = "failed", "no ack: left to the operator and reconciliation"
            elif not info.is_dead:
                info = ex._walk(info, prices[1:])
            if info.is_filled:
                state, note = "sold", f"{action} {qty} at {info.avg_fill_price}"
            elif state != "failed":
                note = f"not filled ({info.status} {info.error_message})".strip()
    except OrderRefused as exc:
        state, note = "failed", f"refused before the broker: {exc}"
    except Exception as exc:  # the next tick tries again (within the attempts)
        note = f"error: {exc}"
    job = book.finish_share_sale(lot_id, state, note, s.sale_attempts).get(timeout=ex._t())
    final = job["state"] if job else state
    if final == "sold":
        ex.alerts.raise_alert(
            "shares_sold", f"the {job['symbol']} shares assigned with lot {lot_id} were sold: "
            f"{note}", severity="info", details={"lot_id": lot_id})
    elif final == "failed":
        ex.alerts.raise_alert(
            "shares_sold", f"selling the {job['symbol'] if job else ''} shares assigned with "
            f"lot {lot_id} failed: {note}; they are left to the operator",
            severity="error", details={"lot_id": lot_id})
    return final
