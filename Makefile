# Suara: `make run` brings everything up on this machine; `make test` proves it. `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_LINK_MODE := copy

.PHONY: help install lock run test lint fmt clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv>=0.9,<1'

$(VENV)/.installed: $(UV) pyproject.toml uv.lock shared/pyproject.toml services/*/pyproject.toml devstack/pyproject.toml
	$(UV) sync --locked --all-packages --python $(BIN)/python
	@touch $@

install: $(VENV)/.installed ## Create .venv and install every package (uv workspace)

lock: $(UV) ## Update uv.lock after changing a pyproject.toml
	$(UV) lock --python $(BIN)/python

run: install ## Start broker, database, the four services and the sandbox; Ctrl-C stops them all
	@exec $(BIN)/suara-dev run

test: install ## Unit, integration and end-to-end tests against the real embedded broker and database
	$(BIN)/pytest

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/suara_shared services/*/suara_* devstack/suara_devstack

fmt: install ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove .venv and local data (var/)
	rm -rf $(VENV) var test-artifacts
