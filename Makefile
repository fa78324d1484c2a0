# make demo: set up .venv and run the main job on examples/quickstart.
# make test: set up .venv (and what the integration tests need) and run every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
QUICKSTART := examples/quickstart

.PHONY: demo test test-unit bench venv clean

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

test: $(STAMP)
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/worker_overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
