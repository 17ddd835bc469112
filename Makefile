# The two commands a newcomer runs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Developers keep the shared fixtures beside the checkout; CI exports the variable itself.
ifneq ($(wildcard ../shared/models),)
export STORELENS_ASSETS ?= $(abspath ../shared)
endif

.PHONY: demo test lint install install-dev

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(VENV)/.installed-runtime: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install -q -e ".[edge,cloud]"
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install -q -e ".[edge,cloud,export,dev]"
	touch $@ $(VENV)/.installed-runtime

install: $(VENV)/.installed-runtime
install-dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/storelens demo

lint: install-dev
	$(BIN)/ruff check .

# One worker per core, at most 4 (tests also start brokers, servers and PostgreSQL pools).
# A module runs whole in one worker: its module-scoped fixtures (a fresh venv, a pcscd) are
# built once. Modules with slow tests go first (tests/conftest.py). `--dist loadgroup` would
# split modules finer, but pytest 9.2 ignores its xdist_group marks (pytest-xdist #1386).
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadscope --no-loadscope-reorder

test: install-dev lint
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)
