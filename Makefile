# crawl2chat — `make demo` and `make test` each set up everything first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo
PRESET ?= tiny

.PHONY: setup demo test test-fast up down bench clean help

help:
	@echo "make setup | demo | test | up | down | bench | clean"

setup: $(STAMP)

# Idempotent: re-runs only when pyproject.toml changes (or the venv is gone).
$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

demo: setup
	$(BIN)/crawl2chat pipeline --preset $(PRESET) --out $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest -q tests

up: setup
	$(BIN)/crawl2chat up

down:
	$(BIN)/crawl2chat down

bench: setup
	$(BIN)/python benchmarks/curate_vs_datatrove.py
	$(BIN)/python benchmarks/inference.py
	$(BIN)/python benchmarks/train_throughput.py --cpu-smoke

clean:
	rm -rf runs .pytest_cache
