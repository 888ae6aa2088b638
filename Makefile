# The README's two commands: `make run` (install and start) and `make test` (install and test);
# `make lint` runs the checks (settings in pyproject.toml).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes: most end-to-end tests wait on servers rather than compute, so more processes
# than cores pay off (4 on 2 cores: about 2.5 instead of 7 minutes). TEST_PROCESSES=0: one process.
TEST_PROCESSES ?= 4
# The Vercel AI SDK that tests/e2e/test_vercel_ai_sdk.py runs with node (skipped without npm).
SDK_CHECK := tests/e2e/vercel_ai

.PHONY: run test lint bench clean

run: $(VENV)/.runtime
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

test: $(VENV)/.dev $(SDK_CHECK)/node_modules/.installed
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist worksteal $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check
	$(BIN)/mypy

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

$(SDK_CHECK)/node_modules/.installed: $(SDK_CHECK)/package.json $(SDK_CHECK)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(SDK_CHECK) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the Vercel AI SDK test will be skipped"; fi

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(SDK_CHECK)/node_modules
