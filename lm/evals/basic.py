"""Evaluation: bits per byte, GSM8K pass@k, arithmetic with/without the calculator,
chat-format compliance, sample generations.

Held-out data:
- GSM8K: `gsm8k_split()` holds out the LAST 500 problems of
  `data/gsm8k/train.jsonl`; post-training (SFT/RL) trains only on
  the rest. Change both sides together.
- Arithmetic problems are GENERATED here from a seed (`arithmetic_problems`).
- Bits per byte are measured on held-out token ids (the `val_*` shards).

Bits per byte = summed next-token cross-entropy (bits) / UTF-8 bytes of the
predicted tokens, special tokens excluded from both — comparable across
tokenizers, unlike per-token loss.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lm import tokens

from lm.datasets import gsm8k
from lm.engine import Engine, render_prompt
from lm.model import GPT
from lm.tokenizer import Tokenizer

# The real GSM8K file ships with the repo (lm/ stays free of project imports).
GSM8K_PATH = Path(__file__).resolve().parents[2] / "data" / "gsm8k" / "train.jsonl"
GSM8K_HELDOUT = 500


# ------------------------------------------------------------------ bits per byte
@torch.inference_mode()
def bits_per_byte(model: GPT, tokenizer: Tokenizer, ids: Sequence[int] | torch.Tensor, seq_len: int | None = None,
                  batch_size: int = 8, max_tokens: int | None = None) -> dict:
    """Bits per byte of `model` on a held-out token stream (documents separated by BOS)."""
    ids = torch.as_tensor(ids if not isinstance(ids, torch.Tensor) else ids, dtype=torch.long).flatten()
    if max_tokens:
        ids = ids[:max_tokens]
    seq_len = seq_len or model.config.sequence_len
    if ids.numel() < 2:
        raise ValueError("bits_per_byte needs at least 2 held-out tokens")
    # Bytes each token stands for; specials stand for none and are not scored.
    token_bytes = torch.from_numpy(tokens.token_bytes(tokenizer).astype(np.int64))
    device = model.lm_head.weight.device
    n_windows = (ids.numel() - 1 + seq_len - 1) // seq_len
    total_bits, total_bytes, total_tokens = 0.0, 0, 0
    for start in range(0, n_windows, batch_size):
        xs, ys = [], []
        for w in range(start, min(start + batch_size, n_windows)):
            a = w * seq_len
            x, y = ids[a:a + seq_len], ids[a + 1:a + seq_len + 1]
            x = x[:y.numel()]
            pad = seq_len - y.numel()
            xs.append(F.pad(x, (0, pad), value=0))
            ys.append(F.pad(y, (0, pad), value=-1))
        x, y = torch.stack(xs).to(device), torch.stack(ys).to(device)
        logits = model(x)
        nb = torch.where(y >= 0, token_bytes.to(device)[y.clamp(min=0)], torch.zeros_like(y))
        scored = nb > 0
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.clamp(min=0).view(-1), reduction="none")
        total_bits += float((loss.view_as(y) * scored).sum()) / math.log(2)
        total_bytes += int(nb.sum())
        total_tokens += int(scored.sum())
    return {"bpb": total_bits / max(total_bytes, 1), "tokens": total_tokens, "bytes": total_bytes}


# ------------------------------------------------------------------ answers
def normalize_number(s: str) -> str:
    s = s.replace(",", "").replace("$", "").strip().rstrip(".")
    try:
        x = float(s)
    except ValueError:
        return s
    return str(int(x)) if x.is_integer() else repr(x)


# ------------------------------------------------------------------ GSM8K
def _with_final(row: dict) -> dict:
    return {"question": row["question"], "answer": row["answer"], "final": normalize_number(row["gold"])}


def gsm8k_split(path: str | Path = GSM8K_PATH, n_heldout: int = GSM8K_HELDOUT) -> tuple[list[dict], list[dict]]:
    """(train, heldout): the same split RL trains on (`lm.datasets.gsm8k.gsm8k_split`), with normalised answers."""
    if not Path(path).exists():
        raise FileNotFoundError(f"GSM8K file {path} missing; see data/README.md")
    train, held = gsm8k.gsm8k_split(path, n_heldout)
    return [_with_final(r) for r in train], [_with_final(r) for r in held]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def gsm8k_eval(engine: Engine, problems: Sequence[dict], k: int = 1, max_new_tokens: int = 256,
               temperature: float = 0.8, top_k: int | None = 50, seed: int = 0, batch_size: int = 8) -> dict:
    """pass@1 and pass@k over problems, sampling `k` replies each (greedy when k == 1)."""
    temp = 0.0 if k == 1 else temperature
    p1, pk, rows = [], [], []
    for start in range(0, len(problems), batch_size):
        chunk = problems[start:start + batch_size]
        prompts = [render_prompt(engine.tokenizer, [{"role": "user", "content": p["question"]}]) for p in chunk]
        comps = engine.generate(prompts, max_new_tokens, temperature=temp, top_k=top_k, seed=seed + start,
                                num_samples=k, truncate="left")
        for i, p in enumerate(chunk):
            mine = comps[i * k:(i + 1) * k]
            # the one grader RL's reward uses: only what the model wrote, not forced tool output
            got = [gsm8k.reply_answer(c, engine.tokenizer) for c in mine]
            c = sum(gsm8k.grade_reply(x, p["final"], engine.tokenizer) for x in mine)
            p1.append(pass_at_k(k, c, 1))
            pk.append(pass_at_k(k, c, k))
            rows.append({"question": p["question"], "expected": p["final"], "answers": got,
                         "reply": mine[0].text})
    n = max(len(problems), 1)
    return {"pass@1": sum(p1) / n, f"pass@{k}": sum(pk) / n, "n": len(problems), "k": k, "rows": rows}


# ------------------------------------------------------------------ arithmetic
def arithmetic_problems(n: int, seed: int = 0, max_operand: int = 999) -> list[dict]:
    """GENERATED two-operand problems 'What is a op b?' with their answers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, max_operand), rng.randint(1, max_operand)
        op = rng.choice("+-*")
        ans = a + b if op == "+" else a - b if op == "-" else a * b
        out.append({"question": f"What is {a}{op}{b}?", "final": str(ans)})
    return out


