# Kranj ZA vse — the two front doors are `make run` and `make test` (CONTRACT.md).
# The virtual environment is created on first use and re-installed only when
# pyproject.toml changed since the last install.

VENV ?= .venv
PYTHON ?= python3.11
BIN := $(VENV)/bin
STAMP := $(VENV)/.kranj-installed
PYTEST_ARGS ?=

.PHONY: help venv run gateway-conf bench test test-future test-unit test-component test-integration test-e2e test-faults lint migrate clean distclean

help:
	@echo "make run               create/refresh $(VENV), migrate, start all four services (Ctrl-C stops them)"
	@echo "make test              the whole test suite (needs RabbitMQ and PostgreSQL)"
	@echo "make test-future       unit, component and integration tests with the clock a year ahead (faketime '+1 year')"
	@echo "make test-unit | test-component | test-integration | test-e2e"
	@echo "make test-faults       crashes, restarts and outages (own RabbitMQ node and PostgreSQL; docs/reliability.md)"
	@echo "make bench             the benchmark (README \"Benchmark\"; BENCH_ARGS=--quick for a short run), not part of make test"
	@echo "make lint              ruff check, the import layers (lint-imports), then mypy (pyproject.toml)"
	@echo "make migrate           kranj db upgrade"
	@echo "make gateway-conf      regenerate deploy/nginx/gateway.conf from the services' routes"
	@echo "make clean             caches and build leftovers (keeps $(VENV) and ./var)"
	@echo "make distclean         clean, and remove $(VENV) too"

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

run: venv
	$(BIN)/kranj up

test: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)

# The same tests a year from now: no test may depend on today's date (Debian's faketime
# moves the clock of pytest and of every process it starts; the broker and PostgreSQL keep
# the real one, as they would for a service whose clock is a little off).
test-future: venv
	@command -v faketime >/dev/null 2>&1 || { echo "make test-future needs faketime (apt-get install faketime)"; exit 2; }
	faketime '+1 year' $(BIN)/pytest -q tests/unit tests/component tests/integration $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

test-component: venv
	$(BIN)/pytest -q tests/component $(PYTEST_ARGS)

test-integration: venv
	$(BIN)/pytest -q tests/integration $(PYTEST_ARGS)

test-e2e: venv
	$(BIN)/pytest -q tests/e2e $(PYTEST_ARGS)

test-faults: venv
	$(BIN)/pytest -q -s tests/faults $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: venv
	$(BIN)/ruff check kranj shared services tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy -p shared -p kranj -p services

migrate: venv
	$(BIN)/kranj db upgrade

# The compose gateway's nginx config, generated from the services' own routes (kranj/routes.py).
gateway-conf: venv
	$(BIN)/kranj gateway --nginx > deploy/nginx/gateway.conf.new
	mv deploy/nginx/gateway.conf.new deploy/nginx/gateway.conf

clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info
	find . -path ./.venv -prune -o -path "./$(VENV)" -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
