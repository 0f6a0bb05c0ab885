"""PositionBook: the SQLite book of lots, exit orders, fills, entries and alerts.

It applies broker events (fills, order updates) to the book exactly once (fills
are unique by execution id), reconciles with the broker whenever the link
becomes READY, and answers the dashboard's queries over ZeroMQ. The actor is
composed from one mixin per concern (see each module's docstring).
"""

from actors.position_book.actor import PositionBook
from actors.position_book.fills import _status_name
from actors.position_book.records import contract_key

__all__ = ["PositionBook", "_status_name", "contract_key"]
