"""benchmarks/sandbox_latency.py runs on a few GENERATED snippets (both sides print the same) and prints its ratios."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_prints_interpreter_vs_exec_ratios():
    r = subprocess.run([sys.executable, "benchmarks/sandbox_latency.py", "2"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]  # it asserts both sides print the GENERATED output
    ratios = [float(x) for x in re.findall(r"ratio(?: interpreter/exec)? ([0-9.]+)", r.stdout)]
    assert len(ratios) == 3 and all(x > 0 for x in ratios), r.stdout
    assert "load average" in r.stdout
