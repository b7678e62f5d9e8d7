"""Reward model: losses against hand-computed values, real preference parsing, learning on GENERATED pairs."""
from __future__ import annotations

import math

import pytest
import torch

from conf.posttrain import RewardConfig, data_dir
from lm.chat import ChatError
from lm.datasets.preferences import load_preferences, parse_hh_dialogue, render_preferences, split_preferences
from lm.datasets.records import SkipStats
from lm.posttrain.reward import (RewardModel, bradley_terry_loss, load_reward_model, pairwise_accuracy,
                                 plackett_luce_loss, score_sequences, train_reward)
from tests.support.posttrain_base import SEQ_LEN, generated_preferences, load_base


def test_plackett_luce_and_bradley_terry_hand_computed():
    s = torch.tensor([[2.0, 1.0, 0.0]])
    lse = lambda *x: math.log(sum(math.exp(v) for v in x))  # noqa: E731
    expected = -(2 - lse(2, 1, 0)) - (1 - lse(1, 0))
    assert plackett_luce_loss(s).item() == pytest.approx(expected, rel=1e-6)
    pair = torch.tensor([[0.7, -0.4]])
    bt = bradley_terry_loss(pair[:, 0], pair[:, 1]).item()
    assert bt == pytest.approx(math.log(1 + math.exp(-(0.7 + 0.4))), rel=1e-6)
    assert plackett_luce_loss(pair).item() == pytest.approx(bt, rel=1e-6)  # K=2 is Bradley–Terry


def test_parse_real_preference_files():
    stats = SkipStats()
    d = data_dir() / "prefs"
    prefs = load_preferences([str(d / "hh-rlhf_harmless-base_test.jsonl.gz"), str(d / "llamafactory_dpo_en_demo.json")],
                             stats)
    s = stats.as_dict()
    n_hh = sum(1 for p in prefs if p.source == "hh-rlhf_harmless-base_test")
    n_dpo = sum(1 for p in prefs if p.source == "llamafactory_dpo_en_demo")
    assert n_dpo == 300 and n_hh + sum(v for k, v in s["skipped"].items() if k.startswith("hh")) == 2312
    assert n_hh > 2000
    p = prefs[0]
    assert p.prompt[-1]["role"] == "user" and p.chosen != p.rejected
    with pytest.raises(ChatError):
        parse_hh_dialogue("no markers here")
    # Splits are stable and a different salt gives a different split.
    a, b = split_preferences(prefs, 0.1), split_preferences(prefs, 0.1)
    assert [id(x) for x in a[1]] == [id(x) for x in b[1]]
    c = split_preferences(prefs, 0.1, salt="second")
    assert {id(x) for x in c[1]} != {id(x) for x in a[1]}


def test_reward_model_beats_chance_on_held_out_pairs(tmp_path):
    gpt, tok, _ = load_base()
    pairs = generated_preferences(tmp_path / "generated_pairs.jsonl", 240, seed=0)
    ranks = generated_preferences(tmp_path / "generated_rankings.jsonl", 60, seed=1, rankings=True)
    stats = SkipStats()
    prefs = load_preferences([str(pairs), str(ranks)], stats)
    train, val = split_preferences(prefs, 0.2)
    rtrain = render_preferences(train, tok, SEQ_LEN, stats)
    rval = [r for r in render_preferences(val, tok, SEQ_LEN, stats) if len(r.seqs) == 2]
    assert any(len(r.seqs) == 3 for r in rtrain) and len(rval) >= 30
    cfg = RewardConfig(steps=40, batch_size=8, lr=1e-3, eval_every=40, checkpoint_every=1000, log_every=10)
    res = train_reward(RewardModel(gpt), tok, rtrain, rval, cfg, tmp_path / "rm")
    assert res["val_accuracy"] >= 0.8, res
    # The saved reward model scores exactly as the trained one.
    rm, _, meta = load_reward_model(tmp_path / "rm" / "final")
    pad = tok.encode_special("<|pad|>")
    assert meta["kind"] == "reward"
    assert pairwise_accuracy(rm, rval, pad) == pytest.approx(res["val_accuracy"])
    s = score_sequences(rm, [r.seqs[0] for r in rval[:4]], pad)
    assert s.shape == (4,) and torch.isfinite(s).all()
