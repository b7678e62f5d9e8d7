"""GSM8K: its items, its one held-out split, its rendering as a conversation, its grader.

SFT, RL, the evaluate stage, the chat suite and the benchmarks all read GSM8K
through this module, so they cannot disagree on what is held out:

- Items (`read`): {question, answer (the worked solution), final (the number
  after '####', normalised)}.
- Split (`split`): the LAST `HELDOUT` problems of the file are held out for
  evaluation; SFT and RL train only on the rest. `HELDOUT` is defined here
  once and no stage config can change it (the old per-stage `gsm8k_heldout`
  settings are refused: conf/settings.REMOVED_KEYS).
- Rendering (`conversation`): the question as the user turn, the worked
  solution as the assistant turn, calculator marks as tool calls.
- Grader (`grade`): the final number the model itself wrote equals `final`
  (lm/datasets/answers.grade_reply, which arithmetic shares).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from lm.datasets.answers import grade_reply, normalize_number

HELDOUT = 500  # the last 500 problems of train.jsonl: evaluated on, never trained on
grade = grade_reply  # (completion, final, tokenizer) -> bool: RL's reward and every GSM8K score


def default_path() -> Path:
    """The GSM8K file that ships with the repo ($CRAWL2CHAT_DATA/gsm8k/train.jsonl, else data/gsm8k/)."""
    from conf import data_dir

    return data_dir() / "gsm8k" / "train.jsonl"


def read(path: str | Path | None = None) -> list[dict]:
    """Problems {question, answer (the solution), final (normalised number)}; a bad line raises with its number."""
    path = Path(path) if path else default_path()
    if not path.exists():
        raise FileNotFoundError(f"GSM8K file {path} missing; see data/README.md")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            final = normalize_number(rec["answer"].split("####")[-1])
            out.append({"question": rec["question"], "answer": rec["answer"], "final": final})
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ValueError(f"{path}:{i} is not a GSM8K record ({e}); expected question/answer with '####'") from e
    return out


def split(path: str | Path | None = None) -> tuple[list[dict], list[dict]]:
    """(train, held-out): the held-out part is the last `HELDOUT` problems of the file."""
    probs = read(path)
    if HELDOUT >= len(probs):
        raise ValueError(f"{path or default_path()} has {len(probs)} problems; GSM8K holds out the last {HELDOUT}")
    return probs[:-HELDOUT], probs[-HELDOUT:]


def heldout(path: str | Path | None = None, n: int | None = None) -> list[dict]:
    """The first `n` held-out problems (all of them when n is None or 0): what every GSM8K score reads."""
    held = split(path)[1]
    return held[:n] if n else held


def prompt(problem: dict) -> list[dict]:
    """The conversation a model answers: the question as one user turn."""
    return [{"role": "user", "content": problem["question"]}]


_CALC = re.compile(r"<<([^<>=]+)=[^<>]*>>")


def conversation(problem: dict, use_tool: bool = True) -> list[dict]:
    """A GSM8K problem as a chat: the user asks, the assistant writes the worked solution.

    GSM8K marks each calculation as `<<48/2=24>>`. With `use_tool`, each mark
    becomes a calculator call whose output is what our calculator returns
    (what the engine will force at inference time). A mark the calculator
    cannot evaluate, and every mark without the tool, is dropped: the
    solution's own text already writes each result after its mark. The
    final `#### N` line, which the grader reads, is kept.
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
    return prompt(problem) + [{"role": "assistant", "content": parts}]
