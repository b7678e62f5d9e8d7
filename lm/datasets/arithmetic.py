"""GENERATED arithmetic: one generator, one question renderer, one grader — for SFT, RL and eval.

Difficulty is the one knob (`LEVELS`; `describe` says it in words):
  0   a+b, operands 0–3 (a tiny CPU model learns it in minutes: the demo's RL task)
  1   a+b, one-digit operands
  2   a+b or a−b, two digits
  3   a+b, a−b or a×b, two digits
  4   a+b, a−b or a×b, three digits (the calculator's test: products no small model does in its head)
  ≥5  three terms a∘b±c with up to difficulty−2 digits

Items are {question, final, expr}; `question` is one of a few phrasings of the
spaced expression ("What is 12 + 7?"), `final` the value as text. Graded by
the number the model itself wrote (lm/datasets/answers.grade_reply, as GSM8K).

Draws: every user draws its own seeded stream, so no set is another's draw —
SFT: `problems(n, seed + 1)`; RL's training prompts: a per-step seed
(lm/posttrain/loop.step_seed); RL's before/after set: `heldout_problems`
(`HELDOUT_SEED + seed`); the evaluate stage: `eval_problems` (`EVAL_SEED +
seed`). At the small levels (16 distinct problems at 0) the same problem
recurs across draws: what these sets test there is the skill, not recall.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from lm.datasets.answers import grade_reply

grade = grade_reply  # (completion, final, tokenizer) -> bool: RL's reward and the evaluate stage's accuracy

HELDOUT_SEED = 10_000  # RL's before/after prompts: HELDOUT_SEED + seed
EVAL_SEED = 20_000     # the evaluate stage's items: EVAL_SEED + seed (neither RL nor SFT draws these seeds)


@dataclass(frozen=True)
class Level:
    hi: int    # operands are 0..hi
    ops: str   # the operator is drawn from these


LEVELS = {0: Level(3, "+"), 1: Level(9, "+"), 2: Level(99, "+-"), 3: Level(99, "+-*"), 4: Level(999, "+-*")}
_WORDS = {0: "sums of 0–3", 1: "one-digit sums", 2: "two-digit + and −", 3: "two-digit +, − and ×",
          4: "three-digit +, − and ×"}
_VALUE = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def describe(difficulty: int) -> str:
    """A level in words, for the report card: 'sums of 0–3', 'three-digit +, − and ×', …"""
    d = int(difficulty)
    return _WORDS.get(d) or f"three-term problems with up to {max(d - 2, 1)} digits"


def problem(rng: random.Random, difficulty: int = 1) -> tuple[str, int]:
    """A GENERATED expression ('12+7', unspaced) of the given difficulty and its integer value."""
    level = LEVELS.get(max(difficulty, 0))
    if level is not None:
        a, b = rng.randint(0, level.hi), rng.randint(0, level.hi)
        op = rng.choice(level.ops) if len(level.ops) > 1 else level.ops
        return f"{a}{op}{b}", _VALUE[op](a, b)
    hi = 10 ** (difficulty - 2) - 1
    a, b, c = (rng.randint(0, hi) for _ in range(3))
    o1, o2 = rng.choice("+-*"), rng.choice("+-")
    return f"{a}{o1}{b}{o2}{c}", _VALUE[o2](_VALUE[o1](a, b), c)


QUESTION_TEMPLATES = ["What is {e}?", "Compute {e}.", "{e} = ?", "Calculate {e}", "How much is {e}?"]


def spaced(expr: str) -> str:
    """'12+7' → '12 + 7': the form used in questions and tool calls (a call copies the question's tokens)."""
    return expr.replace("*", " * ").replace("+", " + ").replace("-", " - ")


def question(expr: str, rng: random.Random) -> str:
    """The one question renderer: a phrasing drawn from `QUESTION_TEMPLATES`."""
    return rng.choice(QUESTION_TEMPLATES).format(e=spaced(expr))


def problems(n: int, seed: int = 0, difficulty: int = 1) -> list[dict]:
    """`n` GENERATED items {question, final, expr}, deterministic in (seed, difficulty)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        expr, value = problem(rng, difficulty)
        out.append({"question": question(expr, rng), "final": str(value), "expr": expr})
    return out


def heldout_problems(n: int, seed: int = 0, difficulty: int = 1) -> list[dict]:
    """RL's before/after set: a stream no training draw uses."""
    return problems(n, HELDOUT_SEED + seed, difficulty)


def eval_problems(n: int, seed: int = 0, difficulty: int = 4) -> list[dict]:
    """The evaluate stage's items: a stream neither SFT, RL's training nor RL's own eval draws."""
    return problems(n, EVAL_SEED + seed, difficulty)


def prompt(item: dict) -> list[dict]:
    """The conversation a model answers: the question as one user turn."""
    return [{"role": "user", "content": item["question"]}]


def conversation(item: dict, use_tool: bool = True) -> list[dict]:
    """One GENERATED SFT conversation; with the tool, the answer copies the calculator's output."""
    value = item["final"]
    if use_tool:
        parts = [{"type": "tool_call", "text": spaced(item["expr"])}, {"type": "tool_output", "text": value},
                 {"type": "text", "text": f"The answer is {value}."}]
    else:
        parts = [{"type": "text", "text": f"The answer is {value}."}]
    return prompt(item) + [{"role": "assistant", "content": parts}]


def conversations(n: int, seed: int = 0, difficulty: int = 1, use_tool: bool = True) -> list[list[dict]]:
    """`n` GENERATED SFT conversations (the items of `problems(n, seed, difficulty)`)."""
    return [conversation(p, use_tool) for p in problems(n, seed, difficulty)]
