"""Benchmarks: one script per figure, `python -m bench.NAME` or `make bench`.

Each prints a table and one `BENCH_JSON {...}` line, and measures a baseline in the
same run, so a noisy machine shows in both. Figures are goals, not test assertions.
"""
