"""GRPO: advantages and loss against hand-computed values, rewards, and RL raising pass@1 on GENERATED arithmetic."""
from __future__ import annotations

import math

import pytest
import torch

from conf.posttrain import RLConfig, SFTConfig, data_dir
from lm.engine import Completion
from lm.gsm8k import extract_number, gsm8k_split, same_number
from lm.rl import Problem, build_batch, exact_reward, group_advantages, grpo_loss, train_rl
from lm.sft import train_sft
from lm.sft_data import SkipStats, build_sft_data, load_sources
from tests.support.posttrain_base import SEQ_LEN, load_base


def test_group_advantages_hand_computed():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    a = group_advantages(r, eps=1e-4)
    assert a[0].tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001, -0.5 / 0.5001, 0.5 / 0.5001])
    assert a[1].tolist() == [0.0] * 4  # no signal when every sample scores the same
    std = math.sqrt(0.5)
    assert a[2].tolist() == pytest.approx([1 / (std + 1e-4), -1 / (std + 1e-4), 0.0, 0.0])


def test_grpo_loss_hand_computed():
    logp_old = torch.zeros(2, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5], [1.1, 1.0]]))
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, st = grpo_loss(logp, logp_old, adv, mask, clip_eps=0.2)
    # row 0 (A=+1): min(1.5, 1.2)=1.2 ; min(0.5, 0.8)=0.5 ; row 1 (A=-1): min(-1.1, -1.1)=-1.1 ; 3 tokens
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.1) / 3, rel=1e-6)
    assert st["clip_frac"] == pytest.approx(1 / 3)
    # With a reference at logp=0 and β=0.1: k3 KL per token = 1/ρ + log ρ - 1.
    kl = [1 / 1.5 + math.log(1.5) - 1, 1 / 0.5 + math.log(0.5) - 1, 1 / 1.1 + math.log(1.1) - 1]
    loss2, st2 = grpo_loss(logp, logp_old, adv, mask, clip_eps=0.2, logp_ref=torch.zeros(2, 2), kl_coef=0.1)
    assert st2["kl"] == pytest.approx(sum(kl) / 3, rel=1e-6)
    assert loss2.item() == pytest.approx((-1.2 - 0.5 + 1.1 + 0.1 * sum(kl)) / 3, rel=1e-6)
    # Gradient flows only through unclipped tokens: the clipped token (ρ=1.5, A>0) gets none.
    lp = logp.clone().requires_grad_(True)
    grpo_loss(lp, logp_old, adv, mask, clip_eps=0.2)[0].backward()
    assert lp.grad[0, 0] == 0 and lp.grad[0, 1] != 0 and lp.grad[1, 0] != 0 and lp.grad[1, 1] == 0


def _completion(tok, parts, forced_spans):
    ids, forced = [], []
    for text, is_forced in zip(parts, forced_spans):
        t = [tok.encode_special(text)] if text.startswith("<|") else tok.encode(text)
        ids += t
        forced += [int(is_forced)] * len(t)
    return Completion(tokens=ids, forced_mask=forced)


def test_reward_reads_the_models_own_answer_not_the_tool_output():
    tok = load_base()[1]
    parts = ["<|tool_start|>", "2+3", "<|tool_end|>", "<|output_start|>", "5", "<|output_end|>"]
    forced = [0, 0, 0, 1, 1, 1]
    good = _completion(tok, parts + ["The answer is 5.", "<|assistant_end|>"], forced + [0, 0])
    wrong = _completion(tok, parts + ["The answer is 6.", "<|assistant_end|>"], forced + [0, 0])
    silent = _completion(tok, parts + ["<|assistant_end|>"], forced + [0])
    p = Problem([{"role": "user", "content": "2+3?"}], "5")
    assert [exact_reward(p, c, tok) for c in (good, wrong, silent)] == [1.0, 0.0, 0.0]
    # Forced tool output never becomes a training target.
    _, targets, m = build_batch([[1, 2]], [good], pad_id=0, max_len=64)
    n_forced = sum(good.forced_mask)
    assert int(m.sum()) == len(good.tokens) - n_forced
    assert int((targets >= 0).sum()) == len(good.tokens) - n_forced


