"""benchmarks/gpu_check.py --cpu-dry-run: every GPU step at toy size, as the GPU machine runs it.

The dry run is started with pydantic, Prefect, Ray and MLflow made unimportable
(a sitecustomize that refuses them, inherited by every step's subprocess), so a
stray import on the GPU path fails here, not in a rare GPU window.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_BLOCK = """
import importlib.abc, sys
BLOCKED = {"pydantic", "pydantic_core", "prefect", "ray", "mlflow"}
class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not on the GPU machine (blocked by the gpu_check test)")
        return None
sys.meta_path.insert(0, _Refuse())
"""


@pytest.mark.slow
def test_cpu_dry_run_records_every_step_with_numbers(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_BLOCK)
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{REPO}", OMP_NUM_THREADS="1")
    env.pop("OUT", None)
    out = tmp_path / "gpu_check"
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-dry-run", "--out", str(out), "--work",
                        str(tmp_path / "work")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True and report["env"]["device"].startswith("cpu")
    steps = report["steps"]
    assert list(steps) == ["train_throughput", "inference", "pipeline", "eval_scoring"]
    tt, inf, pipe = steps["train_throughput"], steps["inference"], steps["pipeline"]
    assert tt["status"] == "ok" and tt["ratio_vs_reference"] > 0
    assert tt["gpt2"]["tokens_per_s"] > 0 and tt["reference"]["tokens_per_s"] > 0 and tt["d20"]["tokens_per_s"] > 0
    assert inf["status"] == "ok" and inf["kv_speedup"] > 1  # the cache beats recomputation even on a toy
    assert inf["ttft_s"] > 0 and set(inf["batched_tok_s"]) == {"1", "8", "32"}
    assert all(v > 0 for v in inf["batched_tok_s"].values())
    assert 0 < inf["bandwidth_share"] and inf["copy_bandwidth_bytes_s"] > 0 and inf["decode_best"] == "eager"
    assert pipe["status"] == "ok", pipe.get("traceback")
    assert set(pipe["seconds"]) == {"tokens", "pretrain", "sft", "rl", "eval"}
    assert all(v >= 0 for v in pipe["seconds"].values())
    assert pipe["tokens_generated_here"] and "GENERATED" in pipe["tokens_dir"]
    assert len(pipe["rl_steps"]) == 2 and all(s["gen_tokens_per_s"] > 0 for s in pipe["rl_steps"])
    assert 0.0 <= pipe["eval"]["pass@1"] <= 1.0 and pipe["eval"]["gsm8k_heldout_limit"] == 4
    ev = steps["eval_scoring"]
    assert ev["status"] == "skipped" and ev["reason"] or ev["status"] == "ok" and ev["ratio"] > 0, ev
    assert all(s["wall_s"] <= report["caps"][n] for n, s in steps.items())
    summary = (out / "summary.txt").read_text()
    assert "CPU DRY RUN" in summary and "pipeline: ok" in summary and "x (goal ≥ 1.25)" in summary


def test_failed_or_slow_step_is_recorded_and_the_rest_still_runs(tmp_path):
    out = tmp_path / "o"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu-dry-run", "--out", str(out), "--steps",
                        "pipeline", "train_throughput", "--tokens", str(tmp_path / "missing"), "--budget-s", "30",
                        "--work", str(tmp_path / "work")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=200)
    assert r.returncode == 1  # a failed step makes the run fail, after writing everything
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["caps"]["pipeline"] == 20 and report["caps"]["train_throughput"] == 10  # scaled to the budget
    pipe = report["steps"]["pipeline"]
    assert pipe["status"] == "failed" and "missing" in pipe["error"], pipe
    tt = report["steps"]["train_throughput"]  # still run after the failure; a cap it overran is said so
    assert tt["status"] == "ok" or tt["status"] == "timeout" and "10 s cap" in tt["error"], tt
    assert "pipeline: failed" in (out / "summary.txt").read_text()
