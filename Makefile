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
# NATS servers of `make up`: 1, or 3 for a cluster with streams and buckets at R3.
NATS ?= 1
# MinIO of `make up`: one drive, or MINIO_DRIVES=4, four drives erasure coded (EC:2).
MINIO_DRIVES ?= 1
MINIO_LAYOUT = $(if $(filter 4,$(MINIO_DRIVES)),drives,single)

.PHONY: help setup tools up down status test lint fmt clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(CACHE_HOME)/uv-$(UV_VERSION)/bin/uv:
	@echo "uv not found on PATH; installing uv $(UV_VERSION) into $(CACHE_HOME)"
	python3 -m venv $(CACHE_HOME)/uv-$(UV_VERSION)
	$(CACHE_HOME)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

setup: $(UV) .venv/.bytecode ## Install the Python workspace (.venv) from uv.lock, with the packages' bytecode
	$(UV) sync --locked

# The packages' bytecode, written once per lock (uv, unlike pip, leaves it out): no Python
# process of a test, service or command compiles them from source again,
# PYTHONDONTWRITEBYTECODE or not. Once per lock, as checking 9,000 files costs a second.
.venv/.bytecode: uv.lock | $(UV)
	$(UV) sync --locked --compile-bytecode
	@touch $@

tools: setup ## Build or find etcd, kube-apiserver, kubectl, helm, minio, nats-server
	$(UV) run --locked python -m emulsion_devstack.binaries ensure

up: tools ## Start the local stack on 127.0.0.1 and write .emulsion/env (NATS=3: a NATS cluster, R3; MINIO_DRIVES=4: erasure coded)
	$(UV) run --locked python -m emulsion_devstack up --state-dir $(STATE_DIR) --nats-servers $(NATS) --minio-layout $(MINIO_LAYOUT)

down: ## Stop exactly what `make up` started
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m emulsion_devstack down --state-dir $(STATE_DIR); else echo "nothing was running"; fi

status: ## Show the local stack's processes
	@.venv/bin/python -m emulsion_devstack status --state-dir $(STATE_DIR)

GALLERY_COUNT ?= 40
.PHONY: run
run: up web ## Ingest a demo gallery (made once, cached) with the CLI; the stack keeps running (GALLERY_COUNT=40)
	@gallery="$$($(UV) run --locked emulsion gallery --count $(GALLERY_COUNT))" && \
	source $(STATE_DIR)/env && \
	echo "Ingesting $(GALLERY_COUNT) demo images from $$gallery into the collection demo" && \
	$(UV) run --locked emulsion ingest "$$gallery" --collection demo; status=$$?; \
	first="$$(ls "$$gallery" | head -n 1)"; \
	echo; \
	echo "The stack keeps running until make down. Where to look:"; \
	echo "  source $(STATE_DIR)/env && kubectl get ij                 # the IngestJobs"; \
	echo "  $$EMULSION_API_URL/upload                                # the browser uploader (token: EMULSION_TOKEN)"; \
	echo "  $$EMULSION_API_URL/docs                                  # the API (token: EMULSION_TOKEN)"; \
	echo "  source $(STATE_DIR)/env && emulsion get demo $$first   # URLs of its styles"; \
	exit $$status

WEB_DIR := clients/web
.PHONY: web browser faketime bench-web
web: $(WEB_DIR)/node_modules/.package-lock.json ## Build the browser uploader (npm ci from the lock, esbuild) into clients/web/dist, served at /upload
	cd $(WEB_DIR) && node build.mjs

$(WEB_DIR)/node_modules/.package-lock.json: $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && npm ci --no-audit --no-fund
	@touch $@

browser: ## Install Debian's Chromium for the browser tests (tests/web), once
	@bash tools/install-chromium.sh

faketime: ## Install Debian's faketime for the skewed-clock test (tests/security), once
	@bash tools/install-faketime.sh

