# Meadowlark developer commands. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-unit test-integration bench lint typecheck layers check format models console postgres clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,dev]"
	@# python-coiote pins old requests/typing_extensions; its real needs are in the test extra
	$(BIN)/pip install -q --no-deps "python-coiote==2.15.1"
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the server, test and dev dependencies

run: $(STAMP) ## Start the server on embedded defaults (SQLite in ./meadowlark-data, REST 127.0.0.1:8087, CoAP :5683)
	$(BIN)/meadowlark serve

# Tests run in TEST_WORKERS processes (pytest-xdist). Many tests wait on sockets, timers and
# spawned servers, so three workers beat two even on two cores. Each test file stays on one
# worker (loadfile): its module-scoped servers and databases start once and its tests keep
# their order. Files are handed out in collection order, the long end-to-end files first and
# the many short unit files last, so no worker is left with a long file at the end.
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP) ## Run the whole test suite (PostgreSQL too when MEADOWLARK_TEST_POSTGRES_URL is set)
	$(PYTEST) tests

test-unit: $(STAMP) ## Run only the unit tests
	$(PYTEST) tests/unit -q

test-integration: $(STAMP) ## Run the integration and end-to-end tests
	$(PYTEST) tests/integration tests/e2e -q

bench: $(STAMP) ## Run the benchmarks; figures are ratios against a baseline measured in the same run
	$(BIN)/python -m bench

lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

typecheck: $(STAMP) ## mypy: strict for lwm2m/, server/, coap/ and auth/, default for the rest
	$(BIN)/mypy

layers: $(STAMP) ## Check the import-layer contracts of pyproject.toml (import-linter) on ./src
	PYTHONPATH=src $(BIN)/lint-imports

check: lint typecheck layers ## All the code checks CI runs besides the tests (`make -k check` runs each)

format: $(STAMP) ## Format the code
	$(BIN)/ruff format src tests bench scripts

models: $(STAMP) ## Regenerate the built-in LwM2M object catalog from ../shared/reference/lwm2m-registry
	$(BIN)/python scripts/generate_builtin_models.py ../shared/reference/lwm2m-registry

console: ## Rebuild the web console (console/, Vite + Preact) into src/meadowlark/api/static/console; needs Node.js
	cd console && npm ci --no-audit --no-fund && npm run build

postgres: ## Install (Debian) and start a local PostgreSQL for the tests; prints the URL to export
	@bash scripts/local-postgres.sh

clean: ## Remove the virtualenv and caches (keeps ./meadowlark-data)
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache build src/*.egg-info
