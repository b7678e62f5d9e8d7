"""The GRPO loop: rewards, diagnostics, variants, `beta: 0`, and RL raising pass@1 on GENERATED arithmetic.

The losses and advantages against hand-computed values: tests/lm/posttrain/test_policy_gradient.py.
"""
from __future__ import annotations

import math

import pytest
import torch

from conf.posttrain import RLConfig, SFTConfig, data_dir
from lm.engine import Completion
from lm.datasets import gsm8k
from lm.datasets.answers import extract_number, same_number
from lm.posttrain.rl import Problem, build_batch, exact_reward, train_rl
from lm.posttrain.sft import train_sft
from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources
from tests.support.posttrain_base import SEQ_LEN, load_base


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
    train, held = gsm8k.split(data_dir() / "gsm8k" / "train.jsonl")
    assert len(held) == 500 and len(train) == 7473 - 500
    assert not {p["question"] for p in held} & {p["question"] for p in train}
    assert held[-1]["final"] == extract_number(held[-1]["answer"])


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
                   max_new_tokens=12, lr=1e-3, num_iterations=2, eval_prompts=48, eval_samples=8, eval_every=30,
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
    keys = {"reward_mean", "reward_std", "frac_reward_zero_std", "pass@1", "pass@8", "response_len", "truncated_frac",
            "entropy", "clip_frac", "clip_frac_low", "clip_frac_high"}
    steps = [m for m in logged if "reward_mean" in m]
    assert len(steps) == 30 and all(keys <= set(m) for m in steps)
    assert all("kl" not in m for m in steps) and res["reference_model"] is False  # beta 0: no reference model
    assert any(m["clip_frac"] > 0 for m in steps)  # the second iteration moves the ratio off 1
    assert all(m["clip_frac"] == pytest.approx(m["clip_frac_low"] + m["clip_frac_high"]) for m in steps)
    assert all(0 < m["entropy"] < math.log(tok.vocab_size) for m in steps)
    assert all(0 <= m["frac_reward_zero_std"] <= 1 and 0 <= m["truncated_frac"] <= 1 for m in steps)
    assert (tmp_path / "rl" / "final" / "model.safetensors").exists()


def test_rl_resume_is_exact(tmp_path):
    """Stopping after 2 GRPO steps and resuming to 4 gives the weights of 4 uninterrupted steps."""
    from lm.checkpoint import load_weights

    def cfg(steps):
        return RLConfig(task="arithmetic", difficulty=0, steps=steps, prompts_per_step=2, samples_per_prompt=4,
                        max_new_tokens=6, lr=1e-3, num_iterations=2, beta=0.1, eval_prompts=2, eval_samples=1,
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


@pytest.mark.parametrize("options", [
    {"loss_type": "grpo", "scale_rewards": "batch", "mask_truncated_completions": True},
    {"loss_type": "dr_grpo", "importance_sampling_level": "sequence", "epsilon_high": 0.28, "device_batch_size": 2},
    {"loss_type": "bnpo", "objective": "reinforce_with_baseline", "scale_rewards": "none", "device_batch_size": 2},
    {"objective": "no_baseline", "beta": 0.05},
])
def test_every_variant_runs_the_loop(tmp_path, options):
    """One cheap step per variant through the real loop: finite loss and the step's diagnostics; a reference
    model (and a KL metric) exactly when beta > 0."""
    m, tok, _ = load_base()
    cfg = RLConfig(task="arithmetic", difficulty=0, steps=1, prompts_per_step=2, samples_per_prompt=2,
                   max_new_tokens=4, lr=1e-3, num_iterations=2, eval_prompts=1, eval_samples=1, eval_every=100,
                   checkpoint_every=100, **options)
    logged = []
    res = train_rl(m, tok, cfg, tmp_path, log_fn=lambda x, s: logged.append(x))
    step = next(x for x in logged if "reward_mean" in x)
    assert math.isfinite(step["loss"]) and 0 <= step["truncated_frac"] <= 1 and step["entropy"] >= 0
    assert res["reference_model"] is (cfg.beta > 0) and ("kl" in step) is (cfg.beta > 0)
