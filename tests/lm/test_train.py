"""Pretraining loop on real text: learning, exact resume, DDP, checkpoint errors.

Token shards here are GENERATED for the tests (`generated-test` source): a
small BPE tokenizer trained on the first ~120 kB of the bundled tinyshakespeare
and the text tokenized with it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm.checkpoint import CheckpointError, load_model
from lm.tracking import CallbackLogger, read_jsonl_metrics
from conf.pretrain import PretrainSettings
from lm.train import find_resume_checkpoint, train
from tests.support.token_data import MICRO, make_generated_token_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokens(tmp_path_factory) -> Path:
    return make_generated_token_dataset(tmp_path_factory.mktemp("generated_tokens"))


@pytest.fixture(scope="module")
def trained(tokens, tmp_path_factory):
    """One in-process run shared by the tests that need a finished run."""
    out = tmp_path_factory.mktemp("run")
    seen: list[tuple[int, dict]] = []
    cfg = PretrainSettings(**{**MICRO, "max_steps": 60, "eval_every": 30})
    summary = train(cfg, tokens, out, logger=CallbackLogger(lambda m, s: seen.append((s, dict(m)))))
    return out, summary, seen


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return env


def test_loss_falls_on_real_text(trained):
    out, summary, seen = trained
    losses = [m["loss"] for _, m in seen]
    assert summary["status"] == "completed" and summary["step"] == 60
    # Uniform guessing over 384 tokens is ln(384) ≈ 5.95 nats.
    assert sum(losses[:5]) / 5 > 5.0
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5
    vals = [m for _, m in seen if "val_loss" in m]
    assert len(vals) == 2 and vals[-1]["val_loss"] < vals[0]["val_loss"] < 5.0
    assert 0.5 < vals[-1]["val_bpb"] < 5.0  # bits per byte of English text
    assert all(m["grad_norm"] > 0 and m["tokens_per_s"] > 0 for _, m in seen)
    assert [s for s, _ in seen] == list(range(1, 61))


def test_outputs_follow_the_checkpoint_contract(trained):
    out, summary, _ = trained
    manifest = json.loads((out / "summary.json").read_text())
    assert manifest["status"] == "completed" and manifest["final_dir"] == str(out / "final")
    model, tok, meta = load_model(out)  # stage dir → final/
    assert meta["step"] == 60 and meta["kind"] == "base"
    assert model.config.n_layer == 2 and model.config.vocab_size == tok.vocab_size
    assert find_resume_checkpoint(out) == out / "final"
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    samples = [r for r in recs if r["kind"] == "text" and r["name"] == "samples"]
    assert samples and samples[-1]["text"].startswith("The")


def test_muon_optimizer_trains(tokens, tmp_path):
    cfg = PretrainSettings(**{**MICRO, "optimizer": "muon", "max_steps": 25, "eval_every": 0, "checkpoint_every": 0})
    seen = []
    summary = train(cfg, tokens, tmp_path, logger=CallbackLogger(lambda m, s: seen.append(m["loss"])))
    assert summary["status"] == "completed"
    assert sum(seen[-5:]) / 5 < sum(seen[:5]) / 5 - 0.5


_RUNNER = """
import json, os, signal, sys
from conf.pretrain import PretrainSettings
from lm.train import train
from lm.tracking import CallbackLogger
tokens, out, cfg, kill_at, sig, resume = sys.argv[1:7]
kill_at = int(kill_at)
def cb(metrics, step):
    if step == kill_at:
        os.kill(os.getpid(), getattr(signal, sig))