BENCH_WEB_ARGS ?=
bench-web: setup tools web browser ## Upload throughput from the browser page vs the CLI on the same files (BENCH_WEB_ARGS="--count 60")
	$(UV) run --locked python -m emulsion_bench.web $(BENCH_WEB_ARGS)

BENCH_CLI_ARGS ?=
.PHONY: bench-cli
bench-cli: setup ## The CLI's own costs: gallery generation, hashing, and an ingest when a stack is up (BENCH_CLI_ARGS="--count 40")
	@if [ -f $(STATE_DIR)/env ]; then source $(STATE_DIR)/env; fi; \
	$(UV) run --locked python -m emulsion_bench.cli $(BENCH_CLI_ARGS)

lint: setup ## ruff, mypy and the import boundaries (lint-imports) over the whole workspace
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked mypy libs services clients bench tools/devstack tests
	$(UV) run --locked lint-imports

fmt: setup ## Format and autofix with ruff
	$(UV) run --locked ruff format .
	$(UV) run --locked ruff check --fix .

# Two stages, so the log ends with the last stage's pytest summary line and a failed first
# stage still runs the second (the recipe fails if either did):
#  1. everything but the fault, browser and real-node suites on two pytest-xdist workers
#     (`--dist loadfile`: a module's tests share its fixtures on one worker, each worker
#     its own stack), about half the serial time on two cores;
#  2. the fault, browser and real-node suites serially: each starts a whole system of its
#     own (the servers and four services, or the node with the chart installed), kills and
#     stops its processes on a schedule, and measures throughput or scaling; beside a
#     second worker their time budgets would be the load's.
# The node's binaries, packages and images are built (or found in the per-user cache)
# before any test runs, so no fixture pays a cold build inside its timeout.
test: lint tools web browser faketime node-tools node-packages images ## Everything CI runs: lint, unit and integration tests on 2 workers, then the fault, browser, scale-out and real-node suites
	@status=0; \
	echo "== stage 1: unit and integration tests on 2 workers"; \
	$(UV) run --locked pytest -n 2 --dist loadfile -m "not (faults or web or cluster or scaleout)" $(PYTEST_ARGS) || status=1; \
	echo "== stage 2: the fault, browser, scale-out and real-node suites, serially"; \
	$(UV) run --locked pytest -m "faults or web or cluster or scaleout" $(PYTEST_ARGS) || status=1; \
	exit $$status

test-cluster: setup tools node-tools node-packages images ## The real-node suite (tests/cluster): the chart as pods on containerd + kubelet
	$(UV) run --locked pytest -m cluster $(PYTEST_ARGS)

# Serial, like the faults: RAFT's heartbeats need the machine's time (tests/scaleout).
test-scaleout: setup tools ## The scale-out suite (tests/scaleout): a NATS cluster of three and erasure-coded MinIO, servers and drives lost mid-flow
	$(UV) run --locked pytest -m scaleout $(PYTEST_ARGS)

.PHONY: unit integration test-cluster test-scaleout
# `make unit` keeps the bytecode of the workspace and of the tests (their asserts rewritten
# by pytest) in the gitignored __pycache__ folders even where PYTHONDONTWRITEBYTECODE is
# set: each worker would otherwise compile and rewrite every module again on every run
# (about 2 s of each worker's 5 s of collection). `--dist worksteal`: a worker that runs
# out takes half of the other's queue, so neither idles while the other ends on the long
# property tests (`load` left one worker about 2 s behind the other).
unit: setup ## Pure-logic tests alone, no servers or processes, in seconds (tests the conftest marks `unit`)
	PYTHONDONTWRITEBYTECODE= $(UV) run --locked pytest -n 2 --dist worksteal -m unit $(PYTEST_ARGS)

integration: setup tools web faketime ## Tests on the real stack or with servers and processes of their own, without the fault, browser and real-node suites (2 workers)
	$(UV) run --locked pytest -n 2 --dist loadfile -m "integration and not (faults or web or cluster or scaleout)" $(PYTEST_ARGS)

