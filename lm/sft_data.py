"""SFT data: real conversations, generated conversations, rendering, packing.

Sources (each yields conversations in lm/chat.py's format):
- `alpaca`: Alpaca-style JSON (instruction, input, output[, system, history]).
- `glaive`: ShareGPT-style multi-turn tool calling (human/gpt/function_call/
  observation); function calls become assistant tool calls, observations tool
  outputs, the tool schema a system message.
- `identity` (GENERATED): who the model is — crawl2chat's assistant.
- `arithmetic` (GENERATED): arithmetic questions answered through the calculator
  tool (`<|tool_start|>expr<|tool_end|>` then the engine's output), or directly.

Bad records (malformed JSON lines, empty turns, unknown roles, longer than the
context) are skipped and counted per source and reason in `SkipStats`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lm.chat import ChatError, ChatRenderer, Rendered
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)

ASSISTANT_NAME = "crawl2chat"


@dataclass
class SkipStats:
    """Counts of kept and skipped records per source, with reasons."""

    kept: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)  # key: "source/reason"

    def skip(self, source: str, reason: str, detail: str = "") -> None:
        self.skipped[f"{source}/{reason}"] += 1
        log.debug("skip %s record (%s) %s", source, reason, detail)

    def keep(self, source: str) -> None:
        self.kept[source] += 1

    def as_dict(self) -> dict:
        return {"kept": dict(self.kept), "skipped": dict(self.skipped),
                "n_kept": sum(self.kept.values()), "n_skipped": sum(self.skipped.values())}


# ------------------------------------------------------------------ reading
def read_records(path: str | Path, source: str, stats: SkipStats) -> list[dict]:
    """Records of a JSON array or JSONL file; malformed lines are counted, not fatal."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SFT/preference data {path} not found (set the path in the preset or CLI)")
    if path.suffix == ".gz":
        import gzip
        text = gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace")
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); fix the file or convert it to JSONL") from e
        out = []
        for r in data:
            if isinstance(r, dict):
                out.append(r)
            else:
                stats.skip(source, "not_an_object")
        return out
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            stats.skip(source, "malformed_json")
            continue
        if isinstance(r, dict):
            out.append(r)
        else:
            stats.skip(source, "not_an_object")
    return out


def alpaca_to_conversation(rec: dict) -> list[dict]:
    """One Alpaca record → conversation (history turns, then instruction + input)."""
    instr, inp, out = rec.get("instruction"), rec.get("input") or "", rec.get("output")
    if not isinstance(instr, str) or not isinstance(out, str) or not isinstance(inp, str):
        raise ChatError("missing_field", "alpaca record needs string instruction and output")
    conv: list[dict] = []
    if isinstance(rec.get("system"), str) and rec["system"].strip():
        conv.append({"role": "system", "content": rec["system"]})
    for pair in rec.get("history") or []:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ChatError("bad_history", "history entries are [user, assistant] pairs")
        conv += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    user = instr if not inp.strip() else f"{instr}\n\n{inp}"
    conv += [{"role": "user", "content": user}, {"role": "assistant", "content": out}]
    return conv


GLAIVE_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "function_call": "tool_call", "observation": "tool", "system": "system"}


def glaive_to_conversation(rec: dict) -> list[dict]:
    """ShareGPT/glaive tool-calling record → conversation with tool calls and outputs."""
    turns = rec.get("conversations")
    if not isinstance(turns, list):
        raise ChatError("missing_field", "record has no 'conversations' list")
    conv: list[dict] = []
    tools = rec.get("tools")
    if isinstance(tools, str) and tools.strip() and tools.strip() != "[]":
        conv.append({"role": "system", "content": f"You can call these functions (JSON schema):\n{tools}"})
    for t in turns:
        if not isinstance(t, dict):
            raise ChatError("bad_message", "turn is not an object")
        role = GLAIVE_ROLES.get(t.get("from"))
        if role is None:
            raise ChatError("unknown_role", f"role {t.get('from')!r}")
        value = t.get("value")
        if not isinstance(value, str) or not value.strip():
            raise ChatError("empty_turn", f"{t.get('from')} turn is empty")
        if role == "tool_call":
            conv.append({"role": "assistant", "content": [{"type": "tool_call", "text": value}]})
        else:
            conv.append({"role": role, "content": value})
    return conv