res = train(PretrainSettings.from_dict(json.loads(cfg)), tokens, out, resume=resume == "1", logger=CallbackLogger(cb))
print("SUMMARY " + json.dumps(res))
"""


def _run(tmp_path, tokens, out, cfg, kill_at=0, sig="SIGKILL", resume=False):
    script = tmp_path / "runner.py"
    script.write_text(_RUNNER)
    return subprocess.run([sys.executable, str(script), str(tokens), str(out), json.dumps(cfg), str(kill_at), sig,
                           "1" if resume else "0"], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)


def test_killed_and_resumed_run_matches_uninterrupted_bit_for_bit(tokens, tmp_path):
    ref = _run(tmp_path, tokens, tmp_path / "ref", MICRO)
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path / "interrupted"
    # SIGTERM at step 15: the handler asks for a checkpoint at the step boundary.
    r1 = _run(tmp_path, tokens, out, MICRO, kill_at=15, sig="SIGTERM")
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert '"status": "interrupted"' in r1.stdout and json.loads((out / "latest" / "config.json").read_text())["step"] == 15
    # SIGKILL at step 27: no chance to save; the step-20 checkpoint is what remains.
    r2 = _run(tmp_path, tokens, out, MICRO, kill_at=27, sig="SIGKILL", resume=True)
    assert r2.returncode == -9, r2.stderr[-3000:]
    assert json.loads((out / "latest" / "config.json").read_text())["step"] == 20
    assert not list(out.glob("*.tmp-*"))
    r3 = _run(tmp_path, tokens, out, MICRO, resume=True)
    assert r3.returncode == 0, r3.stderr[-3000:]

    want = read_jsonl_metrics(tmp_path / "ref" / "metrics.jsonl")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    got = [r for r in lines if r["kind"] == "metrics"]
    # Every record, including steps 21–27 computed twice (before the kill and after resume).
    assert sorted({r["step"] for r in got}) == list(range(1, 41)) and len(got) == 40 + 7
    for r in got:
        for key in ("loss", "grad_norm", "lr"):
            assert r[key] == want[r["step"]][key], (r["step"], key)
    for step in (20, 40):
        assert read_jsonl_metrics(out / "metrics.jsonl")[step]["val_loss"] == want[step]["val_loss"]
    a = load_model(tmp_path / "ref" / "final")[0].state_dict()
    b = load_model(out / "final")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_process_gloo_ddp_matches_single_process(tokens, tmp_path):
    cfg = {**MICRO, "max_steps": 8, "eval_every": 8, "checkpoint_every": 0, "device_batch_size": 4}
    (tmp_path / "ddp.json").write_text(json.dumps(cfg))
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "lm.train", "--tokens", str(tokens), "--out", str(tmp_path / "ddp"),
                          "--config", str(tmp_path / "ddp.json")],
                         env=_env(), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    # One process, batch 4, two accumulation steps: the same 8 windows per step.
    single_cfg = PretrainSettings(**{**cfg, "total_batch_tokens": 2 * 4 * 64})
    seen = {}
    train(single_cfg, tokens, tmp_path / "single", logger=CallbackLogger(lambda m, s: seen.setdefault(s, m)))
    got = read_jsonl_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert sorted(got) == list(range(1, 9))
    for s in range(1, 9):
        assert got[s]["loss"] == pytest.approx(seen[s]["loss"], rel=1e-4, abs=1e-5), s
    assert got[8]["val_loss"] == pytest.approx(seen[8]["val_loss"], rel=1e-4)
    assert json.loads((tmp_path / "ddp" / "summary.json").read_text())["world_size"] == 2


def test_resume_without_checkpoint_is_a_clear_error(tokens, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(PretrainSettings(**MICRO), tokens, tmp_path, resume=True)


@pytest.mark.parametrize("victim, message", [("model.safetensors", r"model\.safetensors does not match its sha256"),
                                             ("train_state.pt", r"train_state\.pt does not match its sha256")])
def test_corrupt_checkpoint_is_a_clear_error(trained, tokens, tmp_path, victim, message):
    src, _, _ = trained
    out = tmp_path / "run"
    shutil.copytree(src / "latest", out / "latest")
    f = out / "latest" / victim
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    with pytest.raises(CheckpointError, match=message):
        train(PretrainSettings(**{**MICRO, "max_steps": 60}), tokens, out, resume=True)


def test_resume_refuses_a_different_model(trained, tokens, tmp_path):
    src, _, _ = trained
    shutil.copytree(src / "latest", tmp_path / "latest")
    with pytest.raises(CheckpointError, match="different model"):
        train(PretrainSettings(**{**MICRO, "depth": 3}), tokens, tmp_path, resume=True)


def test_bad_batch_geometry_is_a_clear_error(tokens, tmp_path):
    with pytest.raises(ValueError, match="total_batch_tokens"):
        train(PretrainSettings(**{**MICRO, "total_batch_tokens": 1000}), tokens, tmp_path)


def test_inloop_core_subset_is_logged_beside_the_loss(tokens, tmp_path):
    seen: list[tuple[int, dict]] = []
    cfg = PretrainSettings(**{**MICRO, "max_steps": 6, "eval_every": 0, "checkpoint_every": 0, "inloop_every": 3,
                         "inloop_items": 8, "inloop_tasks": ["arc_easy", "copa"]})
    train(cfg, tokens, tmp_path / "run", logger=CallbackLogger(lambda m, s: seen.append((s, dict(m)))))
    at = {s: m for s, m in seen if "eval/core_inloop/centered_mean" in m}
    assert sorted(at) == [3, 6]
    for m in at.values():
        assert 0 <= m["eval/core_inloop/arc_easy"] <= 1 and 0 <= m["eval/core_inloop/copa"] <= 1
        assert m["eval/core_inloop/seconds"] > 0 and "loss" in m
    assert not any("eval/core_inloop/copa" in m for s, m in seen if s not in at)
