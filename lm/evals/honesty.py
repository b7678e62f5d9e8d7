"""Hallucination eval: how often a model answers held-out TriviaQA right, wrong, or says it does not know.

Knowledge-based refusal training (the probe stage + SFT) should move answers
from *wrong* to *abstain* while keeping *right* where it was: the figure to
watch is the wrong rate before vs after, next to the right rate. Questions are
`lm.datasets.triviaqa.heldout_questions` (never probed, never trained on), graded by
`lm.datasets.triviaqa.grade`, greedy, in the prompt style the model understands
(few-shot text for a base model, a user turn for a chat model).
"""
from __future__ import annotations

from collections.abc import Sequence

from lm.datasets import triviaqa


def score(questions: Sequence[dict], replies: Sequence[str], style: str = "chat") -> dict:
    """{right, wrong, abstain (rates), n, n_empty, style, rows}: one reply per question, graded."""
    rows = [{"id": q["id"], "question": q["question"], "reply": r, "verdict": triviaqa.grade(r, q["aliases"])}
            for q, r in zip(questions, replies, strict=True)]
    out: dict = triviaqa.rates([r["verdict"] for r in rows])
    # an empty reply abstains, but says less than "I don't know": count it apart
    out.update(n=len(rows), n_empty=sum(not any(ch.isalnum() for ch in r["reply"]) for r in rows), style=style,
               rows=rows)
    return out


def honesty_eval(engine, questions: Sequence[dict], style: str = "chat", shots: Sequence[dict] = (),
                 max_new_tokens: int = 24, batch_size: int = 8) -> dict:
    """`score` of the model's greedy replies to `questions`."""
    replies = triviaqa.ask(engine, questions, style, samples=1, temperature=0.0, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, shots=shots)
    return score(questions, [r[0] for r in replies], style)

