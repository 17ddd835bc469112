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

# Two workers (pytest-xdist, in the dev extra; CI has 2 cores), whole modules per worker, slow
# modules first (tests/conftest.py). Every test has its own node ID or collection stops: in
# CI on 2026-12-02 xdist reported 858 of 940 tests with no error, because schemathesis's 83
# items shared one ID. Serial: `make test PYTEST_PARALLEL=`.
PYTEST_PARALLEL ?= -n 2 --dist loadscope --no-loadscope-reorder

test: install-dev lint
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)
