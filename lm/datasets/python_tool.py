"""GENERATED python-tool data: what a token-based model is bad at, answered by running a snippet.

Four kinds of question, each with the snippet an assistant should write:
  letters   How many r's are in "strawberry"?   python: print("strawberry".count("r"))
  reverse   Spell "planet" backwards.            python: print("planet"[::-1])
  digitsum  What is the sum of the digits of 90817?   python: print(sum(int(d) for d in "90817"))
  multiply  What is 4821 * 977?                 python: print(4821 * 977)

A conversation is: user question → assistant tool call → tool output (the
snippet's stdout, forced by the engine, masked out of training by lm/chat.py)
→ the assistant's answer, which copies the output. The outputs here are
computed directly (the snippets are deterministic); tests/lm/tools/test_tools_python.py
checks them against the real sandbox.

Held out: a stable hash of each question's key (the word, or the numbers) puts
a fifth of all keys aside; `python_problems(..., heldout=True)` draws only
those, SFT data never does — so the eval measures questions the model never saw.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

from lm.tokenizer import Tokenizer

KINDS = ("letters", "reverse", "digitsum", "multiply")
HELDOUT_FRACTION = 0.2
# Common English words (GENERATED list, written for this module).
WORDS = """strawberry banana apple orange mississippi letter bookkeeper committee balloon coffee
programming engineer parallel necessary accommodate occurrence tomorrow raspberry blueberry pepper
cheese butterfly elephant giraffe kangaroo umbrella chocolate vanilla cinnamon broccoli spaghetti
lollipop bubble puzzle jazz pizza hello world python planet garden window kitchen mirror
river mountain valley ocean island forest desert village city bridge tunnel castle
summer winter autumn spring morning evening midnight weekend holiday birthday library
teacher student doctor science history language grammar sentence paragraph chapter novel
computer keyboard monitor printer network library database address success possess
assessment embarrass harass occasion recommend millennium questionnaire referee tattoo
""".split()
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _heldout(key: str) -> bool:
    h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return h < HELDOUT_FRACTION * 0xFFFFFFFF


def _problem(kind: str, rng: random.Random) -> dict:
    if kind == "letters":
        w = rng.choice(WORDS)
        # mostly letters the word has (often repeated ones), sometimes one it lacks (answer 0)
        c = rng.choice(w) if rng.random() < 0.85 else rng.choice([x for x in _LETTERS if x not in w])
        q = rng.choice(["How many {c}'s are in \"{w}\"?", "Count the letter {c} in \"{w}\".",
                        "How many times does \"{c}\" appear in \"{w}\"?"]).format(c=c, w=w)
        code, answer = f'print("{w}".count("{c}"))', str(w.count(c))
        text = f'There are {answer} "{c}" in "{w}".' if rng.random() < 0.5 else f"The answer is {answer}."
        return dict(kind=kind, key=f"{kind}:{w}:{c}", question=q, code=code, output=answer, answer=answer, text=text)
    if kind == "reverse":
        w = rng.choice(WORDS)
        q = rng.choice(["Spell \"{w}\" backwards.", "Reverse the word \"{w}\".", "What is \"{w}\" written backwards?"])
        answer = w[::-1]
        return dict(kind=kind, key=f"{kind}:{w}", question=q.format(w=w), code=f'print("{w}"[::-1])', output=answer,
                    answer=answer, text=f'"{w}" backwards is "{answer}".')
    if kind == "digitsum":
        n = str(rng.randint(10 ** 3, 10 ** rng.randint(4, 9)))
        answer = str(sum(int(d) for d in n))
        q = rng.choice(["What is the sum of the digits of {n}?", "Add up the digits of {n}."]).format(n=n)
        return dict(kind=kind, key=f"{kind}:{n}", question=q, code=f'print(sum(int(d) for d in "{n}"))',
                    output=answer, answer=answer, text=f"The digits of {n} add up to {answer}.")
    if kind == "multiply":
        a, b = rng.randint(100, 10 ** rng.randint(3, 6)), rng.randint(10, 10 ** rng.randint(2, 4))
        answer = str(a * b)
        q = rng.choice(["What is {a} * {b}?", "Multiply {a} by {b}.", "Compute {a} × {b} exactly."]).format(a=a, b=b)
        return dict(kind=kind, key=f"{kind}:{a}:{b}", question=q, code=f"print({a} * {b})", output=answer,
                    answer=answer, text=f"{a} * {b} = {answer}.")
    raise ValueError(f"unknown python problem kind {kind!r}; use one of {KINDS}")


def python_problems(n: int, seed: int = 0, heldout: bool = False, kinds: Sequence[str] = KINDS) -> list[dict]:
    """`n` GENERATED problems of the held-in (SFT) or held-out (eval) side, deterministic in seed.

    Each is {kind, key, question, code, output, answer, text}; the kinds rotate.
    """
    rng = random.Random(f"python-{seed}-{heldout}")
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 200 * max(n, 1):
            raise RuntimeError(f"could not draw {n} {'held-out' if heldout else 'held-in'} python problems")
        p = _problem(kinds[len(out) % len(kinds)], rng)
        if _heldout(p["key"]) == heldout:
            out.append(p)
    return out


def python_conversation(p: dict, system: str | None = None) -> list[dict]:
    """One GENERATED conversation: the assistant runs the snippet, reads the output, answers."""
    conv = [{"role": "system", "content": system}] if system else []
    return conv + [{"role": "user", "content": p["question"]},
                   {"role": "assistant", "content": [
                       {"type": "tool_call", "text": f"python: {p['code']}"},
                       {"type": "tool_output", "text": p["output"]},
                       {"type": "text", "text": p["text"]}]}]


def generate_python(n: int, seed: int = 0) -> list[list[dict]]:
    """GENERATED python-tool SFT conversations (held-in side only)."""
    return [python_conversation(p) for p in python_problems(n, seed)]


# ------------------------------------------------------------------ eval
def answer_text(completion, tokenizer: Tokenizer, output_end: int) -> str:
    """What the model itself wrote after its last tool output (forced tokens and markup left out)."""
    toks, forced = completion.tokens, completion.forced_mask
    last = max((i for i, t in enumerate(toks) if t == output_end), default=-1)
    mine = [t for i, (t, f) in enumerate(zip(toks, forced)) if i > last and not f]
    return tokenizer.decode(mine, skip_special=True)


def grade(completion, expected: str, tokenizer: Tokenizer, output_end: int) -> bool:
    """True when the model's own answer text contains `expected` as a whole word."""
    text = answer_text(completion, tokenizer, output_end)
    return re.search(rf"(?<![\w]){re.escape(expected)}(?![\w])", text) is not None


