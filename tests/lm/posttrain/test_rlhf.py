"""RLHF: GRPO against a reward model raises its score within the KL bound; the hacking monitor stops divergence."""
from __future__ import annotations

import torch

from conf.posttrain import RewardConfig, RLHFConfig
from lm.datasets.preferences import load_preferences, render_preferences, split_preferences
from lm.datasets.records import SkipStats
from lm.posttrain.reward import RewardModel, load_reward_model, train_reward
from lm.posttrain.rlhf import HackingMonitor, load_prompts, train_rlhf
from tests.support.posttrain_base import SEQ_LEN, generated_preferences, load_base


def _row(rm, kl=0.0, length=10.0, check=0.0):
    return {"reward_mean": rm, "kl": kl, "response_len": length, "check_rm": check}


def test_monitor_stops_on_kl_bound_and_on_divergence():
    m = HackingMonitor(kl_max=1.0, window=2, patience=2, signal="rm2")
    assert m(_row(0.0, kl=0.5), 1) is None
    assert "kl_bound" in m(_row(0.0, kl=1.5), 2)
    m = HackingMonitor(kl_max=10, window=2, patience=2, signal="rm2")
    reasons = [m(_row(0.5 * s, check=-0.5 * s), s) for s in range(1, 9)]
    assert reasons[:5] == [None] * 5 and "reward_hacking" in reasons[5]  # 3rd rising window = 2nd strike
    m = HackingMonitor(kl_max=10, window=2, patience=2, signal="rm2")  # both rise together: no stop
    assert all(m(_row(0.5 * s, check=0.5 * s), s) is None for s in range(1, 12))
    m = HackingMonitor(kl_max=10, window=1, patience=2, signal="length")
    out = [m(_row(s, length=10 * 3 ** s), s) for s in range(0, 5)]
    assert out[-1] is not None and "length" in out[-1]


def test_rlhf_raises_reward_model_score_within_kl_bound(tmp_path):
    gpt, tok, _ = load_base()
    stats = SkipStats()
    path = generated_preferences(tmp_path / "generated_pairs.jsonl", 200, seed=4)
    prefs = load_preferences([str(path)], stats)
    train, val = split_preferences(prefs, 0.1)
    res = train_reward(RewardModel(gpt), tok, render_preferences(train, tok, SEQ_LEN, stats),
                       render_preferences(val, tok, SEQ_LEN, stats),
                       RewardConfig(steps=30, batch_size=8, lr=1e-3, eval_every=30, checkpoint_every=1000),
                       tmp_path / "rm")
    rm, _, _ = load_reward_model(res["checkpoint"])
    policy, _, _ = load_base()
    prompts = load_prompts([str(path)], tok, SEQ_LEN - 16, stats, max_prompts=64)
    assert len(prompts) == 64
    cfg = RLHFConfig(steps=24, prompts_per_step=4, samples_per_prompt=4, max_new_tokens=16, lr=2e-3,
                     kl_coef=0.05, kl_max=2.0, eval_every=6, checkpoint_every=1000, log_every=6)
    torch.manual_seed(0)
    out = train_rlhf(policy, tok, rm, prompts, cfg, tmp_path / "rlhf")
    steps = out["steps"]
    first = sum(s["reward_mean"] for s in steps[:6]) / 6
    last = sum(s["reward_mean"] for s in steps[-6:]) / 6
    assert out["stop_reason"] is None, out["stop_reason"]
    assert last > first + 0.5, (first, last)
    assert max(s["kl"] for s in steps) <= cfg.kl_max
    assert steps[-1]["kl"] > 0  # the policy moved away from the reference


def test_rlhf_stops_early_when_kl_bound_is_crossed(tmp_path):
    """A run with a near-zero KL bound stops after the first step that moved the policy, and says why."""
    gpt, tok, _ = load_base()
    rm = RewardModel(gpt)
    torch.nn.init.normal_(rm.head.weight, std=1.0)  # an arbitrary (untrained) reward: any signal moves the policy
    policy, _, _ = load_base()
    stats = SkipStats()
    path = generated_preferences(tmp_path / "generated_pairs.jsonl", 20, seed=5)
    prompts = load_prompts([str(path)], tok, SEQ_LEN - 8, stats)
    cfg = RLHFConfig(steps=10, prompts_per_step=2, samples_per_prompt=4, max_new_tokens=8, lr=1e-2, kl_coef=0.0,
                     kl_max=1e-6, eval_every=100, checkpoint_every=1000)
    out = train_rlhf(policy, tok, rm, prompts, cfg, tmp_path / "rlhf")
    assert out["stop_reason"].startswith("kl_bound")
    assert out["steps_done"] == 2 == len(out["steps"])  # step 1 measures KL before any update
    assert (tmp_path / "rlhf" / "final" / "model.safetensors").exists()
