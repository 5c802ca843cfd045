# Two commands on a fresh machine:
#   make run    — the server on its embedded SQLite with the example project, a backfill running
#   make test   — lint, types, and the whole suite on SQLite and on PostgreSQL
# Both create .venv/ on first use: `make run` installs the runtime dependencies only,
# `make test` adds the development tools (pytest, ruff, mypy, Playwright, …) and
# Debian's Chromium for the browser tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 6789
HOST ?= 127.0.0.1
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=
CHROMIUM ?= /usr/bin/chromium
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-runtime chromium run test lint typecheck test-sqlite test-postgres test-e2e bench clean

$(RUNTIME_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install-runtime: $(RUNTIME_STAMP)

install: $(DEV_STAMP)

# The browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "the browser tests need Chromium at $(CHROMIUM): run 'sudo apt-get install chromium' (Debian/Ubuntu), then make test again" >&2; \
	    exit 1; \
	  fi; \
	fi

run: install-runtime
	$(BIN)/backfill serve --project examples/shop --host $(HOST) --port $(PORT) --backfill daily_sales,2024-01-01,2024-03-31

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: install
	$(BIN)/mypy

test-sqlite: install chromium
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	BACKFILL_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

test: lint typecheck test-sqlite test-postgres

test-e2e: install chromium
	$(BIN)/pytest -m e2e $(PYTEST_ARGS)

# Mutation check of the engine's correctness rules (not part of `make test`; minutes).
.PHONY: mutants
mutants: install
	$(BIN)/python scripts/mutants.py

bench: install
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/api.py

clean:
	rm -rf $(VENV) .backfill .pytest_cache .mypy_cache .ruff_cache
