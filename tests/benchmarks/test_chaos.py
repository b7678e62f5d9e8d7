"""benchmarks/chaos.py, short variant: `crawl2chat pipeline` (curate → tokenize → pretrain → sft, tiny
steps) SIGKILLed twice at seeded random instants, re-run to completion, compared with an uninterrupted
run: identical curated Parquet, token shards, checkpoints and registered weights; tracking truthful."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pipeline_survives_two_random_kills(tmp_path, ray_cluster):
    out = tmp_path / "chaos"
    r = subprocess.run([sys.executable, "benchmarks/chaos.py", "--quick", "--kills", "2", "--seed", "1",
                        "--out", str(out), "--json", str(out / "chaos.json"),
                        "--ray-address", ray_cluster.get_runtime_context().gcs_address],
                       cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "chaos.json").read_text())
    assert res["kills_survived"] >= 1, r.stdout  # at least one kill landed before the run could finish
    assert all(res["identical"].values()) and res["tracking_truthful"], r.stdout
    assert "kills survived:" in r.stdout and "time lost:" in r.stdout
