"""DPO: loss against hand-computed values, response-only targets, and a widening margin on GENERATED pairs."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from conf.posttrain import DPOConfig
from lm.posttrain.dpo import dpo_loss, response_targets, train_dpo
from lm.datasets.preferences import load_preferences, render_preferences, split_preferences
from lm.datasets.records import SkipStats
from tests.support.posttrain_base import SEQ_LEN, generated_preferences, load_base


def test_dpo_loss_hand_computed():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, st = dpo_loss(pc, pr, rc, rr, beta=0.5)
    m = [0.5 * ((-1 + 2) - (-3 + 2)), 0.5 * ((-2 + 2) - (-1 + 2))]  # [1.0, -0.5]
    expected = sum(math.log(1 + math.exp(-x)) for x in m) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert st["margin"] == pytest.approx(0.25) and st["accuracy"] == 0.5
    assert st["reward_chosen"] == pytest.approx(0.25) and st["reward_rejected"] == pytest.approx(0.0)


def test_response_targets_cover_only_the_response():
    x, y = response_targets([[1, 2, 3, 4, 5], [1, 2, 3]], [3, 2], pad_id=0)
    # seq0: prompt = 3 tokens, response = tokens 4, 5 → targets at positions 2, 3
    assert y.tolist() == [[-1, -1, 4, 5], [-1, 3, -1, -1]]
    assert x.tolist() == [[1, 2, 3, 4], [1, 2, 3, 0]]


def test_dpo_widens_chosen_minus_rejected_margin(tmp_path):
    model, tok, _ = load_base()
    ref = copy.deepcopy(model)
    stats = SkipStats()
    prefs = load_preferences([str(generated_preferences(tmp_path / "generated_pairs.jsonl", 160, seed=2))], stats)
    train, val = split_preferences(prefs, 0.2)
    rtrain, rval = render_preferences(train, tok, SEQ_LEN, stats), render_preferences(val, tok, SEQ_LEN, stats)
    cfg = DPOConfig(steps=20, batch_size=8, lr=1e-3, beta=0.1, eval_every=20, checkpoint_every=1000, log_every=5)
    logged = []
    res = train_dpo(model, ref, tok, rtrain, rval, cfg, tmp_path / "dpo", log_fn=lambda m, s: logged.append(m))
    assert res["val_start"]["margin"] == pytest.approx(0.0, abs=1e-5)  # policy == reference at the start
    assert res["val"]["margin"] > 0.5 and res["val"]["accuracy"] >= 0.9, res["val"]
    assert res["train"]["margin"] > 0.5
    assert all({"margin", "accuracy", "reward_chosen", "reward_rejected"} <= set(m) for m in logged if "loss" in m)
