# One place for every command: CI (.ci/run), the README and people all call these targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help setup system-deps venv demo test check lint format typecheck \
        test-unit test-integration test-e2e test-topology bench cluster-up chaos \
        manifests manifests-check images helm-lint clean

help:
	@echo "make demo     run the demo (starts its own redis-server unless RUNNERQ_REDIS_URL is set)"
	@echo "make test     lint, type-check and run every test (installs what it needs first)"
	@echo "make setup    install redis-server and chromium (Debian) and the Python dev environment in $(VENV)"

setup: system-deps venv

# redis-server and chromium (the console's browser tests, tests/browser) from Debian's packages
# when they are missing (CI and fresh machines). Playwright drives /usr/bin/chromium: it never
# downloads a browser of its own.
system-deps:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  echo "installing redis-server (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; \
	  $$SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true; \
	fi
	@redis-server --version
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing chromium (Debian package)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@/usr/bin/chromium --version 2>/dev/null

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

demo: setup
	$(VENV)/bin/runnerq demo

# The Kubernetes path on this machine: the local control plane (built on first use, then
# cached), the chart, the operator and a worker as local processes; prints the replicas going
# 0 -> N -> 0 with the Events, then stops everything it started (hack/k8s_demo.py).
.PHONY: k8s-demo
k8s-demo: setup
	$(PY) hack/k8s_demo.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: venv
	$(VENV)/bin/mypy

check: lint typecheck

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest tests/integration -m "not topology" $(PYTEST_ARGS)

test-topology: setup
	$(PY) -m pytest -m topology -p no:unraisableexception -W "ignore::ResourceWarning" $(PYTEST_ARGS)

test-e2e: setup
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# Everything CI runs: static checks, then every test (unit, Redis, Kubernetes end-to-end).
# The Cluster/Sentinel tests run in a session of their own: redis-py leaves sockets of failed
# nodes unclosed, which the main session's warnings-as-errors would blame on whichever test ran.
test: setup check
	$(PY) -m pytest -m "not topology" $(PYTEST_ARGS)
	$(PY) -m pytest -m topology -p no:unraisableexception -W "ignore::ResourceWarning" $(PYTEST_ARGS)

bench: setup
	$(PY) -m benchmarks $(BENCH_ARGS)

# The fault-injection suite at full size (thousands of activities per scenario) and its table;
# a short version of it runs inside `make test`. faketime (Debian) makes worker clocks lie.
chaos: setup
	@command -v faketime >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq faketime >/dev/null; }
	RUNNERQ_PROPERTY_EXAMPLES=500 $(PY) -m pytest tests/integration/test_script_invariants.py tests/integration/test_corrupt_records.py -q
	$(PY) -m tests.chaos $(CHAOS_ARGS)

# Chart CRD/RBAC templates from operator/, then manifests/ from the chart (pinned helm).
manifests: venv
	$(PY) hack/render_manifests.py

manifests-check: venv
	$(PY) hack/render_manifests.py --check

# Worker and operator images with podman (installs podman/runc/debootstrap when missing).
images: venv
	bash hack/images.sh build

helm-lint:
	bash hack/control-plane.sh ensure >/dev/null
	"$$(bash hack/control-plane.sh env | sed -n 's/^BIN_DIR=//p')/helm" lint --strict charts/runnerq

# A throw-away Kubernetes control plane (built on first use); prints KUBECONFIG, Ctrl-C stops it.
cluster-up: venv
	$(PY) -m tests.e2e.cluster up

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build