.PHONY: node-packages node-tools cluster cluster-down images cluster-install
# The node's own binaries, built from pinned modules (about 30 min cold on two cores,
# cached per user): not part of `make tools`, so `make up` never pays for them.
NODE_TOOLS := kubelet kube-controller-manager kube-scheduler local-path-provisioner metrics-server keda-operator keda-adapter
node-tools: setup ## Build or find the real node's binaries (kubelet, controller-manager, scheduler, local-path-provisioner, metrics-server, KEDA)
	$(UV) run --locked python -m emulsion_devstack.binaries ensure $(NODE_TOOLS)

node-packages: ## Install Debian's containerd, runc, CNI plugins, podman, buildah, debootstrap (once; nothing is started)
	@bash tools/install-node-packages.sh

cluster: tools node-tools node-packages ## A real node on the stack (containerd, kubelet, controller-manager, scheduler, metrics-server, KEDA); starts the stack if needed
	@if ! .venv/bin/python -m emulsion_devstack status --state-dir $(STATE_DIR) >/dev/null 2>&1; then \
		$(UV) run --locked python -m emulsion_devstack up --services '' --state-dir $(STATE_DIR); fi
	$(UV) run --locked python -m emulsion_devstack.node up --state-dir $(STATE_DIR)

cluster-down: ## Remove the node and everything it made (processes, mounts, cgroups, bridge, iptables chain); the stack keeps running
	@if [ -x .venv/bin/python ]; then .venv/bin/python -m emulsion_devstack.node down --state-dir $(STATE_DIR); else echo "no node was running"; fi

images: setup node-packages web ## Build the Debian Python base, pause and the four service images (cached per user); load them into a running node
	$(UV) run --locked python -m emulsion_devstack.images load --state-dir $(STATE_DIR)

cluster-install: images ## helm install/upgrade charts/emulsion on the node with the locally built images
	$(UV) run --locked python -m emulsion_devstack.release install --state-dir $(STATE_DIR)

