# rlsched: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RLSCHED := $(VENV)/bin/rlsched
TORCH_VERSION := 2.13.0
# Debian packages the test suite runs for real: JMeter (with its HTTP module and a JDK for the launcher),
# Prometheus and node-exporter, Chromium (the Swagger UI test, headless).
APT_TEST_PACKAGES := jmeter jmeter-http openjdk-17-jdk-headless prometheus prometheus-node-exporter chromium

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint clean cluster-up cluster-down cluster-status

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned, so pip takes the CPU wheel on the machine and never a CUDA build
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e '.[test,dev,services,testbed,serve,sweep]'
	touch $@

setup: $(VENV)/.installed ## Create .venv and install torch (CPU) and the project with its test extras (idempotent)

DEMO_DIR := results/demo
demo: setup ## Train a DQN on the simulated cluster (a few minutes) and benchmark it against the baselines
	$(RLSCHED) train --scenario hetero-sleep --model $(DEMO_DIR)/Dale.pth --force --log-dir $(DEMO_DIR)/train
	$(RLSCHED) benchmark --scenario hetero-sleep --model $(DEMO_DIR)/Dale.pth --episodes 20 --out $(DEMO_DIR)

test: setup apt-test-deps ## Run the test suite (installs what it needs first)
	$(PY) -m pytest

.PHONY: apt-test-deps
apt-test-deps:
	@missing=""; for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing Debian packages:$$missing (run as root or install them)"; exit 1; fi; \
	fi

# The Minikube testbed (settings: ./rlsched.toml, RLSCHED_* variables; see rlsched.example.toml).
# SKIP_IMAGES=1 skips building and loading the images; KEEP_MINIKUBE=1 keeps the VMs on cluster-down.
cluster-up: setup ## Start the Minikube testbed: VMs, images, manifests, Prometheus (needs minikube, kvm2, Docker)
	$(RLSCHED) cluster up $(if $(SKIP_IMAGES),--skip-images,)

cluster-status: setup ## Report each piece of the testbed as up or down
	$(RLSCHED) cluster status

cluster-down: setup ## Remove what cluster-up created
	$(RLSCHED) cluster down $(if $(KEEP_MINIKUBE),--keep-minikube,)

lint: setup ## ruff and mypy
	$(VENV)/bin/ruff check rlmodel tests benchmarks containers testapp
	$(VENV)/bin/mypy rlmodel

clean: ## Remove the venv and results
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
