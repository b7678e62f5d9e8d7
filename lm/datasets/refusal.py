"""GENERATED knowledge-based refusal data: SFT conversations from what a probe found the model knows.

The recipe Meta describes for Llama 3: ask the model questions with known
answers, sample several replies each, grade them; where it answers right at
least once, train on a correct answer (confidence it has earned); where it is
never right, train on an honest refusal. The model learns to say "I don't
know" about what it does not know, not in general.

Refusals come in varied wording (`REFUSALS`, chosen per question by a stable
hash, so a re-run writes the same file) so the model learns the intent, not
one sentence; every wording is one `lm.datasets.triviaqa.is_abstention` detects (tested).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

SOURCE = "generated_refusal"  # the SFT source name: its counts show under this key

REFUSALS = [
    "I don't know.",
    "I don't know the answer to that.",
    "I'm not sure, and I'd rather not guess.",
    "I'm not certain about that one, so I won't guess.",
    "Sorry, I don't know.",
    "I have no reliable information about that.",
    "I'm afraid I don't know the answer.",
    "I can't answer that with confidence.",
    "That is beyond what I know, sorry.",
    "I do not know. I would rather say so than make something up.",
    "Honestly, I have no idea.",
    "I'm not sure of the answer to that question.",
]
ANSWERS = ["{a}", "{a}.", "The answer is {a}.", "It is {a}."]


def _pick(options: list[str], key: str) -> str:
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return options[h % len(options)]


def refusal_conversation(question: dict) -> list[dict]:
    """A user asks `question`; the assistant honestly says it does not know (wording varies by question)."""
    return [{"role": "user", "content": question["question"]},
            {"role": "assistant", "content": _pick(REFUSALS, f"refusal:{question['id']}")}]


def answer_conversation(question: dict) -> list[dict]:
    """A user asks `question`; the assistant gives the known correct (canonical) answer."""
    answer = _pick(ANSWERS, f"answer:{question['id']}").format(a=question["answer"])
    return [{"role": "user", "content": question["question"]}, {"role": "assistant", "content": answer}]


def probe_conversations(results: Iterable[dict], min_correct: int = 1) -> list[dict]:
    """SFT records {id, kind, n_right, k, messages} from probe results {id, question, answer, n_right, k}.

    Right at least `min_correct` times of k → an answer conversation; never right → a refusal;
    in between (right, but fewer than `min_correct` times) → left out, neither known nor unknown.
    """
    out = []
    for r in results:
        if r["n_right"] >= max(1, min_correct):
            kind, conv = "answer", answer_conversation(r)
        elif r["n_right"] == 0:
            kind, conv = "refusal", refusal_conversation(r)
        else:
            continue
        out.append({"id": r["id"], "kind": kind, "n_right": r["n_right"], "k": r["k"], "messages": conv})
    return out
