"""benchmarks/train_throughput.py --cpu-smoke runs and prints the comparison."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cpu_smoke_mode_prints_tokens_per_s_and_ratio(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--cpu-smoke", "--d20", "--steps", "2",
                        "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ratio ours/reference tokens/s" in r.stdout
    import json

    res = json.loads(out.read_text())
    assert [x["kind"] for x in res["results"]] == ["reference", "ours", "ours-d20"]
    assert all(x["tokens_per_s"] > 0 and x["loss"] > 0 for x in res["results"]) and res["ratio"] > 0
