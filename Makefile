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
PGBOUNCER ?= /usr/sbin/pgbouncer
SOCAT ?= /usr/bin/socat
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-runtime chromium pgbouncer socat run test lint typecheck test-sqlite test-postgres test-e2e bench clean

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

# $(call debian_package,PATH,PACKAGE,NAME,TESTS): Debian's PACKAGE, installed with apt-get
# when PATH is missing and make runs as root; otherwise a one-line message saying how.
define debian_package
@if [ ! -x $(1) ]; then \
  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
    echo "installing Debian's $(2) for $(4) (apt-get)"; \
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
  else \
    echo "$(4) need $(3) at $(1): run 'sudo apt-get install $(2)' (Debian/Ubuntu), then make test again" >&2; \
    exit 1; \
  fi; \
fi
endef

# The browser tests drive Debian's Chromium (never a downloaded browser).
chromium:
	$(call debian_package,$(CHROMIUM),chromium,Chromium,the browser tests)

# tests/deploy runs the engine through a real PgBouncer in transaction-pooling mode.
pgbouncer:
	$(call debian_package,$(PGBOUNCER),pgbouncer,PgBouncer,the PgBouncer tests)

# tests/multihost forwards the PostgreSQL port into network namespaces with socat.
socat:
	$(call debian_package,$(SOCAT),socat,socat,the multi-host tests)

run: install-runtime
	$(BIN)/backfill serve --project examples/shop --host $(HOST) --port $(PORT) --backfill daily_sales,2024-01-01,2024-03-31

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: install
	$(BIN)/mypy

# tests/deploy and tests/multihost always use PostgreSQL (PG_TEST_URL's server): the PostgreSQL pass runs them.
test-sqlite: install chromium
	$(BIN)/pytest --ignore=tests/deploy --ignore=tests/multihost $(PYTEST_ARGS)

# The same suite on PostgreSQL, the browser tests included (their servers use it too).
test-postgres: install chromium pgbouncer socat
	BACKFILL_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS)

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
