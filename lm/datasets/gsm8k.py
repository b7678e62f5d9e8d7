"""GSM8K: the shared train / held-out split and answer checking.

The LAST `heldout` problems of train.jsonl (default 500) are held out for
evaluation; RL trains on the rest. Everyone (RL, eval) uses `gsm8k_split` so
the two sides never overlap.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def read_gsm8k(path: str | Path) -> list[dict]:
    """Problems {question, answer(full solution), gold(final number str)}; malformed lines raise with their number."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            gold = rec["answer"].split("####")[-1].strip().replace(",", "")
            out.append({"question": rec["question"], "answer": rec["answer"], "gold": gold})
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{path}:{i} is not a GSM8K record ({e}); expected question/answer with '####'") from e
    return out


def gsm8k_split(path: str | Path, heldout: int = 500) -> tuple[list[dict], list[dict]]:
    """(train, held-out): the held-out part is the last `heldout` problems of the file."""
    probs = read_gsm8k(path)
    if heldout >= len(probs):
        raise ValueError(f"{path} has {len(probs)} problems; cannot hold out {heldout}")
    return probs[:-heldout] if heldout else probs, probs[-heldout:] if heldout else []


def extract_number(text: str) -> str | None:
    """The final numeric answer in a text: after the last '####' if any, else the last number."""
    if "####" in text:
        text = text.rsplit("####", 1)[1]
        nums = _NUM.findall(text)
        return nums[0].replace(",", "") if nums else None
    nums = _NUM.findall(text)
    return nums[-1].replace(",", "").rstrip(".") if nums else None


def same_number(a: str | None, b: str | None) -> bool:
    """Exact numeric equality of two number strings (1,000 == 1000.0)."""
    if a is None or b is None:
        return False
    try:
        return abs(float(a.replace(",", "")) - float(b.replace(",", ""))) < 1e-9
    except ValueError:
        return False


def reply_text(completion, tokenizer) -> str:
    """What the model itself wrote in a Completion: sampled tokens minus tool calls and forced tool output.

    A calculator's output is not the model's answer: an RL reward that counted
    it would pay for calling the tool with the question's own numbers.
    """
    sp = tokenizer.encode_special
    tool_start, tool_end = sp("<|tool_start|>"), sp("<|tool_end|>")
    specials = tokenizer.special_ids
    keep, in_tool = [], False
    forced = completion.forced_mask or [0] * len(completion.tokens)
    for t, f in zip(completion.tokens, forced):
        if f:
            continue
        if t == tool_start:
            in_tool = True
        elif t == tool_end:
            in_tool = False
        elif not in_tool and t not in specials:
            keep.append(t)
    return tokenizer.decode(keep)


def reply_answer(completion, tokenizer) -> str | None:
    """The final number the model wrote (see reply_text, extract_number)."""
    return extract_number(reply_text(completion, tokenizer))


def grade_reply(completion, gold: str, tokenizer) -> bool:
    """THE GSM8K/arithmetic grader: RL's reward and eval's accuracy both call this."""
    return same_number(reply_answer(completion, tokenizer), gold)


_CALC = re.compile(r"<<([^<>=]+)=[^<>]*>>")


def gsm8k_conversation(problem: dict, use_tool: bool = True) -> list[dict]:
    """A GSM8K problem as a chat: the user asks, the assistant writes the worked solution.

    GSM8K marks each calculation as `<<48/2=24>>`. With `use_tool`, each mark
    becomes a calculator call whose output is what our calculator returns
    (what the engine will force at inference time). A mark the calculator
    cannot evaluate, and every mark without the tool, is dropped: the
    solution's own text already writes each result after its mark. The
    final `#### N` line, which the RL reward reads, is kept.
    """
    from lm.tools import calculator

    parts: list[dict] = []

    def text(s: str) -> None:
        if not s:
            return
        if parts and parts[-1]["type"] == "text":
            parts[-1]["text"] += s
        else:
            parts.append({"type": "text", "text": s})

    pos = 0
    for m in _CALC.finditer(problem["answer"]):
        text(problem["answer"][pos:m.start()])
        pos = m.end()
        if not use_tool:
            continue
        expr = m.group(1).strip()
        result = calculator(expr)
        if result.startswith("error"):
            continue
        parts += [{"type": "tool_call", "text": expr}, {"type": "tool_output", "text": result}]
    text(problem["answer"][pos:])
    return [{"role": "user", "content": problem["question"]}, {"role": "assistant", "content": parts}]
