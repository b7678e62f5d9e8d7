"""benchmarks/posttrain_gsm8k.py --cpu-smoke: the GPU post-training run's wiring, on CPU, from tokens to figures."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cpu_smoke_pretrains_then_reports_gsm8k_and_reward_figures(tmp_path):
    from tests.support.token_data import make_generated_token_dataset

    make_generated_token_dataset(tmp_path / "data", n_chars=40_000)
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "benchmarks/posttrain_gsm8k.py", "--cpu-smoke", "--tokens",
                        str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--set", "pretrain.sequence_len=64",
                        "--set", "sft.seq_len=512", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "GSM8K held-out (4 problems) pass@1: before RL" in r.stdout
    fig = json.loads(out.read_text())
    assert (tmp_path / "run" / "pretrain" / "final").is_dir()
    assert fig["base"] == str(tmp_path / "run" / "pretrain" / "final")
    assert fig["sft_gsm8k_conversations"] + sum(fig["sft_gsm8k_skipped"].values()) == 16
    assert 0.0 <= fig["gsm8k_pass@1_before_rl"] <= 1.0 and 0.0 <= fig["gsm8k_pass@1_after_rl"] <= 1.0
    assert fig["reward_n_val"] > 0 and 0.0 <= fig["reward_val_accuracy"][1] <= 1.0
    rl = json.loads((tmp_path / "run" / "rl" / "result.json").read_text())
    assert rl["task"] == "gsm8k" and rl["parent"]["source"] == fig["checkpoints"]["sft"]
    assert json.loads((tmp_path / "run" / "reward" / "result.json").read_text())["parent"]["source"] == fig["base"]


def test_bad_set_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "benchmarks/posttrain_gsm8k.py", "--cpu-smoke", "--base", str(tmp_path),
                        "--out", str(tmp_path / "o"), "--set", "nostage.x=1"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "STAGE.KEY=VALUE" in r.stderr