# --------------------------------------------------------------- generated
IDENTITY_QUESTIONS = [
    "Who are you?", "What is your name?", "Who made you?", "What are you?", "Tell me about yourself.",
    "Are you ChatGPT?", "Which model am I talking to?", "hi, who is this?", "What can you do?",
    "Where does your knowledge come from?", "Are you a human?", "Introduce yourself, please.",
]
IDENTITY_ANSWERS = [
    "I am {name}, a small chat assistant. I was pretrained on web text from Common Crawl and then fine-tuned to follow instructions.",
    "My name is {name}. I am a small language model trained from Common Crawl web pages, then taught to chat.",
    "I'm {name}'s assistant: a compact GPT trained end to end by the {name} pipeline, from raw web crawls to conversation.",
    "I am {name}, an AI assistant. I am not a human and I can make mistakes, so please double-check important facts.",
    "I'm {name}. I can answer questions, follow simple instructions and use a calculator tool for arithmetic.",
]
GREETINGS = ["", "Hello! ", "Hi. ", "Hey there, "]


def generate_identity(n: int, seed: int = 0, name: str = ASSISTANT_NAME) -> list[list[dict]]:
    """GENERATED identity conversations (who the model is), deterministic in seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        q = rng.choice(GREETINGS) + rng.choice(IDENTITY_QUESTIONS)
        out.append([{"role": "user", "content": q},
                    {"role": "assistant", "content": rng.choice(IDENTITY_ANSWERS).format(name=name)}])
    return out


def arithmetic_problem(rng: random.Random, difficulty: int = 1) -> tuple[str, int]:
    """A GENERATED arithmetic expression and its integer value.

    difficulty 0: a+b with operands 0–3 (tiny CPU models learn it in minutes);
    1: a+b with one-digit operands; 2: + and - with two digits;
    3: adds × (two digits); ≥4: three terms with up to `difficulty-1` digits.
    """
    if difficulty <= 0:
        a, b = rng.randint(0, 3), rng.randint(0, 3)
        return f"{a}+{b}", a + b
    if difficulty == 1:
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        return f"{a}+{b}", a + b
    if difficulty == 2:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        op = rng.choice("+-")
        return f"{a}{op}{b}", a + b if op == "+" else a - b
    if difficulty == 3:
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        op = rng.choice("+-*")
        return f"{a}{op}{b}", {"+": a + b, "-": a - b, "*": a * b}[op]
    hi = 10 ** (difficulty - 1) - 1
    a, b, c = (rng.randint(0, hi) for _ in range(3))
    o1, o2 = rng.choice("+-*"), rng.choice("+-")
    expr = f"{a}{o1}{b}{o2}{c}"
    ab = {"+": a + b, "-": a - b, "*": a * b}[o1]
    return expr, ab + c if o2 == "+" else ab - c


QUESTION_TEMPLATES = ["What is {e}?", "Compute {e}.", "{e} = ?", "Calculate {e}", "How much is {e}?"]


def spaced(expr: str) -> str:
    """'12+7' → '12 + 7': the form used in questions and tool calls (a call copies the question's tokens)."""
    return expr.replace("*", " * ").replace("+", " + ").replace("-", " - ")


def arithmetic_question(expr: str, rng: random.Random) -> str:
    return rng.choice(QUESTION_TEMPLATES).format(e=spaced(expr))


def arithmetic_conversation(expr: str, value: int, question: str, use_tool: bool) -> list[dict]:
    """One GENERATED arithmetic conversation; with the tool, the answer copies the tool output."""
    if use_tool:
        parts = [{"type": "tool_call", "text": spaced(expr)}, {"type": "tool_output", "text": str(value)},
                 {"type": "text", "text": f"The answer is {value}."}]
    else:
        parts = [{"type": "text", "text": f"The answer is {value}."}]
    return [{"role": "user", "content": question}, {"role": "assistant", "content": parts}]


def generate_arithmetic(n: int, seed: int = 0, difficulty: int = 1, use_tool: bool = True) -> list[list[dict]]:
    """GENERATED arithmetic conversations of a given difficulty."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        expr, value = arithmetic_problem(rng, difficulty)
        out.append(arithmetic_conversation(expr, value, arithmetic_question(expr, rng), use_tool))
    return out


# ---------------------------------------------------------------- rendering
def render_all(conversations: list[tuple[str, list[dict]]], tokenizer: Tokenizer, max_len: int,
               stats: SkipStats) -> list[tuple[str, Rendered]]:
    """Render (source, conversation) pairs; unrenderable ones are counted by reason."""
    r = ChatRenderer(tokenizer)
    out = []
    for source, conv in conversations:
        try:
            out.append((source, r.render(conv, max_len=max_len)))
            stats.keep(source)
        except ChatError as e:
            stats.skip(source, e.reason, str(e))
    return out


def is_validation(key: str, fraction: float) -> bool:
    """Stable hash split: the same conversation always lands on the same side."""
    h = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16)
    return h < fraction * 0xFFFFFFFF


def pack(examples: list[Rendered], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedily pack whole conversations into rows of seq_len+1 tokens.

    Returns (inputs, targets) of shape (N, seq_len); targets are -1 outside the
    loss mask and on padding. A conversation never straddles two rows.
    """
    rows_ids: list[list[int]] = []
    rows_mask: list[list[int]] = []
    cur_ids: list[int] = []
    cur_mask: list[int] = []
    width = seq_len + 1
    for ex in examples:
        if len(ex) > width:
            raise ValueError(f"example of {len(ex)} tokens exceeds row width {width}; filter with max_len first")
        if len(cur_ids) + len(ex) > width:
            rows_ids.append(cur_ids)
            rows_mask.append(cur_mask)
            cur_ids, cur_mask = [], []
        cur_ids = cur_ids + ex.ids
        cur_mask = cur_mask + ex.mask
    if cur_ids:
        rows_ids.append(cur_ids)
        rows_mask.append(cur_mask)
    n = len(rows_ids)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows_ids, rows_mask)):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(m)] = torch.tensor(m, dtype=torch.bool)
    inputs = ids[:, :-1].contiguous()
    targets = ids[:, 1:].clone()
    targets[~mask[:, 1:]] = -1
    return inputs, targets


