"""Issue 13: ibsim is IB's side and imports nothing from the bot (actors/, web/, ...)."""

from __future__ import annotations

import ast
from datetime import date, time
from pathlib import Path

from ibsim import calendar

IBSIM = Path(__file__).resolve().parents[2] / "ibsim"
BOT_PACKAGES = {"actors", "web", "trading", "book", "wire", "engine", "strategy", "app"}


def test_ibsim_imports_nothing_from_the_bot() -> None:
    offenders = []
    for path in sorted(IBSIM.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):  # imports inside functions count too
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in BOT_PACKAGES]
    assert offenders == []


def test_calendar_has_real_closes_and_follows_the_clock() -> None:
    assert calendar.close_time(date(2026, 11, 27)) == time(13, 0)  # day after Thanksgiving
    assert calendar.close_time(date(2026, 11, 24)) == time(16, 0)
    assert not calendar.is_session(date(2026, 11, 26))  # Thanksgiving
    assert calendar.close_time(date(2026, 12, 24)) == time(13, 0)  # Christmas Eve
    # Far past any fixed range: Christmas 2041 is a holiday, the 26th (Thursday) a session.
    assert not calendar.is_session(date(2041, 12, 25))
    assert calendar.is_session(date(2041, 12, 26))
    assert calendar.next_session(date(2026, 11, 25)) == date(2026, 11, 27)


def _ibsim_imports() -> dict[str, set[str]]:
    """ibsim's modules and the ibsim modules each imports (TYPE_CHECKING ones too)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(IBSIM.glob("*.py")):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "ibsim":
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ibsim."):
                deps.add(node.module.split(".")[1])  # type: ignore[union-attr]
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("ibsim.")}
        graph[path.stem] = deps - {path.stem}
    return graph


def test_ibsim_has_no_import_circle() -> None:
    """Issue 31: the request handlers take the gateway's parts (ibsim/parts.py), not the
    Gateway class: no module below the gateway imports ibsim.server, and no loop."""
    graph = _ibsim_imports()
    above = {"server", "control", "app", "harness", "__main__"}
    assert sorted(m for m, deps in graph.items() if "server" in deps and m not in above) == []
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> None:
        if mod in path:
            raise AssertionError("import circle: " + " -> ".join([*path, mod]))
        if mod in done or mod not in graph:
            return
        for dep in sorted(graph[mod]):
            visit(dep, [*path, mod])
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, [])
