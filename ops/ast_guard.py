"""One thread at a time in `ast.parse`: a workaround for CPython 3.11's AST converter.

In 3.11 the converter that `ast.parse` runs keeps its recursion depth in state shared by
the whole interpreter, reset at the start of every conversion; two threads converting
at once (or a finalizer parsing in the middle of a conversion) leave it off, and the
outer call fails with `SystemError: AST constructor recursion depth mismatch` (CPython
gh-106905). The stdlib formats every traceback through `ast.parse` (3.11's caret
anchors), so an exception logged on one thread while another thread formats one could
crash a logging call, or a pytest worker. Serialising `ast.parse` removes the race;
3.12 keeps the depth per call and needs nothing.
"""

from __future__ import annotations

import ast
import sys
import threading
from typing import Any

_lock = threading.RLock()  # re-entrant: a finalizer may parse while its thread parses


def install() -> None:
    """Wrap `ast.parse` once per process (every caller reaches it as `ast.parse`)."""
    if sys.version_info >= (3, 12) or getattr(ast.parse, "serialised", False):
        return
    original = ast.parse

    def parse(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return original(*args, **kwargs)

    parse.serialised = True  # type: ignore[attr-defined]
    parse.__doc__ = original.__doc__
    ast.parse = parse  # type: ignore[assignment]
