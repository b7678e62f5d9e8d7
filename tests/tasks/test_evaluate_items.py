"""The evaluate stage's arithmetic items: the one generator (lm/datasets/arithmetic.py), on a stream no training
draws."""
from __future__ import annotations

from conf.evaluate import EvalConfig
from lm.datasets import arithmetic
from lm.posttrain.loop import step_seed
from tasks.evaluate import arithmetic_items


def test_arithmetic_items_follow_rls_task_on_fresh_draws():
    items = arithmetic_items(EvalConfig(arithmetic_n=64, arithmetic_difficulty=0))
    assert len(items) == 64 and all(0 <= int(p["final"]) <= 6 for p in items)  # sums of 0-3, as RL trains on
    rl_eval = arithmetic.heldout_problems(64, seed=0, difficulty=0)  # RL's own before/after set (seed 0)
    assert [p["question"] for p in items] != [p["question"] for p in rl_eval]
    # RL's training draws (per-step seeds) and SFT's (seed + 1) never use the evaluate stage's or RL's eval seeds
    for seed in (0, 1, 7):
        train_seeds = {step_seed(seed, step, 2) for step in range(100_000)} | {seed + 1}
        assert not train_seeds & {arithmetic.EVAL_SEED + seed, arithmetic.HELDOUT_SEED + seed}
    # default: +, − and × of three-digit numbers (the calculator's test), same question forms as SFT's
    big = arithmetic_items(EvalConfig(arithmetic_n=8))
    assert len(big) == 8 and max(abs(int(p["final"])) for p in big) > 999
    assert all(arithmetic.spaced(p["expr"]) in p["question"] for p in big)  # the one question renderer