def arithmetic_eval(model: GPT, tokenizer: Tokenizer, problems: Sequence[dict], max_new_tokens: int = 48,
                    batch_size: int = 16) -> dict:
    """Greedy accuracy on arithmetic problems with the calculator tool and without any tool."""
    out = {}
    for name, eng in (("with_tool", Engine(model, tokenizer)), ("no_tool", Engine(model, tokenizer, tools=None))):
        right, calls = [], 0
        for start in range(0, len(problems), batch_size):
            chunk = problems[start:start + batch_size]
            prompts = [render_prompt(tokenizer, [{"role": "user", "content": p["question"]}]) for p in chunk]
            for p, c in zip(chunk, eng.generate(prompts, max_new_tokens, temperature=0)):
                right.append(int(gsm8k.grade_reply(c, p["final"], tokenizer)))
                calls += c.tool_calls
        # per-item right/wrong: two models on the same items compare paired (lm/paired_stats.mcnemar)
        out[name] = {"accuracy": sum(right) / max(len(problems), 1), "tool_calls": calls, "correct": right}
    out["n"] = len(problems)
    return out


# ------------------------------------------------------------------ chat format
def chat_compliance(engine: Engine, questions: Sequence[str], max_new_tokens: int = 128, seed: int = 0) -> dict:
    """Fraction of replies that end with <|assistant_end|> within max_new_tokens."""
    prompts = [render_prompt(engine.tokenizer, [{"role": "user", "content": q}]) for q in questions]
    comps = engine.generate(prompts, max_new_tokens, temperature=0.0, seed=seed, truncate="left")
    end = engine.assistant_end
    ok = sum(1 for c in comps if c.finish_reason == "stop" and c.tokens and c.tokens[-1] == end)
    return {"compliance": ok / max(len(comps), 1), "n": len(comps),
            "finish_reasons": {r: sum(c.finish_reason == r for c in comps) for r in ("stop", "length", "context")}}


def sample_generations(engine: Engine, questions: Sequence[str], max_new_tokens: int = 128,
                       temperature: float = 0.7, seed: int = 0) -> list[dict]:
    """One sampled reply per question, for the report card."""
    prompts = [render_prompt(engine.tokenizer, [{"role": "user", "content": q}]) for q in questions]
    comps = engine.generate(prompts, max_new_tokens, temperature=temperature, top_k=50, seed=seed, truncate="left")
    return [{"prompt": q, "reply": c.text, "finish_reason": c.finish_reason, "tool_calls": c.tool_calls}
            for q, c in zip(questions, comps)]
