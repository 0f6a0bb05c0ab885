"""The README's performance table, written from `make bench`'s own output: each bench
appends its BENCH_JSON object to the results file (`BENCH_RESULTS`), and this script
replaces the table between the README's two markers with those figures, their goals,
what limited each and the machine they were measured on. Nothing in the table is typed
by hand, so it never says more than a run showed.

    python -m bench.readme [--results bench/results/latest.jsonl] [--readme README.md]

A results file with no bench in it, or a README without both markers, is an error that
names the file and leaves the README as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.jsonl"
BEGIN = "<!-- bench-table:begin (written by `make bench`: python -m bench.readme) -->"
END = "<!-- bench-table:end -->"


class ReadmeError(Exception):
    """Input the table cannot be written from; the README is left as it was."""


@dataclass(frozen=True)
class BenchResult:
    bench: str
    figures: dict[str, float]
    goals_met: dict[str, bool]
    limited_by: dict[str, str]
    notes: list[str]
    machine: dict[str, Any]
    units: dict[str, str]
    goals: dict[str, str]
    at: str


def load_results(path: Path) -> list[BenchResult]:
    """The latest object per bench, in the order first seen; bad lines name their line."""
    if not path.exists():
        raise ReadmeError(f"{path}: no results file (run `make bench` first)")
    latest: dict[str, BenchResult] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            result = BenchResult(
                bench=str(obj["bench"]), figures=dict(obj["figures"]),
                goals_met=dict(obj.get("goals_met", {})),
                limited_by=dict(obj.get("limited_by", {})), notes=list(obj.get("notes", [])),
                machine=dict(obj.get("machine", {})), units=dict(obj.get("units", {})),
                goals=dict(obj.get("goals", {})), at=str(obj.get("at", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ReadmeError(f"{path}:{n}: not a BENCH_JSON object ({exc})") from exc
        latest[result.bench] = result
    if not latest:
        raise ReadmeError(f"{path}: no bench results in it")
    return list(latest.values())


def _value(v: float, unit: str) -> str:
    if unit == "x":
        return f"{v:.2f}x"
    if unit == "count" or unit == "":
        return f"{v:,.0f}"
    if abs(v) >= 1000:
        return f"{v:,.0f} {unit}"
    return f"{v:.1f} {unit}" if unit in ("ms", "MB", "%", "s") else f"{v:.3g} {unit}"


def _shown(r: BenchResult, figure: str) -> bool:
    """Goals, ratios and baselines: the figures a reader compares; phases and counts
    stay in the bench's own output."""
    low = figure.lower()
    return (figure in r.goals_met or r.units.get(figure) == "x" or "baseline" in low
            or "bare" in low or " / " in figure)


def render_table(results: list[BenchResult]) -> str:
    """The markdown between the markers: a line naming the run, then one row a figure."""
    machines = {json.dumps(r.machine, sort_keys=True) for r in results}
    first = results[0].machine
    m = (f"{first.get('cpus')} CPUs, {first.get('cpu') or 'cpu unknown'}, "
         f"Python {first.get('python')}, host {first.get('host')}")
    dates = sorted({r.at[:10] for r in results if r.at})
    when = " to ".join(dict.fromkeys([dates[0], dates[-1]])) if dates else "undated"
    lines = [
        f"Measured by `make bench` on {when}, on {m}"
        + (" (benches ran on different machines: see each row)" if len(machines) > 1 else "")
        + ". Every ratio is against a baseline measured in the same run; the machine is "
        "shared, so ratios say more than absolute figures.",
        "",
        "| script | figure | result | goal | met | limited by |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        shown = [f for f in r.figures if _shown(r, f)]
        for i, fig in enumerate(shown):
            met = r.goals_met.get(fig)
            script = f"`{r.bench}` ({r.at[:10] or 'undated'})" if i == 0 else ""
            lines.append("| {} | {} | {} | {} | {} | {} |".format(
                script, fig.strip().replace("|", "/"),
                _value(r.figures[fig], r.units.get(fig, "")), r.goals.get(fig, ""),
                "" if met is None else ("yes" if met else "**no**"),
                r.limited_by.get(fig, "")))
    return "\n".join(lines)


def replace_table(readme: str, table: str) -> str:
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < 0 or end < start:
        raise ReadmeError(f"README has no table markers ({BEGIN} ... {END})")
    return readme[: start + len(BEGIN)] + "\n" + table + "\n" + readme[end:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.readme")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    try:
        results = load_results(args.results)
        text = args.readme.read_text()
        new = replace_table(text, render_table(results))
    except (ReadmeError, OSError) as exc:
        print(f"bench.readme: {exc}; README not changed", file=sys.stderr)
        return 2
    args.readme.write_text(new)
    print(f"bench.readme: {args.readme} table written from {args.results} "
          f"({', '.join(r.bench for r in results)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
