# Two entry points for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint setup

# CPU wheel of torch first, so the resolver never pulls GBs of CUDA packages;
# a GPU machine installs its own torch build before `make setup`.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip show torch >/dev/null 2>&1 || \
		$(BIN)/python -m pip install --quiet torch==2.13.0 || \
		$(BIN)/python -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/python -m pip install --quiet -e '.[dev]'
# Without its dependencies: nlb-tools pins pandas<=1.3.4 (see pyproject.toml's dev extra).
	$(BIN)/python -m pip install --quiet --no-deps 'nlb-tools==0.0.4'
	$(BIN)/python -m pip install --quiet --no-deps 'ibl-bwb-eval==0.1.0'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
# Bytecode once, so each of the workflow's jobs does not recompile the package where
# PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m neurossl.run --workflow-profile profiles/default

test: $(STAMP)
	$(BIN)/python -m compileall -q src
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/snakemake --lint