def test_gsm8k_answers_and_split():
    assert extract_number("so 3 + 4 = 7\n#### 1,234") == "1234"
    assert extract_number("The answer is 42.") == "42"
    assert extract_number("no digits") is None
    assert same_number("1,000", "1000.0") and not same_number("7", "8") and not same_number(None, "1")
    train, held = gsm8k_split(data_dir() / "gsm8k" / "train.jsonl", 500)
    assert len(held) == 500 and len(train) == 7473 - 500
    assert not {p["question"] for p in held} & {p["question"] for p in train}
    assert held[-1]["gold"] == extract_number(held[-1]["answer"])


def test_rl_raises_pass_at_1_on_generated_arithmetic(tmp_path):
    """Brief SFT (200 steps; 300 already solves it, 120 is hopeless) on GENERATED sums of 0–3 leaves room;
    GRPO then raises held-out pass@1 (sampled at temperature 1)."""
    torch.manual_seed(0)
    model, tok, _ = load_base()
    stats = SkipStats()
    convs = load_sources({}, stats, n_identity=20, n_arithmetic=600, arithmetic_difficulty=0, arithmetic_tool=False)
    data = build_sft_data(convs, tok, SEQ_LEN, 0.05, stats)
    train_sft(model, tok, data, SFTConfig(steps=200, batch_size=8, lr=3e-3, eval_every=1000, checkpoint_every=1000,
                                          alpaca_path=None, glaive_path=None), tmp_path / "sft")
    cfg = RLConfig(task="arithmetic", difficulty=0, steps=30, prompts_per_step=8, samples_per_prompt=8,
                   max_new_tokens=12, lr=1e-3, ppo_epochs=2, eval_prompts=48, eval_samples=8, eval_every=30,
                   log_every=10, checkpoint_every=1000)
    logged = []
    res = train_rl(model, tok, cfg, tmp_path / "rl", log_fn=lambda m, s: logged.append(m))
    assert 0.2 < res["pass@1_before"] < 0.9, res["history"]  # room to improve: neither hopeless nor solved
    assert res["pass@1_after"] > res["pass@1_before"] + 0.08, res["history"]
    # paired on the same 48 prompts: per-prompt scores average to pass@1; only numbers reach the metric log
    paired = res["pass@1_paired"]
    assert paired["n"] == 48 and paired["diff"] == pytest.approx(res["pass@1_after"] - res["pass@1_before"])
    assert paired["lo"] <= paired["diff"] <= paired["hi"]
    assert all(len(h["per_prompt"]) == 48 for h in res["history"])
    assert all(isinstance(v, (int, float)) for m in logged for v in m.values())
    keys = {"reward_mean", "pass@1", "pass@8", "response_len", "kl", "clip_frac"}
    steps = [m for m in logged if "reward_mean" in m]
    assert len(steps) == 30 and all(keys <= set(m) for m in steps)
    assert any(m["clip_frac"] > 0 for m in steps)  # the second PPO epoch moves the ratio off 1
    assert (tmp_path / "rl" / "final" / "model.safetensors").exists()


def test_rl_resume_is_exact(tmp_path):
    """Stopping after 2 GRPO steps and resuming to 4 gives the weights of 4 uninterrupted steps."""
    from lm.checkpoint import load_weights

    def cfg(steps):
        return RLConfig(task="arithmetic", difficulty=0, steps=steps, prompts_per_step=2, samples_per_prompt=4,
                        max_new_tokens=6, lr=1e-3, ppo_epochs=2, kl_coef=0.1, eval_prompts=2, eval_samples=1,
                        eval_every=100, checkpoint_every=2)

    m, tok, _ = load_base()
    train_rl(m, tok, cfg(4), tmp_path / "straight")
    m, tok, _ = load_base()
    train_rl(m, tok, cfg(2), tmp_path / "resumed")
    m, tok, _ = load_base()
    res = train_rl(m, tok, cfg(4), tmp_path / "resumed")
    assert res["steps_done"] == 4
    a, b = load_weights(tmp_path / "straight" / "final"), load_weights(tmp_path / "resumed" / "final")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
