"""The layout's rules, read from the imports (README "Layout"): each folder has one job
and may import only what its job needs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOT = ("actors", "trading", "book", "wire", "alerts", "config", "ops", "web")
# What each folder may import of the project's own folders.
ALLOWED = {
    "trading": {"trading", "config"},  # config: the typed dataclasses (no loading)
    "book": {"book", "trading"},
    "config": {"config"},
    "wire": {"wire", "config", "ops"},
    "alerts": {"alerts", "config", "ops", "book", "trading"},
    "ops": {"ops", "config", "wire", "trading"},
    "web": {"web", "wire", "config", "ops"},
    "actors": set(BOT) - {"web"},
}
# No I/O in the pure domain: these libraries stay out of trading/.
IO_MODULES = {"sqlite3", "socket", "zmq", "urllib", "http", "ib_insync", "pykka", "flask",
              "msgpack", "subprocess", "requests", "asyncio", "loguru"}  # a Lock is no I/O


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_each_folder_imports_only_what_it_may() -> None:
    bad = []  # ibsim's own rule (it imports nothing of ours): tests/ibsim/test_independence.py
    for folder, allowed in ALLOWED.items():
        for f in files(folder):
            for mod in imports(f):
                top = mod.split(".")[0]
                if top in (*BOT, "ibsim") and top not in allowed:
                    bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    assert bad == []


def test_trading_does_no_io() -> None:
    bad = [f"{f.relative_to(ROOT)} imports {m}" for f in files("trading")
           for m in imports(f) if m.split(".")[0] in IO_MODULES]
    assert bad == []


def test_only_the_connection_actor_imports_ib_insync() -> None:
    users = sorted(str(f.relative_to(ROOT)) for folder in BOT for f in files(folder)
                   if any(m.split(".")[0] == "ib_insync" for m in imports(f)))
    # ops/doctor.py is the preflight (issue 30): its own process and client id, before
    # or beside the engine; inside the engine only Connection touches ib_insync.
    assert users and all(u.startswith("actors/connection/") or u == "ops/doctor.py"
                         for u in users), users
