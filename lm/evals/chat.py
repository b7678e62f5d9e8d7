"""The chat-model suite: ARC lettered multiple choice, GSM8K (held-out), TriviaQA.

Every prompt is rendered by the project's one chat renderer
(`lm.chat.render_for_completion`) and answered greedily by the engine; only
what the model itself wrote is graded (`lm.datasets.answers.reply_text`: no tool calls,
no forced tool output) — GSM8K by `lm.evals.basic.gsm8k_eval` with
`lm.datasets.gsm8k.grade`, the function RL's reward calls.

- ARC-Easy / ARC-Challenge (`lm.datasets.benchmarks`: items, prompt, grader): the
  question with lettered choices; the first standalone letter of the reply is the
  answer (chance 1/#choices).
- GSM8K: its held-out problems (`lm.datasets.gsm8k.heldout`: never trained on).
- TriviaQA (rc.wikipedia.nocontext): the held-out questions of `lm.datasets.triviaqa`
  (the probe stage never trains on them), graded by `lm.datasets.triviaqa.grade`:
  exact match after the usual answer normalisation against any alias, and each
  reply classed right / wrong / abstained ("I don't know"), so hallucination
  (wrong) can be told from caution (abstain).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from lm.chat import render_for_completion
from lm.datasets import benchmarks as bd
from lm.datasets import gsm8k, triviaqa
from lm.datasets.answers import reply_text
from lm.evals.basic import gsm8k_eval

log = logging.getLogger(__name__)


def _generate(engine, prompts: list[str], max_new_tokens: int, batch_size: int) -> list:
    comps = []
    for start in range(0, len(prompts), batch_size):
        ids = [render_for_completion([{"role": "user", "content": p}], engine.tokenizer)
               for p in prompts[start:start + batch_size]]
        comps += engine.generate(ids, max_new_tokens, temperature=0.0, truncate="left")
    return comps


def arc_eval(engine, questions: Sequence[dict], batch_size: int = 8, max_new_tokens: int = 8) -> dict:
    comps = _generate(engine, [bd.arc_prompt(q) for q in questions], max_new_tokens, batch_size)
    rows = []
    for q, c in zip(questions, comps):
        got, ok = bd.arc_correct(q, reply_text(c, engine.tokenizer))
        rows.append({"id": q["id"], "expected": q["labels"][q["gold"]], "got": got, "correct": ok})
    n = max(len(rows), 1)
    return {"score": sum(r["correct"] for r in rows) / n, "n": len(rows),
            "chance": sum(1 / len(q["labels"]) for q in questions) / n,
            "unparsed": sum(r["got"] is None for r in rows), "rows": rows}


def gsm8k_chat_eval(engine, problems: Sequence[dict], batch_size: int = 8, max_new_tokens: int = 192) -> dict:
    """Greedy pass@1 on GSM8K problems {question, final} via lm.evals.basic.gsm8k_eval (the one grader)."""
    r = gsm8k_eval(engine, problems, k=1, max_new_tokens=max_new_tokens, batch_size=batch_size)
    return {"score": r["pass@1"], "n": r["n"], "chance": 0.0, "rows": r["rows"]}


def triviaqa_eval(engine, questions: Sequence[dict], batch_size: int = 8, max_new_tokens: int = 32) -> dict:
    """Greedy TriviaQA in the chat format: the hallucination eval (lm.evals.honesty) under the suite's keys."""
    from lm.evals.honesty import honesty_eval

    r = honesty_eval(engine, questions, "chat", max_new_tokens=max_new_tokens, batch_size=batch_size)
    return {"score": r["right"], "wrong_rate": r["wrong"], "abstain_rate": r["abstain"],
            "n": r["n"], "chance": 0.0, "rows": r["rows"]}


def run_chat(engine, limit: int | None = 100, gsm8k_path: str | Path | None = None, max_new_tokens: int = 192,
             batch_size: int = 8, root=None) -> dict:
    """Score a chat model on the chat suite: {"tasks": {name: metrics}, "seconds"}."""
    t0 = time.perf_counter()
    tasks: dict[str, dict] = {}
    for name, subset in (("arc_easy", "ARC-Easy"), ("arc_challenge", "ARC-Challenge")):
        tasks[name] = arc_eval(engine, bd.arc_questions(subset, limit, root), batch_size)
        log.info("chat %s: %.3f (chance %.3f, n=%d)", name, tasks[name]["score"], tasks[name]["chance"],
                 tasks[name]["n"])
    gsm8k_path = Path(gsm8k_path or gsm8k.default_path())
    if gsm8k_path.exists():
        tasks["gsm8k"] = gsm8k_chat_eval(engine, gsm8k.heldout(gsm8k_path, limit), batch_size, max_new_tokens)
        log.info("chat gsm8k: %.3f (n=%d)", tasks["gsm8k"]["score"], tasks["gsm8k"]["n"])
    else:
        log.warning("GSM8K file %s missing: chat suite skips gsm8k", gsm8k_path)
    tasks["triviaqa"] = triviaqa_eval(engine, triviaqa.heldout_questions(limit or 0, root), batch_size)
    t = tasks["triviaqa"]
    log.info("chat triviaqa: right %.3f wrong %.3f abstain %.3f (n=%d)", t["score"], t["wrong_rate"],
             t["abstain_rate"], t["n"])
    return {"tasks": tasks, "limit": limit, "seconds": round(time.perf_counter() - t0, 1)}
