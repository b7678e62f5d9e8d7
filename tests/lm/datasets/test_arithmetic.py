"""GENERATED arithmetic: one generator, one renderer, one grader, used alike by SFT, RL and eval."""
from __future__ import annotations

import random
import re

import pytest

from conf.posttrain import RLConfig
from lm.datasets import arithmetic
from lm.posttrain.loop import step_seed
from lm.posttrain.rl import task_prompts
from lm.posttrain.sft_data import SkipStats, load_sources

# Drawn by the three generators before they were merged (rl.arithmetic_problems(3, 5, d)): the merged one
# draws exactly the same, so SFT's and RL's data, and the demo's RL figures, did not move.
BEFORE = {0: [("How much is 2 + 2?", "4"), ("Compute 0 + 3.", "3"), ("What is 0 + 1?", "1")],
          1: [("9 + 4 = ?", "13"), ("Calculate 8 + 0", "8"), ("Compute 3 + 0.", "3")],
          2: [("How much is 79 - 32?", "47"), ("What is 3 + 59?", "62"), ("Calculate 20 - 14", "6")],
          3: [("79 * 32 = ?", "2528"), ("How much is 88 * 94?", "8272"), ("What is 3 + 59?", "62")]}


@pytest.mark.parametrize("difficulty", sorted(BEFORE))
def test_draws_are_those_sft_and_rl_made_before(difficulty):
    assert [(p["question"], p["final"]) for p in arithmetic.problems(3, 5, difficulty)] == BEFORE[difficulty]


def _value(expr: str) -> int:
    """Left to right: right for these expressions (a × can only come first, so it binds first anyway)."""
    terms = re.split(r"([+*-])", expr)
    x = int(terms[0])
    for op, y in zip(terms[1::2], terms[2::2]):
        x = x + int(y) if op == "+" else x - int(y) if op == "-" else x * int(y)
    return x


@pytest.mark.parametrize("difficulty", range(7))
def test_every_level_computes_its_answers_within_its_range(difficulty):
    for p in arithmetic.problems(200, seed=difficulty, difficulty=difficulty):
        assert set(p["expr"]) <= set("0123456789+-*") and str(_value(p["expr"])) == p["final"]
        assert arithmetic.spaced(p["expr"]) in p["question"]
    level = arithmetic.LEVELS.get(difficulty)
    if level:
        nums = [int(t) for p in arithmetic.problems(200, 1, difficulty)
                for t in p["expr"].replace("*", "+").replace("-", "+").split("+")]
        assert max(nums) <= level.hi and max(nums) > level.hi // 2
    assert arithmetic.describe(difficulty)


def test_sft_rl_and_eval_use_the_one_generator():
    # SFT's conversations are the items of problems(n, seed + 1), rendered by conversation()
    convs = [c for src, c in load_sources({}, SkipStats(), n_arithmetic=5, arithmetic_difficulty=2, seed=4)
             if src == "generated_arithmetic"]
    assert convs == [arithmetic.conversation(p) for p in arithmetic.problems(5, 5, 2)]
    assert convs[0][1]["content"][0] == {"type": "tool_call", "text": arithmetic.spaced(
        arithmetic.problems(1, 5, 2)[0]["expr"])}
    # RL: each step draws problems(prompts_per_step, step_seed(...)); its held-out set is heldout_problems
    cfg = RLConfig(task="arithmetic", difficulty=2, prompts_per_step=4, eval_prompts=6, seed=3)
    draw, held = task_prompts(cfg)
    assert [(p.conversation[-1]["content"], p.answer) for p in draw(7)] == [
        (p["question"], p["final"]) for p in arithmetic.problems(4, step_seed(3, 7, 2), 2)]
    assert [p.answer for p in held] == [p["final"] for p in arithmetic.heldout_problems(6, 3, 2)]
    # the evaluate stage's stream is neither
    ev = arithmetic.eval_problems(6, 3, 2)
    assert [p["question"] for p in ev] != [p.conversation[-1]["content"] for p in held]


def test_the_question_renderer_uses_every_template():
    rng = random.Random(0)
    seen = {arithmetic.question("2+3", rng) for _ in range(200)}
    assert seen == {t.format(e="2 + 3") for t in arithmetic.QUESTION_TEMPLATES}
