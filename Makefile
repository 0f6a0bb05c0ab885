# trading-bot: every target creates the venv it needs on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= $(CURDIR)/run

# Test workers: most tests wait on sockets and deadlines (the suite keeps two cores
# about 40 % busy at -n 6), so more workers than cores shorten the run.
TEST_WORKERS ?= 6

SEED ?= 1
DAYS ?= 20
QUANTITY ?= 1

.PHONY: venv test lint demo stop clean browser soak bench bench-readme doctor

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Debian's chromium for the dashboard's browser test (skipped if apt is unavailable).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	      || echo "warning: could not install chromium; the browser test will be skipped"; \
	  fi; }

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS) --maxschedchunk 2 -q

# The long chaos soak: prints the report (seed, faults, kills, checks, violations).
soak: $(STAMP)
	$(BIN)/python -m tests.chaos.soak --seed $(SEED) --days $(DAYS) --quantity $(QUANTITY)

# The benchmarks (bench/): each prints a table and a BENCH_JSON line, under 2 min each.
BENCHES ?= outage exits entry dashboard ticks fills memory
BENCH_RESULTS ?= bench/results/latest.jsonl
bench: $(STAMP)
	@n=0; total=$$(echo $(BENCHES) | wc -w); for b in $(BENCHES); do n=$$((n+1)); \
	  echo "bench $$n/$$total: bench.$$b (started $$(date -u +%H:%M:%S) UTC)"; \
	  BENCH_RESULTS=$(BENCH_RESULTS) $(BIN)/python -m bench.$$b || exit 1; done; \
	  $(BIN)/python -m bench.readme --results $(BENCH_RESULTS)

# The README's performance table from the results file: each bench's latest run, dated
# (`make bench BENCHES=exits` replaces the exits rows only).
bench-readme: $(STAMP)
	$(BIN)/python -m bench.readme --results $(BENCH_RESULTS)

# The preflight before a first sale (README "First contact"): CONFIG=path, as the engine.
doctor: $(STAMP)
	$(BIN)/python -m ops.doctor $(if $(CONFIG),--config $(CONFIG),)

demo: $(STAMP)
	bash scripts/demo.sh

stop:
	bash scripts/demo.sh stop

clean:
	rm -rf $(VENV) run .pytest_cache .ruff_cache
