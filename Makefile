# Headwater: two commands. `make up` sets up and starts the local stack; `make test` runs
# the checks and the tests. Everything is installed by the project's own files and
# cached after the first run (.venv, .venv-llm, .cache/).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.headwater-installed

.PHONY: help setup tools up down status test test-unit lint clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> Headwater virtualenv ($(VENV))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --progress-bar on -e '.[dev]'
	@touch $@

# schemathesis fuzzes our OpenAPI document from a virtualenv of its own (its pins clash
# with the app's); tests/e2e/test_openapi_conformance.py runs it.
ST_VENV := .venv-schemathesis
ST_STAMP := $(ST_VENV)/.installed-4.32.5

$(ST_STAMP):
	@echo "==> schemathesis virtualenv ($(ST_VENV))"
	$(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/pip install --quiet schemathesis==4.32.5
	@touch $@

setup: $(STAMP) $(ST_STAMP) tools  ## Install everything: virtualenvs, Kafka jars, the LLM (cached).
	@echo "==> Kafka jars"
	deploy/kafka/kafka.sh fetch
	@echo "==> LLM server virtualenv and model"
	deploy/llm/setup.sh

DEBIAN_TOOLS := kcat promtool chromium chromedriver redis-server
DEBIAN_PACKAGES := kcat prometheus chromium chromium-driver redis-server

tools:  ## Debian tools the tests use: kcat (a producer not ours), promtool (Prometheus configs), chromium + chromedriver (console tests), redis-server (budgets).
	@missing=""; for tool in $(DEBIAN_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES) >/dev/null; }; \
	  else echo "missing Debian packages: run 'sudo apt-get install $(DEBIAN_PACKAGES)'" >&2; exit 1; fi; \
	fi

up: setup  ## Set up, start Kafka + vLLM + Headwater in the background, wait until healthy.
	$(BIN)/headwater up

down:  ## Stop the local stack; leaves no process behind.
	@if [ -x $(BIN)/headwater ]; then $(BIN)/headwater down; else echo "nothing to stop"; fi

status:  ## Show which parts of the local stack run.
	$(BIN)/headwater status

lint: $(STAMP)  ## ruff (lint + format check) and mypy --strict.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint  ## Lint, then unit, integration and e2e tests on the real components.
	$(BIN)/pytest

test-unit: $(STAMP)  ## Unit tests only (seconds, no processes).
	$(BIN)/pytest tests/unit

clean: down  ## Remove local state (.data, .run); keeps the caches and virtualenvs.
	rm -rf .data .run
