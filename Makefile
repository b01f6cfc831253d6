# gpumarket: `make demo` runs the whole market locally, `make test` runs every check.
# Both bootstrap what they need first (idempotent): Debian packages, .venv, npm tools.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := libgmp-dev bubblewrap python3-dev gcc postgresql chromium
# The container engine for the docker/podman runtime's tests (runc: crun refuses hosts with
# cgroup v1 beside a v2 mount; catatonit: --init). Its recommends (buildah, fuse-overlayfs,
# slirp4netns) are not needed and cost ~20 s, so they are left out.
APT_PACKAGES_BARE := podman runc catatonit
PY_SOURCES := protocol proofs contracts provider_node coordinator wallet devnet gpumarket_cli.py tests bench
DEMO_STATE := .devnet/demo-state.json

.PHONY: bootstrap test lint typecheck pytest demo clean

bootstrap: .bootstrap-apt $(VENV)/.installed node_modules/.installed

.bootstrap-apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	bare=""; for p in $(APT_PACKAGES_BARE); do dpkg -s $$p >/dev/null 2>&1 || bare="$$bare $$p"; done; \
	if [ -n "$$missing$$bare" ]; then \
	  echo "installing Debian packages:$$missing$$bare"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq; \
	  if [ -n "$$missing" ]; then $$SUDO apt-get install -y -qq $$missing || exit 1; fi; \
	  if [ -n "$$bare" ]; then $$SUDO apt-get install -y -qq --no-install-recommends $$bare || exit 1; fi; \
	fi
	@touch $@

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[provider,dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

lint: bootstrap
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/lint-imports

typecheck: bootstrap
	$(BIN)/mypy $(PY_SOURCES)

pytest: bootstrap
	$(BIN)/pytest -q -ra

test: lint typecheck pytest

demo: bootstrap
	$(BIN)/python -m devnet.demo --state $(DEMO_STATE) $(if $(filter 1 yes true,$(KEEP)),--keep)

clean:
	rm -rf $(VENV) node_modules .bootstrap-apt .devnet
