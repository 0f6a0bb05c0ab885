"""The asyncio loop thread ib_insync runs on, and the bridge to it from the actor.

ib_insync needs a running asyncio loop in the thread that uses it, and IB events must be
handled while the actor waits for other things, so the IB object lives on this thread.
The actor submits work with `run_coroutine_threadsafe` and waits with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from trading.refusals import Refusal


class BrokerCallError(RuntimeError):
    """A request to the gateway failed or timed out; the message says which."""


class IbRefusedError(BrokerCallError):
    """The gateway refused the request with an IB code: `refusal` names it (code, IB's
    text, meaning, fix; trading/refusals.py)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal


class NotConnected(BrokerCallError):
    """Refused before anything was sent: no connection to the gateway (an order
    refused so is known not to exist, unlike one whose answer timed out)."""


class PendingCall:
    """A call running on the loop; .result() waits for its answer (or its error) within
    the call's deadline, from any thread, as often as asked."""

    def __init__(self, fut: Future[Any], timeout: float) -> None:
        self._fut = fut
        self.timeout = timeout

    def result(self) -> Any:
        try:
            return self._fut.result(self.timeout + 1.0)
        except TimeoutError as exc:
            self._fut.cancel()
            raise BrokerCallError(f"gateway did not answer within {self.timeout:.1f}s") from exc
        except BrokerCallError:
            raise
        except ConnectionError as exc:
            raise BrokerCallError(f"connection lost: {exc}") from exc


class LoopThread:
    """One event loop on its own daemon thread, from start to close."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ib-loop", daemon=True)
        self._main_task: Future[Any] | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def start(self, main: Coroutine[Any, Any, Any]) -> None:
        """Start the thread and run `main` (the connection's lifetime) on it."""
        self._thread.start()
        self._main_task = asyncio.run_coroutine_threadsafe(main, self.loop)

    def call(
        self, fn: Callable[[], Any], timeout: float, connected: Callable[[], bool]
    ) -> Any:
        """Run `fn` on the loop (awaiting it if it returns an awaitable), with a deadline;
        BrokerCallError when not `connected`, on timeout or on a lost connection."""
        return self.submit(fn, timeout, connected).result()

    def submit(
        self, fn: Callable[[], Any], timeout: float, connected: Callable[[], bool]
    ) -> PendingCall:
        """As `call`, but not waited for: the answer is read later with .result()."""

        async def invoke() -> Any:
            if not connected():
                raise NotConnected("not connected to the gateway")
            result = fn()
            if isinstance(result, Awaitable):
                result = await result
            return result

        inner = invoke()
        call = asyncio.wait_for(inner, timeout)
        try:
            fut = asyncio.run_coroutine_threadsafe(call, self.loop)
        except RuntimeError as exc:  # the loop closed: its Connection stopped
            call.close()
            inner.close()
            raise NotConnected(f"not connected to the gateway ({exc})") from exc
        return PendingCall(fut, timeout)

    def close(self, disconnect: Callable[[], None], wait: float = 5.0) -> None:
        """Run `disconnect`, cancel every task and repeat until none is left, then stop
        the loop (from the actor thread, waiting up to `wait` s). The loop is never
        stopped with work pending: a task stopped mid-connect could hold its socket
        open for good. When the wait is over first, the loop finishes on its own."""

        async def shutdown() -> None:
            me = asyncio.current_task()
            for _ in range(60):  # each round waits up to 0.5 s for its cancels
                disconnect()
                tasks = [t for t in asyncio.all_tasks() if t is not me]
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                await asyncio.wait(tasks, timeout=0.5)
            disconnect()  # a socket that opened while the tasks were ending

        if not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.loop.close()
            return
        if self._main_task is not None:
            self._main_task.cancel()
        done = asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        done.add_done_callback(lambda _: self.loop.call_soon_threadsafe(self.loop.stop))
        self._thread.join(timeout=wait)
