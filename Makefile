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

# System packages the integration tests use: OpenSSH's server for the loopback test fleet, and
# minisign to check that our signatures verify with the standard tool.
test-deps:
	@{ command -v sshd >/dev/null 2>&1 || test -x /usr/sbin/sshd; } && command -v minisign >/dev/null 2>&1 || { \
	  echo "installing openssh-server and minisign for the integration tests"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends openssh-server minisign >/dev/null; }

test: $(STAMP) test-deps
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/worker_overhead.py
	$(BIN)/python bench/cache.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