@dataclass
class SFTData:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    stats: dict


def load_sources(sources: dict[str, str | None], stats: SkipStats, *, n_identity: int = 0,
                 n_arithmetic: int = 0, arithmetic_difficulty: int = 1, arithmetic_tool: bool = True,
                 max_per_source: int | None = None, seed: int = 0, gsm8k_path: str | None = None,
                 gsm8k_heldout: int = 500) -> list[tuple[str, list[dict]]]:
    """Collect (source, conversation) pairs. `sources` maps alpaca/glaive/jsonl names to paths.

    `gsm8k_path` adds GSM8K's worked solutions (calculator marks as tool calls)
    from its training part only: the last `gsm8k_heldout` problems are the
    evaluation set of RL and eval, and never enter SFT.
    """
    convs: list[tuple[str, list[dict]]] = []
    converters = {"alpaca": alpaca_to_conversation, "glaive": glaive_to_conversation}
    for name, path in sources.items():
        if not path:
            continue
        kind = "glaive" if "glaive" in name or "tool" in name else "alpaca"
        recs = read_records(path, name, stats)
        if max_per_source:
            recs = recs[:max_per_source]
        for rec in recs:
            try:
                if isinstance(rec.get("messages"), list):  # already in our format
                    conv = rec["messages"]
                else:
                    conv = converters[kind](rec)
            except ChatError as e:
                stats.skip(name, e.reason, str(e))
                continue
            convs.append((name, conv))
    if gsm8k_path:
        from lm.gsm8k import gsm8k_conversation, gsm8k_split

        train, _ = gsm8k_split(gsm8k_path, gsm8k_heldout)
        convs += [("gsm8k", gsm8k_conversation(p, arithmetic_tool)) for p in train[:max_per_source or None]]
    convs += [("generated_identity", c) for c in generate_identity(n_identity, seed)]
    convs += [("generated_arithmetic", c)
              for c in generate_arithmetic(n_arithmetic, seed + 1, arithmetic_difficulty, arithmetic_tool)]
    return convs


def build_sft_data(convs: list[tuple[str, list[dict]]], tokenizer: Tokenizer, seq_len: int,
                   val_fraction: float, stats: SkipStats, seed: int = 0) -> SFTData:
    """Render, split (stable hash) and pack a conversation mixture."""
    rendered = render_all(convs, tokenizer, seq_len + 1, stats)
    train, val = [], []
    for source, r in rendered:
        key = source + ":" + json.dumps(r.ids[:64])
        (val if is_validation(key, val_fraction) else train).append(r)
    if not train:
        raise ValueError(f"no SFT training examples survived ({stats.as_dict()}); check the data paths and seq_len")
    if not val:  # tiny mixtures: keep at least one validation example
        val.append(train.pop())
    random.Random(seed).shuffle(train)
    pad = tokenizer.encode_special("<|pad|>")
    summary = stats.as_dict()
    summary.update(n_train_conversations=len(train), n_val_conversations=len(val))
    data = SFTData(pack(train, seq_len, pad), pack(val, seq_len, pad), summary)
    summary.update(n_train_rows=int(data.train[0].shape[0]), n_val_rows=int(data.val[0].shape[0]),
                   n_train_target_tokens=int((data.train[1] >= 0).sum()))
    log.info("SFT data: %s", summary)
    return data
