"""IB's pacing of API messages: at most 50 a second from one client (IB's message-code
table, code 100). Each message past the limit in a second is answered with error 100
and not served; a client over the limit for SUSTAINED seconds in a row is disconnected
(IB: TWS "will likely disconnect"). ib_insync throttles itself at 45/s, so a normal
client never trips it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_RATE = 50  # messages per second per client
SUSTAINED = 3  # consecutive seconds over the limit that close the socket


@dataclass
class Pacer:
    """One client's message counts, in whole seconds of the monotonic clock."""

    max_rate: int = MAX_RATE
    window: int = -1  # the second being counted
    count: int = 0  # messages in it
    messages: int = 0  # all messages
    peak_rate: int = 0  # the most in any one second
    refused: int = 0  # messages answered with 100
    over: list[int] = field(default_factory=list)  # the latest seconds over the limit

    def admit(self, now: float) -> int:
        """Count a message arriving at `now`: 0 to serve it, else its rank in this second
        (past the limit: answer 100 and drop it)."""
        second = int(now)
        if second != self.window:
            self.window, self.count = second, 0
        self.count += 1
        self.messages += 1
        self.peak_rate = max(self.peak_rate, self.count)
        if self.count <= self.max_rate:
            return 0
        if self.count == self.max_rate + 1:
            self.over = [*self.over[-(SUSTAINED - 1):], second]
        self.refused += 1
        return self.count

    @property
    def sustained(self) -> bool:
        """Over the limit SUSTAINED seconds in a row (the last of them now)."""
        o = self.over
        return len(o) >= SUSTAINED and o[-1] - o[-SUSTAINED] == SUSTAINED - 1

    def stats(self) -> dict[str, int]:
        return {"messages": self.messages, "peak_rate": self.peak_rate,
                "refused": self.refused, "max_rate": self.max_rate}
