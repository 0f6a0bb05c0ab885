"""Where actors find each other: live refs by name, and an event bus over them.

Refs are looked up at every use, never kept: after the Supervisor restarts a
child, an old ref would raise ActorDeadError (a Pykka pitfall).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

import pykka
from loguru import logger

from trading.refusals import RefusalLog


class ActorDirectory:
    """Thread-safe name -> ActorRef map, kept current by the Supervisor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._proxies: dict[str, tuple[pykka.ActorRef[Any], Any]] = {}
        self._subscribers: dict[type, list[str]] = defaultdict(list)
        # The current link status, set by Connection *before* it publishes a change, so
        # an actor that subscribes late can read what it may have missed.
        self.link: Any = None
        # When the Watchdog's heartbeat last found the gateway answering.
        self.link_verified_at: float = 0.0
        # IB's data farms reported broken (2103/2105/2157) on the current socket, by
        # name ("market", "hmds", "secdef"); set by Connection. No entry is priced while
        # "market" is in it.
        self.farms_broken: set[str] = set()
        # An expected outage named by the Watchdog ("weekly re-authentication"), or "".
        self.link_note: str = ""
        # When the gateway last sent anything on the current socket (any event).
        self.last_message_at: float = 0.0
        # Connects refused in a row with 326 (client id in use); set by Connection.
        self.client_id_refusals: int = 0
        # Since when (epoch s) every connect has been refused at the TCP level (nothing
        # listens on the API port), 0.0 while connects reach the gateway; set by Connection.
        self.gateway_refused_since: float = 0.0
        # The latest quote per con_id, written by MarketData only; readers (the book's
        # dashboard views) take them without queueing behind MarketData's mailbox.
        self.quotes: dict[int, Any] = {}
        self.spy_con_id: int = 0
        # PositionBook's read views (`query(op, args)`), set by the running book: the
        # ZeroMQ workers call them on their own thread (the Store is locked per
        # statement), so a dashboard read makes no round trip through the book's mailbox.
        self.views: Any = None
        # IB's refusals (trading/refusals.py): the last one, the causes alerted today, and
        # the Read-Only API when the gateway said so; written by Connection and the
        # executor, read by the status view.
        self.refusals = RefusalLog()
        # Messages sent to the gateway per second: the peak of the session and now, and
        # how often ib_insync's throttle held requests back (set by Connection).
        self.pacing: dict[str, Any] = {}

    def set(self, name: str, ref: pykka.ActorRef[Any] | None) -> None:
        with self._lock:
            if ref is None:
                self._refs.pop(name, None)
            else:
                self._refs[name] = ref

    def ref(self, name: str) -> pykka.ActorRef[Any] | None:
        with self._lock:
            ref = self._refs.get(name)
        return ref if ref is not None and ref.is_alive() else None

    def proxy(self, name: str) -> Any:
        """A proxy of the live actor `name`; raises ActorDeadError if there is none."""
        ref = self.ref(name)
        if ref is None:
            raise pykka.ActorDeadError(f"actor {name} is not running")
        # Building a pykka proxy introspects the actor (a profile of bench.exits showed
        # it per call); one per actor instance is kept and renewed when the ref changes.
        cached = self._proxies.get(name)
        if cached is not None and cached[0] is ref:
            return cached[1]
        proxy = ref.proxy()
        self._proxies[name] = (ref, proxy)
        return proxy

    def subscribe(self, message_type: type, name: str) -> None:
        with self._lock:
            if name not in self._subscribers[message_type]:
                self._subscribers[message_type].append(name)

    def publish(self, message: object) -> None:
        """Tell `message` to every subscriber of its type; never blocks."""
        with self._lock:
            names = list(self._subscribers.get(type(message), ()))
        for name in names:
            self.tell(name, message)

    def tell(self, name: str, message: object) -> bool:
        ref = self.ref(name)
        if ref is None:
            logger.debug("dropped {} for {} (not running)", type(message).__name__, name)
            return False
        try:
            ref.tell(message)
        except pykka.ActorDeadError:
            return False
        return True
