# Every target creates or reuses the virtual environment in .venv; `make test` first runs
# tests/setup_env.sh, which installs the Debian packages the suite needs (or names them).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo setup test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/mcu-gateway demo

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

setup:
	@PYTHON=$(PYTHON) $(SHELL) tests/setup_env.sh

# In this order even under make -j: nothing is built before the set-up step passed.
test: setup
	@$(MAKE) --no-print-directory lint
	$(BIN)/python -m simulators.mcu.native  # the C and QEMU builds, before any sim waits on them
	$(BIN)/pytest

bench: $(VENV)/.installed
	$(BIN)/python -m bench.flash_throughput

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
