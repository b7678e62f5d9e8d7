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

# The demo curates the real bundled WARC samples plus one GENERATED WARC built
# from the real text in data/text (data/build_warc.py), so the tiny model has
# ~0.5 M tokens to learn from instead of the samples' ~13 K. Built once: a
# re-run finds it unchanged and the pipeline skips finished stages.
DEMO_GEN := $(DEMO_OUT)/inputs/generated_800docs_seed0.warc.gz

demo: setup
	@[ -f $(DEMO_GEN) ] || $(BIN)/python data/build_warc.py --docs 800 --seed 0 --out $(DEMO_OUT)/inputs
	$(BIN)/crawl2chat pipeline --preset $(PRESET) --out $(DEMO_OUT) \
	  --input 'data/samples/*.warc.gz' --input $(DEMO_GEN)

# pytest exits 5 when it collects no tests: that must fail, not pass silently.
test: setup
	@$(BIN)/python -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests — failing" >&2; exit 1; fi; \
	exit $$rc

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
