# rlhf-studio: `make run` starts the platform, `make test` runs the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

LOCK := requirements.lock

.PHONY: install lock run test lint services chromium worker-gpu clean

# Every machine installs the exact versions (and files: hashes) of requirements.lock; the project itself
# goes in editable without its dependencies, built with the locked setuptools.
$(STAMP): $(LOCK) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

## lock: resolve pyproject.toml (+ dev) into requirements.lock; pins already there are kept unless
## LOCK_ARGS says otherwise: LOCK_ARGS=--upgrade (everything), LOCK_ARGS='--upgrade-package transformers'
LOCK_ARGS ?=
lock: install
	$(VENV)/bin/pip-compile --quiet --generate-hashes --extra dev --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) --output-file $(LOCK) pyproject.toml
	$(MAKE) install

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

## test: install, install or start PostgreSQL/Redis if missing or down, lint, then the whole pytest suite
test: install services chromium lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache
