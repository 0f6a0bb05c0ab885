"""The OrderExecutor (DESIGN "Trade lifecycle"): `actor.py` is the actor and the entry's
flow, composed from mixins: `guard.py` (preconditions, risk, account, order bounds,
margin; EntryRefused), `sale.py` (the contract, the sale and its walk, earlier attempts,
exits cancelled and restored around it), `exits.py` (TP+SL placement and unknown legs),
`repair.py` (the repair job, interrupted entries, resumed sales). `entry_prep.py`
prepares the next slot's lookups; `share_sale.py` sells assigned shares (issue 16);
`part.py` declares what the mixins use of the actor."""

from actors.order_executor.actor import OrderExecutor
from actors.order_executor.guard import EntryRefused

__all__ = ["EntryRefused", "OrderExecutor"]
