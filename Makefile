# crawl2chat — `make demo` and `make test` each set up everything first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= runs/demo
PRESET ?= tiny
# What `make chat` / `make serve` load, and where `make mlflow-ui` listens (5001:
# beside the MLflow server of `make up`, which has :5000).
MODEL ?= $(DEMO_OUT)/sft
MLFLOW_UI_PORT ?= 5001

.PHONY: setup demo test test-fast up down bench clean help chat serve mlflow-ui

help:
	@echo "make setup | demo | test | chat | serve | mlflow-ui | up | down | bench | clean"
	@echo "  (or put the tools on PATH: source $(BIN)/activate)"

setup: $(STAMP)

# Idempotent: re-runs only when pyproject.toml changes (or the venv is gone).
$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

# The demo curates the pipeline's default inputs: the real bundled WARC samples
# plus one GENERATED WARC built from the real text in data/ (the tiny preset's
# curate.generated_docs: 800 pages, ~0.5 M tokens instead of the samples' ~13 K),
# written to $(DEMO_OUT)/inputs/ once. The `llm-pipeline/tiny` deployment of
# `make up` takes the same default. A re-run skips finished stages.
demo: setup
	$(BIN)/crawl2chat pipeline --preset $(PRESET) --out $(DEMO_OUT)

# pytest exits 5 when it collects no tests: that must fail, not pass silently.
# TEST_WORKERS pytest-xdist processes share one Prefect API server and one toy model
# (tests/support/shared.py); a worker takes whole modules (so a module fixture is built
# once), the modules with long tests first (tests/conftest.py). One worker per core plus one, at most 4
# (each may start a local Ray): the tests wait on services and subprocesses ~13 % of the time, and
# a third worker on 2 cores fills it (8 min 5 s against 9 min 6 s with two, back to back).
# TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n + 1 > 4 ? 4 : n + 1 )))
test: setup
	@$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests — failing" >&2; exit 1; fi; \
	exit $$rc

# After `make demo`: talk to its chat model, serve it, browse its MLflow runs.
chat: setup
	$(BIN)/crawl2chat chat --model $(MODEL)

serve: setup
	$(BIN)/crawl2chat serve --model $(MODEL)

# Prints where to look first (the runs table in MLflow's model-training mode, not its GenAI
# start page; the comparison of the last two pipeline runs: docs/MLFLOW.md), then serves.
mlflow-ui: setup
	@echo "MLflow UI of $(DEMO_OUT)/mlflow.db (Ctrl-C stops it; ready in ~10 s):"
	@$(BIN)/python -m tasks.headline sqlite:///$(abspath $(DEMO_OUT))/mlflow.db http://127.0.0.1:$(MLFLOW_UI_PORT)
	@MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(DEMO_OUT))/mlflow.db \
	  --host 127.0.0.1 --port $(MLFLOW_UI_PORT) --workers 1

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
