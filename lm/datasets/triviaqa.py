"""TriviaQA (no context): the probe/held-out split, prompts, the one grader and the abstention detector.

- Split: the 7,993 validation questions in the project's deterministic order
  (sha1 of `triviaqa:<id>`, `lm.datasets.benchmarks.select`); the first part is for
  probing (and its first `SHOT_POOL` questions are the few-shot examples,
  never probed), the last `HELDOUT` are held out: the hallucination eval and
  the chat suite's TriviaQA read only those, so a question the probe turned
  into training data is never scored.
- Prompts: a base model gets few-shot `Question: …\\nAnswer: …` text (it has
  never seen the chat tokens); a chat model gets the question as a user turn,
  rendered by the one chat renderer (`lm.chat.render_for_completion`).
- Grader (`grade`): TriviaQA's exact match — answer normalisation (lower case,
  no punctuation or articles, squeezed spaces) against any alias — on the reply,
  its first line or first sentence, or the reply minus an "The answer is"
  lead-in. Right first; otherwise an abstention (`is_abstention`) or a reply
  without a single letter or digit abstains; anything else is wrong: a
  hallucination.
"""
from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Sequence

from lm.datasets.answers import reply_text

HELDOUT = 2000  # the last 2,000 questions of the order: never probed, never trained on
SHOT_POOL = 8   # the first questions of the probe part: few-shot examples only

VERDICTS = ("right", "wrong", "abstain")

# First-person statements of not knowing, in the wordings models and people use.
# Phrases, not words: "unknown" or "not sure" inside a reply can be an answer
# ("The Unknown Soldier"), so each pattern needs the speaker or a verb; a whole
# reply of "No idea." is a refusal (the grader checks the aliases first).
_ABSTAIN_PATTERNS = [
    r"\bi (?:really |honestly |simply |just )?(?:do not|don'?t|didn'?t|doesn'?t) (?:actually |really )?know\b",
    r"^(?:sorry|hmm|well)?[,.!\s]*(?:i )?(?:don'?t|do not) know\b",
    r"\bdunno\b",
    r"\bi(?:'m| am) (?:not (?:sure|certain|confident)|unsure|uncertain|unable to|afraid i (?:can(?:no|')t|don'?t))",
    r"\bi(?:'m| am) not able to (?:answer|say|tell|recall)",
    r"\bi (?:have|'ve got|got) no (?:idea|clue)\b",
    r"^no (?:idea|clue)[.!]?$",
    r"\bi (?:can'?t|cannot|can not|couldn'?t) (?:answer|say|tell|recall|remember|be (?:sure|certain))\b",
    r"\bi (?:don'?t|do not) (?:have|possess|hold) (?:enough |reliable |any |the |that |solid )*(?:information|knowledge|"
    r"facts|answer|data)\b",
    r"\bi have no (?:reliable |solid |good )?(?:information|knowledge)\b",
    r"\bi lack (?:the )?(?:information|knowledge)\b",
    r"\b(?:that'?s|that is|this is) (?:not something i know|beyond (?:my|what i) know)",
    r"\bbeyond (?:my|what i) know",
    r"\bi(?:'d| would) rather not guess\b", r"\bi won'?t (?:guess|make (?:up|something up))\b",
    r"\bi(?:'m| am) not (?:going to |gonna )?guess",
    r"\brather than (?:guess|make (?:something|an answer) up)\b",
    r"\bnot (?:sure|certain) (?:of|about) (?:the|that|this) answer\b",
    r"\bi (?:can'?t|cannot) (?:give|provide) (?:you )?(?:a |an )?(?:reliable |confident |correct )?answer\b",
]
_ABSTAIN = re.compile("|".join(f"(?:{p})" for p in _ABSTAIN_PATTERNS), re.I)
_LEAD_IN = re.compile(r"^(?:the answer is|answer is|answer|it is|it's|that is|that's|i think it is|i believe it is)"
                      r"\s*[:,-]?\s*", re.I)
_PUNCT = set(string.punctuation)


def is_abstention(reply: str) -> bool:
    """True when a reply says it does not know ("I don't know", "I'm not sure", "I have no idea", …)."""
    text = " ".join(reply.replace("\u2019", "'").split())
    return bool(_ABSTAIN.search(text))


