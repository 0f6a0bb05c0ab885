"""Suite-wide fixtures."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ops import ast_guard

# Tests run engines in this process: their threads format tracebacks while pytest parses
# (assertion rewriting, failure reports). See ops/ast_guard.py.
ast_guard.install()


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests() -> Iterator[None]:
    """Run the cyclic GC after each test, at a quiet moment.

    CPython 3.11.7 raises `SystemError: AST constructor recursion depth mismatch` when a
    finalizer (an ib_insync IB's `__del__`, an abandoned coroutine) runs while `compile`
    builds an AST (CPython gh-106905, fixed in later releases). The engine tests leave
    such objects behind (restarted Connection actors); collected here, they cannot be
    collected in the middle of pytest's assertion rewriting or traceback formatting,
    which would crash the worker (INTERNALERROR) instead of reporting a result.
    """
    yield
    gc.collect()


# The longest tests (chaos, slow) go first: xdist hands tests out in collection order, so
# a two-minute soak started last would run alone at the end while the other workers idle.
_LONG_MARKERS = ("chaos", "slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in _LONG_MARKERS))
