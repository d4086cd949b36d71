# The README's commands. Each creates .venv from the pinned requirements when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Root installs packages itself; anyone else through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test check bench faults clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The project itself goes in editable, for the `offload` command (.venv/bin/offload).
$(VENV)/.runtime: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@ $(VENV)/.runtime

## run: start the emulator, web and worker on loopback (Ctrl-C stops all three)
run: $(VENV)/.runtime
	$(BIN)/python -m offload.cli run

## test: lint, type-check, then run every test (needs PostgreSQL at 127.0.0.1:5432 for the store tests)
test: check chromium
	$(BIN)/python -m pytest

## chromium: Debian's browser, which the console's tests drive (installed when missing)
chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

## check: ruff and mypy strict
check: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## bench: benchmarks against real processes on loopback (never part of test)
bench: $(VENV)/.dev
	$(BIN)/python -m bench

## faults: the fault suite on loopback (kills, outages, terminated connections, load), bounded
faults: $(VENV)/.dev
	$(BIN)/python -m bench.faults

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
