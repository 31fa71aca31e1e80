# Set-up and entry points. `make demo` and `make test` work on a fresh Debian machine with
# Python 3.11: they create .venv, install ffmpeg from Debian when ffprobe is missing, and
# install the project.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/dagster_home
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
# every stage, worker and server is a Python process that imports torch and diffusers; without
# bytecode files each one compiles those modules again (about 6 of its 11 CPU-s on this machine,
# docs/benchmarks.md), so a PYTHONDONTWRITEBYTECODE from the environment is not passed on
unexport PYTHONDONTWRITEBYTECODE
PYTEST_ARGS ?=

.PHONY: setup demo repro test test-fast ui screenshots sample-data lint format dvc-yaml clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build. --no-compile: Python
# compiles what is imported when it is first imported, not the whole of torch at install
$(VENV)/.installed: $(BIN)/python pyproject.toml
	@command -v ffprobe >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; }
	@# the UI test drives Debian's Chromium with Playwright: no browser download
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -e ".[dev]"
	$(BIN)/pip check
	touch $@

setup: $(VENV)/.installed

sample-data: setup
	$(BIN)/python -m dagster_project.cli.sample_data data/raw
	$(BIN)/python -m dagster_project.cli.raw_check
	$(BIN)/dvc add -q data/raw

# the README's way to run the pipeline with DVC: links leading out of data/raw are refused
# before DVC copies their targets, and the stages find the venv's python
repro: setup
	$(BIN)/python -m dagster_project.cli.raw_check
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

demo: sample-data repro
	$(BIN)/dvc metrics show
	@echo "report: data/eval/report.md  (UI: make ui)"

# everything CI runs: the checks, then every test on three workers (pytest-xdist, a file each,
# slowest first: tests/conftest.py), each with one PyTorch thread: the end-to-end tests spend
# much of their time waiting on their subprocesses, so a third worker keeps the two cores busy
test: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m dagster_project.cli.dvc_yaml --check
	PATH=$(CURDIR)/$(BIN):$$PATH OMP_NUM_THREADS=1 $(BIN)/pytest -n 3 --dist loadfile \
	  --no-loadscope-reorder $(PYTEST_ARGS)

# the unit tests of the core (tests/unit: no Dagster, no pipeline run), while you work
test-fast: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest tests/unit -n 2 $(PYTEST_ARGS)

UI_PORT ?= 3000
ui: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

# the README's screenshots: serves this project's UI and materializes the pipeline from it (on
# this repository's data/ and dagster_home/, like make demo; the daemon's dvc sync then updates
# dvc.lock), writes docs/ui-*.png
screenshots: setup
	$(BIN)/python -m dagster_project.cli.ui_tour docs

dvc-yaml: setup
	$(BIN)/python -m dagster_project.cli.dvc_yaml > dvc.yaml

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf data/*.parquet \
	  data/cache data/models data/train data/eval
