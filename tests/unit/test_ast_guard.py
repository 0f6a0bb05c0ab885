"""ops/ast_guard.py: ast.parse is serialised across threads (CPython 3.11 workaround)."""

from __future__ import annotations

import ast
import sys
import threading

import pytest

from ops import ast_guard
from tests.support.zmq_request import wait_until


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="3.12 needs no guard")
def test_a_second_thread_waits_while_one_parses() -> None:
    ast_guard.install()
    ast_guard.install()  # once per process, however often asked
    assert getattr(ast.parse, "serialised", False)
    done = threading.Event()

    def parse_elsewhere() -> None:
        ast.parse("x = 1")
        done.set()

    with ast_guard._lock:  # as if this thread were converting an AST
        worker = threading.Thread(target=parse_elsewhere, daemon=True)
        worker.start()
        assert not done.wait(0.3)  # an absence: the other thread may not enter meanwhile
        assert isinstance(ast.parse("y = 2"), ast.Module)  # the same thread may (finalizers)
    wait_until(done.is_set, 10, message="the other thread parsed once the lock was free")
