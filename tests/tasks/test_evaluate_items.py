"""The evaluate stage's arithmetic items: RL's own task when `eval.arithmetic_difficulty` is set."""
from __future__ import annotations

from conf.evaluate import EvalConfig
from lm.posttrain.rl import arithmetic_problems
from tasks.evaluate import arithmetic_items


def test_arithmetic_items_follow_rls_task_on_fresh_draws():
    items = arithmetic_items(EvalConfig(arithmetic_n=64, arithmetic_difficulty=0))
    assert len(items) == 64 and all(0 <= int(p["final"]) <= 6 for p in items)  # sums of 0-3, as RL trains on
    rl_eval = arithmetic_problems(64, seed=10_000, difficulty=0)  # RL's own before/after set (seed 0)
    assert [p["question"] for p in items] != [p.conversation[-1]["content"] for p in rl_eval]
    # unset: the big-operand items (the calculator's test), as before
    big = arithmetic_items(EvalConfig(arithmetic_n=8))
    assert len(big) == 8 and big[0]["question"].startswith("What is ") and max(abs(int(p["final"])) for p in big) > 6