.PHONY: chart-crds chart-test
chart-crds: ## Copy crds/*.yaml into the chart (charts/emulsion/files/crds/); a test fails on drift
	rm -f charts/emulsion/files/crds/*.yaml
	cp crds/*.yaml charts/emulsion/files/crds/

.PHONY: chart-nats
chart-nats: setup ## Regenerate the chart's NATS permissions (files/nats-permissions.json) from emulsion_contracts.natsauth; a test fails on drift
	$(UV) run --locked python tools/nats_permissions.py

.PHONY: docs
docs: setup ## Regenerate docs/configuration.md from the settings classes; a test fails on drift
	$(UV) run --locked python tools/config_reference.py

.PHONY: chart-docs
chart-docs: setup ## Regenerate the chart README's values table from values.yaml's `# --` comments; a test fails on drift
	$(UV) run --locked python tools/chart_values_table.py

chart-test: setup tools ## Helm chart and Dockerfiles: lint, render, validate, install/upgrade/RBAC on the real apiserver
	$(UV) run --locked pytest tests/charts $(PYTEST_ARGS)

BENCH_NATS_ARGS ?=
.PHONY: bench-nats
bench-nats: tools ## JetStream's durability priced: one server vs a cluster of three at R3 vs R3 with sync_interval always (BENCH_NATS_ARGS="--messages 5000")
	$(UV) run --locked python -m emulsion_bench.nats_durability $(BENCH_NATS_ARGS)

BENCH_ARGS ?=
.PHONY: bench
bench: tools ## Emulsion end to end vs the pure-Pillow limit and the synchronous baseline (BENCH_ARGS="--images 200")
	$(UV) run --locked python -m emulsion_bench $(BENCH_ARGS)

SOAK_ARGS ?=
.PHONY: soak
soak: tools ## The bench gallery while a monkey kills services, NATS restarts, MinIO stops 2 min; prints lost/live deleted/orphans (SOAK_ARGS="--images 200")
	$(UV) run --locked python -m emulsion_bench.soak $(SOAK_ARGS)

.PHONY: bench-processor
bench-processor: tools ## Processor: images/s (threads, processes) vs the pure-Pillow limit, peak RSS of a 50 MP JPEG (BENCH_PROCESSOR_ARGS="--images 40")
	$(UV) run --locked python -m emulsion_bench.processor $(BENCH_PROCESSOR_ARGS)

.PHONY: bench-gravity
bench-gravity: setup ## Crop gravity: processor CPU per image for center, smart, faces and a focal point; OpenCV's import cost (BENCH_GRAVITY_ARGS="--images 6")
	$(UV) run --locked python -m emulsion_bench.gravity $(BENCH_GRAVITY_ARGS)

BENCH_PLACEHOLDER_ARGS ?=
.PHONY: bench-placeholder
bench-placeholder: setup ## Metadata and placeholder: CPU they add to a render, per image (BENCH_PLACEHOLDER_ARGS="--images 6")
	$(UV) run --locked python -m emulsion_bench.placeholder $(BENCH_PLACEHOLDER_ARGS)

.PHONY: bench-controller
bench-controller: tools ## Controller: 5,000 one-item + 5 thousand-item IngestJobs; RSS, create->Queued p50/p99 (BENCH_CONTROLLER_ARGS="--small-jobs 500")
	$(UV) run --locked python -m emulsion_bench.controller $(BENCH_CONTROLLER_ARGS)

.PHONY: bench-api
bench-api: tools ## API: POST /v1/ingests (one item) p50/p99 at 1 and 32 clients, max req/s, memory (BENCH_API_ARGS="--requests 640")
	$(UV) run --locked python -m emulsion_bench.api $(BENCH_API_ARGS)

.PHONY: bench-notify
bench-notify: tools ## make bench's notify phases alone: open loop at 1 and 32 clients, idle and during a gallery (BENCH_NOTIFY_ARGS="--idle-only")
	$(UV) run --locked python -m emulsion_bench.notify_only $(BENCH_NOTIFY_ARGS)

.PHONY: bench-controlplane
bench-controlplane: tools ## etcd bytes, apiserver writes and stored size of 20/200/2,000-item IngestJobs; kubectl get ij -A with 5,000 (BENCH_CONTROLPLANE_ARGS="--label before")
	$(UV) run --locked python -m emulsion_bench.controlplane $(BENCH_CONTROLPLANE_ARGS)

.PHONY: bench-formats
bench-formats: setup ## Output formats: bytes, encode CPU and SSIM per style for JPEG/WebP/AVIF at equal SSIM; render CPU with AVIF on (BENCH_FORMATS_ARGS="--images 12")
	$(UV) run --locked python -m emulsion_bench.formats $(BENCH_FORMATS_ARGS)

.PHONY: bench-janitor
bench-janitor: tools ## Janitor: hourly CPU s and S3 requests at 20,000 and 200,000 stored photos, and the full pass's keys/s (BENCH_JANITOR_ARGS="--photos 2000,20000")
	$(UV) run --locked python -m emulsion_bench.janitor $(BENCH_JANITOR_ARGS)

BENCH_FAIRNESS_ARGS ?=
.PHONY: bench-fairness
bench-fairness: tools ## Fair share: one photo's notify->Succeeded beside a 5,000-photo import, lanes on/off; 3 bulk tenants' shares (BENCH_FAIRNESS_ARGS="--bulk-images 600 --singles 6 --interval 10")
	$(UV) run --locked python -m emulsion_bench.fairness $(BENCH_FAIRNESS_ARGS)

clean: down ## Remove the venv and caches of this checkout (not the per-user binary cache)
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache

.PHONY: capacity
capacity: setup ## The capacity model: print it and regenerate docs/capacity.md's table from bench/results/ (a test fails on drift)
	$(UV) run --locked python -m emulsion_bench.capacity
