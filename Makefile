# rlhf-studio: `make run` starts the platform, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint services chromium worker-gpu clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## run: install, migrate, seed the demo, then web + worker + beat (Ctrl-C stops all)
run: install
	$(PY) scripts/run_local.py

services:
	@bash scripts/ensure_services.sh

chromium:
	@bash scripts/ensure_chromium.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

## test: install, start PostgreSQL/Redis if down, lint, then the whole pytest suite
test: install services chromium lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
