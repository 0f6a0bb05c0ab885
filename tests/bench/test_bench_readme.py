"""The README's performance table is written from the benches' own output (issue 34):
each result line becomes rows with its goal, whether met, what limited it and its date;
bad input names itself and leaves the README as it was."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import Row, report
from bench.readme import BEGIN, END, main

README = f"# x\n\n## Performance\n\nintro\n\n{BEGIN}\nold table\n{END}\n\nafter\n"


def _results(tmp_path: Path, monkeypatch, capsys) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "results" / "latest.jsonl"
    monkeypatch.setenv("BENCH_RESULTS", str(path))
    report("exits", [
        Row("baseline order round trip p99", 17.4, "ms"),
        Row("fill -> both exits acked p50", 18.3, "ms"),
        Row("fill -> both exits acked p99", 30.9, "ms", "<= 20 ms", False, limit="measured"),
        Row("p99 / baseline p99", 1.77, "x", "<= 1.5x", False, limit="measured"),
        Row("entries measured", 100, "count"),
    ])
    report("memory", [Row("RSS peak", 124.0, "MB", "<= 150 MB", True, limit="measured")])
    capsys.readouterr()
    return path


def test_table_is_written_from_the_results_between_the_markers(
        tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    results = _results(tmp_path, monkeypatch, capsys)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert main(["--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith(f"{END}\n\nafter\n")
    table = text[text.index(BEGIN):text.index(END)]
    assert "CPUs" in table and "Python" in table  # the machine is named
    row = next(ln for ln in table.splitlines() if "p99 / baseline p99" in ln)
    assert "1.77x" in row and "<= 1.5x" in row and "**no**" in row and "measured" in row
    assert any("RSS peak" in ln and "yes" in ln for ln in table.splitlines())
    # A phase without a goal, and a count, stay in the bench's own output.
    assert "acked p50" not in table and "entries measured" not in table
    # Run again with a newer exits result: its rows replace the old ones, memory stays.
    monkeypatch.setenv("BENCH_RESULTS", str(results))
    report("exits", [Row("p99 / baseline p99", 1.2, "x", "<= 1.5x", True, limit="measured")])
    assert main(["--results", str(results), "--readme", str(readme)]) == 0
    table = readme.read_text()
    assert "1.20x" in table and "1.77x" not in table and "RSS peak" in table


def test_bad_input_names_itself_and_changes_nothing(
        tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    results = _results(tmp_path, monkeypatch, capsys)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    assert main(["--results", str(results), "--readme", str(readme)]) == 2
    assert "no table markers" in capsys.readouterr().err
    assert readme.read_text() == "# no markers here\n"

    readme.write_text(README)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"bench": "x", "figures": {}}) + "\n{not json\n")
    assert main(["--results", str(bad), "--readme", str(readme)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err
    assert main(["--results", str(tmp_path / "none.jsonl"), "--readme", str(readme)]) == 2
    assert "no results file" in capsys.readouterr().err
    assert readme.read_text() == README