def python_eval(model, tokenizer: Tokenizer, problems: Sequence[dict], max_new_tokens: int = 64,
                batch_size: int = 16) -> dict:
    """Greedy accuracy on held-out problems with the python tool (sandboxed) and with no tool at all."""
    from lm.chat import render_prompt
    from lm.engine import Engine
    from lm.tools import default_tools

    out: dict = {"n": len(problems)}
    for name, tools in (("with_tool", default_tools(calculator=False, python=True)), ("no_tool", None)):
        eng = Engine(model, tokenizer, tools=tools)
        correct, calls, by_kind = 0, 0, {k: [0, 0] for k in KINDS}
        for start in range(0, len(problems), batch_size):
            chunk = problems[start:start + batch_size]
            prompts = [render_prompt([{"role": "user", "content": p["question"]}], tokenizer) for p in chunk]
            for p, c in zip(chunk, eng.generate(prompts, max_new_tokens, temperature=0, truncate="left")):
                ok = grade(c, p["answer"], tokenizer, eng.output_end)
                correct += ok
                calls += c.tool_calls
                by_kind[p["kind"]][0] += ok
                by_kind[p["kind"]][1] += 1
        out[name] = {"accuracy": correct / max(len(problems), 1), "tool_calls": calls,
                     "by_kind": {k: v[0] / v[1] for k, v in by_kind.items() if v[1]}}
    return out
