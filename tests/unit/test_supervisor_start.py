"""The Supervisor makes a child known the moment it is started: a message published
while the child's on_start runs waits in its inbox instead of being dropped. (A link
READY published between MarketData's look at the link in on_start and its registration
was lost, and the engine never asked for SPY's quotes: seen in CI.)"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pykka

from actors.directory import ActorDirectory
from actors.supervisor import ChildSpec, Supervisor
from config.schema import SupervisionConfig
from tests.support.zmq_request import wait_until


@dataclass(frozen=True)
class Hello:
    n: int


class _Child(pykka.ThreadingActor):
    def __init__(self, directory: ActorDirectory, in_start: threading.Event,
                 go_on: threading.Event, got: list[Any]) -> None:
        super().__init__()
        self.directory, self.in_start, self.go_on, self.got = directory, in_start, go_on, got

    def on_start(self) -> None:
        self.directory.subscribe(Hello, "child")
        self.in_start.set()
        assert self.go_on.wait(10)  # a publish lands here, before on_start ends

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Hello):
            self.got.append(message.n)
        return None


def test_a_message_published_while_a_child_starts_reaches_it() -> None:
    directory = ActorDirectory()
    in_start, go_on = threading.Event(), threading.Event()
    got: list[int] = []
    spec = ChildSpec("child", lambda: _Child.start(directory, in_start, go_on, got))
    supervisor: list[Any] = []
    starting = threading.Thread(target=lambda: supervisor.append(Supervisor.start(
        [spec], directory, SupervisionConfig(), lambda _name: None)))
    starting.start()
    try:
        assert in_start.wait(10)
        # Known while its on_start runs (the old Supervisor set it only after): then a
        # publish reaches its inbox.
        wait_until(lambda: directory.ref("child") is not None, 10,
                   message="the child known during its on_start")
        directory.publish(Hello(1))  # the child is still in on_start
        go_on.set()
        starting.join(10)
        ref = directory.ref("child")
        assert ref is not None
        ref.ask(Hello(2), timeout=10)  # after the first in its inbox
        assert got == [1, 2]
    finally:
        go_on.set()
        starting.join(10)
        for ref in supervisor:  # this test's actors only (the Supervisor stops its child)
            ref.stop(timeout=10)
        child = directory.ref("child")
        if child is not None:
            child.stop(timeout=10)
