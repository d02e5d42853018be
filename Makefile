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

.PHONY: help install lock run test bench chaos lint fmt clean browser

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

test: install tools browser ## Unit, integration and end-to-end tests against the real embedded broker and database
	$(BIN)/pytest

# The browser tests drive Debian's Chromium through Playwright; nothing is downloaded outside the package registries.
browser: ## Debian's Chromium for tests/browser (apt-get, as root, when /usr/bin/chromium is missing)
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get update && apt-get install -y chromium; } || \
		{ echo "tests/browser need /usr/bin/chromium: run as root, or apt-get install chromium" >&2; exit 1; }

bench: install ## Load the embedded stack with signed webhooks; prints the table, writes bench-results/*.json and *.png
	$(BIN)/suara-dev bench $(BENCH_ARGS)

chaos: install ## Fault injection on an own stack (kill -9, frozen broker, stopped database, Graph 5xx/429, duplicate webhooks); writes bench-results/chaos-*.json
	$(BIN)/suara-dev chaos $(CHAOS_ARGS)

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/suara_shared services/*/suara_* devstack/suara_devstack

fmt: install ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## Remove .venv and local data (var/)
	rm -rf $(VENV) $(TOOLS_VENV) var test-artifacts

# --- Cluster: images and the tools that check deploy/ ---------------------------------------------------------
.PHONY: images tools
SERVICES := ticketing ingest-wa ingest-social notifier
IMAGE_PREFIX ?=
IMAGE_TAG ?= 0.1.0
TOOLS_VENV := .venv-tools
# checkov pins much of what it needs: it lives in its own environment, never in the workspace's lock.
CHECKOV_VERSION := 3.3.30

$(TOOLS_VENV)/.installed: $(UV)
	$(UV) venv --quiet --allow-existing --python $(BIN)/python $(TOOLS_VENV)
	$(UV) pip install --quiet --python $(TOOLS_VENV)/bin/python 'checkov==$(CHECKOV_VERSION)'
	@touch $@

tools: $(TOOLS_VENV)/.installed ## Tools that check deploy/: checkov (in .venv-tools) and kubectl's kustomize
	@command -v kubectl >/dev/null 2>&1 || { echo "kubectl is needed to render deploy/ (kubectl kustomize, kustomize v5);" \
		"this machine's image ships it; Debian's kubernetes-client (1.20) is too old for kustomize components" >&2; exit 1; }

images: ## Build one image per service: IMAGE_PREFIX=registry/path/ IMAGE_TAG=0.1.0 (needs a Docker engine)
	@command -v docker >/dev/null 2>&1 || { echo "make images: docker is not installed; nothing was built" >&2; exit 1; }
	@timeout 20 docker info >/dev/null 2>&1 || { echo "make images: no Docker engine answers (docker info failed):" \
		"this machine has the Docker client only. Build where an engine runs; nothing was built." >&2; exit 1; }
	@set -e; for s in $(SERVICES); do \
		echo "make images: $(IMAGE_PREFIX)suara-$$s:$(IMAGE_TAG)"; \
		docker build --file services/$$s/Dockerfile --tag $(IMAGE_PREFIX)suara-$$s:$(IMAGE_TAG) .; \
	done
