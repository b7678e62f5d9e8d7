"""Exact resume with the new recipe's optimizer state: Muon + AdamW groups with scaled lrs, scheduled
weight decay, warmdown, value embeddings.

Token shards GENERATED from the bundled tinyshakespeare (tests/support/toy.py). A run
stopped by SIGTERM mid-warmdown and resumed must log the same losses and end
with the same weights, bit for bit, as an uninterrupted one.
"""
import json
import os
import signal
from pathlib import Path

import torch

from lm.checkpoint import load_model
from lm.tracking import CallbackLogger, read_jsonl_metrics
from conf.pretrain import PretrainSettings
from lm.train import train
from tests.support.toy import make_generated_token_shards

REPO = Path(__file__).resolve().parents[2]

RECIPE = dict(depth=2, sequence_len=64, device_batch_size=4, max_steps=16, warmup_steps=2, optimizer="muon",
              lr=4e-3, embedding_lr=0.2, muon_lr=0.02, weight_decay=0.1, wd_schedule="linear", schedule="wsd",
              decay_frac=0.6, decay_shape="sqrt", min_lr_ratio=0.0, value_embeds=True,
              lr_ref_batch_tokens=1024, lr_ref_width=256,  # ≠ this run's 256 tokens, width 128: scaled
              eval_every=8, eval_tokens=1024, checkpoint_every=0, sample_every=0, sample_tokens=0,
              progress=False, threads=1, seed=7)


def test_stopped_and_resumed_run_matches_uninterrupted_bit_for_bit(tmp_path):
    text = (REPO / "data" / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")[:60_000]
    tokens = make_generated_token_shards(tmp_path / "tok", [text], 384, val_fraction=0.1,
                                         source="generated-test:tinyshakespeare")
    cfg = PretrainSettings(**RECIPE)
    ref = train(cfg, tokens, tmp_path / "ref")
    assert ref["status"] == "completed"

    def stop_at_10(metrics, step):
        if step == 10:  # mid-warmdown (it starts at step 6)
            os.kill(os.getpid(), signal.SIGTERM)

    out = tmp_path / "run"
    first = train(cfg, tokens, out, logger=CallbackLogger(stop_at_10))
    assert first["status"] == "interrupted" and first["step"] == 10
    saved = torch.load(out / "latest" / "train_state.pt", weights_only=True)
    adam, muon = saved["optimizer"]["optimizers"]
    groups = {g["name"]: g for g in adam["param_groups"] + muon["param_groups"]}
    assert groups["matrix"]["lr_scale"] == 0.5 and groups["head"]["lr_scale"] == 0.5 * 2 ** 0.5  # √(1/4), ×√2 width
    assert groups["head"]["weight_decay"] < groups["head"]["initial_weight_decay"]  # the wd schedule is running
    second = train(cfg, tokens, out, resume=True)
    assert second["status"] == "completed" and second["step"] == 16

    want = read_jsonl_metrics(tmp_path / "ref" / "metrics.jsonl")
    got = read_jsonl_metrics(out / "metrics.jsonl")
    assert sorted(got) == list(range(1, 17))
    for step in range(1, 17):
        for key in ("loss", "grad_norm", "lr"):
            assert got[step][key] == want[step][key], (step, key)
    assert got[16]["val_loss"] == want[16]["val_loss"]
    a, b = load_model(tmp_path / "ref" / "final")[0], load_model(out / "final")[0]
    assert a.config.value_embeds and b.config.value_embeds
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert json.loads((out / "summary.json").read_text())["step"] == 16
