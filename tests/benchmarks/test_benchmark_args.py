"""Benchmarks refuse a count that cannot run, in one line and exit 2, before any work
(`--kills -1` started a whole reference pipeline; `--docs 0` ended in a traceback)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("args,message", [
    (["benchmarks/chaos.py", "--kills", "-1"], "--kills must be 0 or more, not -1"),
    (["benchmarks/curate_vs_datatrove.py", "--docs", "0"], "--docs must be 1 or more, not 0"),
])
def test_a_count_that_cannot_run_is_refused_before_any_work(tmp_path, args, message):
    cmd = [sys.executable, *(str(REPO / a) if a.endswith(".py") else a for a in args)]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and message in r.stderr.splitlines()[-1], r.stderr[-2000:]
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []
