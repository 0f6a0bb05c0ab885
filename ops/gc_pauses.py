"""Shorter pauses of CPython's cyclic collector in the engine process.

A full collection walks every tracked object. Most of the engine's are built once at
start and live for good (modules, the NYSE calendar's pandas tables, config, actors):
bench.exits saw full collections of 17-36 ms land in the middle of an exit pair's
path, each a p99 by itself. Frozen once the engine has started (gc.freeze), those
objects are left out of every later collection; what is built afterwards (trades,
fills, quotes) is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect what start-up left behind, then freeze the rest; returns how many
    objects are now frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