def normalize_answer(s: str) -> str:
    """SQuAD/TriviaQA normalisation: lower case, drop punctuation and articles, squeeze spaces."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _heads(reply: str) -> set[str]:
    """The spans of a reply that count as its answer: all of it, first line, first sentence, minus a lead-in."""
    text = reply.strip()
    first_line = text.split("\n", 1)[0]
    first_sentence = re.split(r"(?<!\b[A-Z])(?<!\bSt)[.!?](?:\s|$)", first_line, maxsplit=1)[0]
    spans = {text, first_line, first_sentence}
    spans |= {_LEAD_IN.sub("", s) for s in list(spans)}
    return {normalize_answer(s) for s in spans} - {""}


def grade(reply: str, aliases: Sequence[str]) -> str:
    """THE TriviaQA grader: 'right' | 'wrong' (a hallucination) | 'abstain' for one reply."""
    golds = {normalize_answer(a) for a in aliases} - {""}
    if _heads(reply) & golds:
        return "right"
    # no words at all abstains; "The the the" normalises to nothing but is an attempt, so it is wrong
    if not any(ch.isalnum() for ch in reply) or is_abstention(reply):
        return "abstain"
    return "wrong"


def rates(verdicts: Sequence[str]) -> dict[str, float]:
    """Shares of right / wrong / abstain (0.0 each for no verdicts)."""
    n = len(verdicts)
    return {v: (sum(x == v for x in verdicts) / n if n else 0.0) for v in VERDICTS}


# ------------------------------------------------------------------ split
@functools.lru_cache(maxsize=4)
def _ordered(root: str | None) -> tuple[dict, ...]:
    from lm.datasets import benchmarks as bd

    return tuple(bd.triviaqa_questions(None, root))


def split(root: str | None = None, heldout: int = HELDOUT) -> tuple[list[dict], list[dict], list[dict]]:
    """(shots, probe, held-out): disjoint parts of the deterministic question order."""
    qs = list(_ordered(str(root) if root else None))
    if heldout + SHOT_POOL >= len(qs):
        raise ValueError(f"TriviaQA has {len(qs)} questions; cannot hold out {heldout} and keep {SHOT_POOL} shots")
    return qs[:SHOT_POOL], qs[SHOT_POOL:len(qs) - heldout], qs[len(qs) - heldout:]


def probe_questions(n: int, root: str | None = None) -> list[dict]:
    """The first n questions of the probe part (all of it when n ≤ 0)."""
    probe = split(root)[1]
    return probe if n <= 0 else probe[:n]


def heldout_questions(n: int, root: str | None = None) -> list[dict]:
    """The first n held-out questions (all of them when n ≤ 0): what every TriviaQA score reads."""
    held = split(root)[2]
    return held if n <= 0 else held[:n]


# ------------------------------------------------------------------ asking
def style_for(meta: dict, style: str = "auto") -> str:
    """'fewshot' for a base model, 'chat' for a post-trained one (style 'auto'); else `style` as given."""
    if style != "auto":
        if style not in ("chat", "fewshot"):
            raise ValueError(f"prompt style {style!r}: use auto, chat or fewshot")
        return style
    return "fewshot" if str(meta.get("kind") or "base").startswith("base") else "chat"


def fewshot_text(question: str, shots: Sequence[dict]) -> str:
    head = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
    return f"{head}Question: {question}\nAnswer:"


def prompt_ids(question: str, tokenizer, style: str, shots: Sequence[dict] = ()) -> list[int]:
    """Token ids that ask one question in the given style (see the module docstring)."""
    if style == "chat":
        from lm.chat import render_for_completion

        return render_for_completion([{"role": "user", "content": question}], tokenizer)
    return tokenizer.encode(fewshot_text(question, shots), prepend_bos=True)


def _reply(completion, tokenizer, style: str) -> str:
    text = reply_text(completion, tokenizer)
    # a base model goes on to the next "Question:" line; its answer is the first line
    return text.strip().split("\n", 1)[0].strip() if style == "fewshot" else text.strip()


def ask(engine, questions: Sequence[dict], style: str, samples: int = 1, temperature: float = 0.0,
        top_k: int | None = None, max_new_tokens: int = 24, batch_size: int = 8, seed: int = 0,
        shots: Sequence[dict] = (), progress: Callable[[int, int], None] | None = None) -> list[list[str]]:
    """`samples` replies of the model to every question (greedy when temperature ≤ 0), in question order.

    `progress(done, total)` is called after every batch (long probes log their progress).
    """
    out: list[list[str]] = []
    for b, start in enumerate(range(0, len(questions), batch_size)):
        batch = questions[start:start + batch_size]
        ids = [prompt_ids(q["question"], engine.tokenizer, style, shots) for q in batch]
        comps = engine.generate(ids, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed + b,
                                num_samples=samples, truncate="left")
        for i in range(len(batch)):
            out.append([_reply(c, engine.tokenizer, style) for c in comps[i * samples:(i + 1) * samples]])
        if progress is not None:
            progress(len(out), len(questions))
    return out
