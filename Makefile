# Two commands on a fresh machine:
#   make run    — the server on its embedded SQLite with the example project, a backfill running
#   make test   — lint, types, and the whole suite on SQLite and on PostgreSQL
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck test-sqlite test-postgres test-e2e bench clean

$(BIN)/backfill: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/backfill

install: $(BIN)/backfill

run: install
	$(BIN)/backfill serve --project examples/shop --backfill daily_sales,2024-01-01,2024-03-31

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: install
	$(BIN)/mypy

test-sqlite: install
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: install
	BACKFILL_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -m "not e2e" $(PYTEST_ARGS)

test: lint typecheck test-sqlite test-postgres

test-e2e: install
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
