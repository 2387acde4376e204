# Emulsion: `make help` lists the targets. Everything installs itself on first use:
# uv (into a per-user cache when it is not on PATH), the Python workspace, and the
# stack's binaries (built once per user from pinned Go modules, then cached).

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
CACHE_HOME := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/emulsion
UV := $(or $(shell command -v uv 2>/dev/null),$(CACHE_HOME)/uv-$(UV_VERSION)/bin/uv)
STATE_DIR := .emulsion
PYTEST_ARGS ?=

.PHONY: help setup tools up down status test lint fmt clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CACHE_HOME)/uv-$(UV_VERSION)/bin/uv:
	@echo "uv not found on PATH; installing uv $(UV_VERSION) into $(CACHE_HOME)"
	python3 -m venv $(CACHE_HOME)/uv-$(UV_VERSION)
	$(CACHE_HOME)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

setup: $(UV) ## Install the Python workspace (.venv) from uv.lock
	$(UV) sync --locked

tools: setup ## Build or find etcd, kube-apiserver, kubectl, helm, minio, nats-server
	$(UV) run --locked python -m emulsion_devstack.binaries ensure

up: tools ## Start the local stack on 127.0.0.1 and write .emulsion/env
	$(UV) run --locked python -m emulsion_devstack up --state-dir $(STATE_DIR)

down: ## Stop exactly what `make up` started
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m emulsion_devstack down --state-dir $(STATE_DIR); else echo "nothing was running"; fi

status: ## Show the local stack's processes
	@.venv/bin/python -m emulsion_devstack status --state-dir $(STATE_DIR)

lint: setup ## ruff and mypy over the whole workspace
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy libs services clients tests

fmt: setup ## Format and autofix with ruff
	$(UV) run --locked ruff format .
	$(UV) run --locked ruff check --fix .

test: lint tools ## Everything CI runs: lint, then unit and integration tests on a real stack
	$(UV) run --locked pytest $(PYTEST_ARGS)

clean: down ## Remove the venv and caches of this checkout (not the per-user binary cache)
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
