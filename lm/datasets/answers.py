"""What a model itself answered, and the one final-number grader (GSM8K and arithmetic share it).

Only what the model wrote counts: tool calls and the tool output the engine
forced are left out (`reply_text`), so a calculator's output is never taken for
the model's answer. RL's reward and every eval of a number-answer task call
`grade_reply`; ARC and TriviaQA grade the same `reply_text` their own way.
"""
from __future__ import annotations

import re

_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


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


def normalize_number(s: str) -> str:
    """'1,000.0' → '1000', '$5' → '5': a gold answer as the report shows it (grading compares values)."""
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        x = float(s)
    except ValueError:
        return s
    return str(int(x)) if x.is_integer() else repr(x)


def reply_answer(completion, tokenizer) -> str | None:
    """The final number the model wrote (see reply_text, extract_number)."""
    return extract_number(reply_text(completion, tokenizer))


def grade_reply(completion, final: str, tokenizer) -> bool:
    """THE number-answer grader: RL's reward and eval's accuracy (GSM8K, arithmetic) both call this."""
    return same_number(reply_answer(completion, tokenizer), final)
