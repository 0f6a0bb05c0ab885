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


# The long tests (marked `slow` or `chaos`, each with its reason and rough `seconds`) start
# first, longest first, each followed by a short one: `make test` runs xdist with
# `--maxschedchunk 2`, so a worker is handed two tests at a time and no worker starts with
# two long ones, and no two-minute soak is left to run alone at the end.
_LONG_MARKERS = {"chaos": 120.0, "slow": 30.0}


def _expected_seconds(item: pytest.Item) -> float:
    for name, default in _LONG_MARKERS.items():
        mark = item.get_closest_marker(name)
        if mark is not None:
            return float(mark.kwargs.get("seconds", default))
    return 0.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    long = sorted((i for i in items if _expected_seconds(i)), key=_expected_seconds,
                  reverse=True)
    short = [i for i in items if not _expected_seconds(i)]
    ordered: list[pytest.Item] = []
    for item in long:
        ordered.append(item)
        if short:
            ordered.append(short.pop(0))
    items[:] = ordered + short
