"""One checkpoint resolver (core.run_root.resolve_checkpoint) for serving, the next stage and resuming.

Checkpoints are GENERATED here (a tiny random GPT, a tokenizer trained on a few sentences).
Seam: `serve --model runs/x/sft` used to fall back from final/ to latest/ without a word, so
a half-trained model could be served; and four functions each decided "which checkpoint?".
"""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.run_root import clear_manifest, read_manifest, resolve_checkpoint, write_manifest
from lm.checkpoint import CheckpointError, load_model, save_checkpoint
from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer
from lm.train import find_resume_checkpoint

REPO = Path(__file__).resolve().parents[2]
TEXT = ["The quick brown fox jumps over the lazy dog.", "What is 12+7? The answer is 19."] * 20


@pytest.fixture(scope="module")
def parts():
    tok = Tokenizer.train(TEXT, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, sequence_len=32, n_layer=1, n_head=2, n_kv_head=2, n_embd=32))
    return model, tok


def _save(d: Path, parts, step: int, resumable: bool) -> Path:
    model, tok = parts
    ts = {"step": step, "optimizer": {"state": {}, "param_groups": []}, "state": {}} if resumable else None
    return save_checkpoint(d, model, tok, {"kind": "test", "step": step}, train_state=ts)


def test_stage_with_only_latest_is_refused_not_served(tmp_path, parts):
    stage = tmp_path / "sft"
    _save(stage / "latest", parts, 5, resumable=True)
    with pytest.raises(CheckpointError, match="did not finish"):
        load_model(stage)
    # Asked for explicitly, the mid-training weights load.
    assert load_model(stage / "latest")[2]["step"] == 5


def test_serve_cli_says_the_stage_did_not_finish(tmp_path, parts):
    stage = tmp_path / "sft"
    _save(stage / "latest", parts, 5, resumable=True)
    r = subprocess.run([sys.executable, "-m", "crawl2chat.cli", "serve", "--model", str(stage), "--port", "0"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "did not finish" in r.stderr and "latest" in r.stderr


def test_manifest_names_the_checkpoint(tmp_path, parts):
    stage = tmp_path / "rl"
    _save(stage / "latest", parts, 9, resumable=True)
    _save(stage / "final", parts, 8, resumable=False)
    assert resolve_checkpoint(stage) == stage / "final"  # finished, not yet registered: final/
    with pytest.raises(CheckpointError, match="not complete"):
        resolve_checkpoint(stage, require_manifest=True)  # the pipeline needs the complete stage
    other = _save(tmp_path / "elsewhere", parts, 8, resumable=False)
    write_manifest(stage, {"checkpoint": str(other)})
    assert read_manifest(stage)["checkpoint"] == str(other)
    assert resolve_checkpoint(stage) == other and resolve_checkpoint(stage, require_manifest=True) == other
    write_manifest(stage, {"checkpoint": str(tmp_path / "gone")})
    with pytest.raises(CheckpointError, match="missing or incomplete"):
        resolve_checkpoint(stage)
    clear_manifest(stage)
    assert read_manifest(stage) is None


def test_resume_picks_the_most_advanced_resumable_checkpoint(tmp_path, parts):
    out = tmp_path / "pretrain"
    assert resolve_checkpoint(out, purpose="resume") is None
    _save(out / "latest", parts, 4, resumable=True)
    _save(out / "final", parts, 7, resumable=True)
    assert resolve_checkpoint(out, purpose="resume") == out / "final" == find_resume_checkpoint(out)
    # A final/ without training state (post-training writes it so) cannot be resumed from.
    _save(out / "final", parts, 9, resumable=False)
    assert find_resume_checkpoint(out) == out / "latest"
