# The two commands of the README: `make run` and `make test`. Both create .venv when it is
# missing and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
BASE_STAMP := $(VENV)/.installed-base
DEV_STAMP := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help run test lint proto bench faults clean node-deps

help:
	@echo "make run    - run the example mesh (embedded NATS; nothing else needed)"
	@echo "make test   - run the whole test suite"
	@echo "make lint   - buf lint on the contracts, ruff, mypy and the import contracts on the code"
	@echo "make proto  - regenerate mesh/v1 and the modules' code from the .proto files"
	@echo "make bench  - run the benchmarks, compare with the recorded figures, record them in docs/benchmarks.md"
	@echo "make faults - inject faults into the example mesh under load (figures for docs/reliability.md)"
	@echo "make clean  - remove the venv, .mesh/ (all state, the CA too), node_modules and caches;"
	@echo "              .venv/bin/mesh reset removes only a stopped mesh's state and keeps the venv and the CA"

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Module Mesh needs Python 3.11 or newer; found " + sys.version.split()[0] + ". Run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(BASE_STAMP) $@

# The Node.js module's dependencies, when node is there (its tests are skipped otherwise),
# installed again whenever package.json is newer than the last install.
NODE_MODULE := modules/audit
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		test $(NODE_MODULE)/node_modules/.installed -nt $(NODE_MODULE)/package.json || \
		(cd $(NODE_MODULE) && npm install --no-audit --no-fund --no-package-lock --loglevel=error && touch node_modules/.installed); \
	else echo "node/npm not found: the Node.js module ($(NODE_MODULE)) will not run and its tests are skipped"; fi

run: $(BASE_STAMP) node-deps
	$(BIN)/mesh up --modules modules

test: $(DEV_STAMP) node-deps
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(BIN)/buf lint
	$(BIN)/ruff check mesh sdk modules tests bench
	$(BIN)/ruff format --check mesh sdk modules tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

proto: $(DEV_STAMP)
	$(PY) -m mesh.protogen

bench: $(DEV_STAMP)
	$(PY) -m bench

faults: $(DEV_STAMP) node-deps
	$(PY) -m bench.faults

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mesh $(NODE_MODULE)/node_modules
