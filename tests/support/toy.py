"""Generated toy chat models for tests and benchmarks (not a real model; not part of the library).

Lives beside the tests, not in lm/: nothing the product runs uses it. benchmarks/ import it as
`tests.support.toy` (imports only torch + lm, so it works on the GPU box too).

`make_toy_checkpoint` trains, in seconds on a CPU, a byte-level BPE tokenizer on
real text (Tiny Shakespeare when present) and a 2-layer GPT on a mix of that
text and GENERATED arithmetic conversations that use the calculator tool:

  <|bos|><|user_start|>What is 12+7?<|user_end|><|assistant_start|>
  <|tool_start|>12+7<|tool_end|><|output_start|>19<|output_end|>The answer is 19.<|assistant_end|>

so the model emits real chat markup and tool calls for engine/eval/serve tests.
Its weights are worthless for anything else; the checkpoint's meta says
`"kind": "toy-generated"`.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from lm.checkpoint import save_checkpoint
from lm.model import GPT, GPTConfig
from lm.optim import train_step
from lm.tokenizer import Tokenizer

SHAKESPEARE = Path(__file__).resolve().parents[2] / "data" / "text" / "tinyshakespeare.txt"
_FALLBACK_TEXT = ("The quick brown fox jumps over the lazy dog. " * 200)


def generated_conversations(n: int, seed: int = 0) -> list[str]:
    """GENERATED arithmetic Q&A with calculator calls, as chat-markup text."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        op = rng.choice("+-*")
        expr = f"{a}{op}{b}"
        res = eval_simple(a, op, b)
        out.append(f"<|bos|><|user_start|>What is {expr}?<|user_end|><|assistant_start|>"
                   f"<|tool_start|>{expr}<|tool_end|><|output_start|>{res}<|output_end|>"
                   f"The answer is {res}.<|assistant_end|>")
    return out


def eval_simple(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _encode_markup(tok: Tokenizer, text: str) -> list[int]:
    """Encode text where `<|name|>` spans are special tokens (trusted, generated input only)."""
    import re
    ids: list[int] = []
    for part in re.split(r"(<\|[a-z_]+\|>)", text):
        if not part:
            continue
        if part.startswith("<|") and part.endswith("|>"):
            ids.append(tok.encode_special(part))
        else:
            ids.extend(tok.encode(part))
    return ids


def make_toy_checkpoint(directory: str | Path, steps: int = 150, seed: int = 0, vocab_size: int = 512,
                        n_layer: int = 2, n_embd: int = 64, sequence_len: int = 128) -> Path:
    """Train and save a toy chat model (tokenizer + GPT) to `directory`; returns it.

    An existing toy checkpoint in `directory` made with the same arguments is
    reused, so test modules and benchmarks in one session train it once.
    """
    params = {"steps": steps, "seed": seed, "vocab_size": vocab_size, "n_layer": n_layer, "n_embd": n_embd,
              "sequence_len": sequence_len}
    directory = Path(directory)
    # pytest-xdist workers share the run's folder (tests/support/shared.py): one trains, the others wait.
    from tests.support.shared import built_once

    directory.parent.mkdir(parents=True, exist_ok=True)
    with built_once(directory.parent, directory.name):
        return _cached_or_trained(directory, params)


def _cached_or_trained(directory: Path, params: dict) -> Path:
    steps, seed, vocab_size = params["steps"], params["seed"], params["vocab_size"]
    n_layer, n_embd, sequence_len = params["n_layer"], params["n_embd"], params["sequence_len"]
    cfg_path = directory / "config.json"
    if cfg_path.exists():
        import json
        if json.loads(cfg_path.read_text()).get("toy_params") == params:
            return directory
    # A 64-wide model gains nothing from threads, and on a busy machine OpenMP
    # threads spinning for descheduled peers make it many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_toy(directory, params, steps, seed, vocab_size, n_layer, n_embd, sequence_len)
    finally:
        torch.set_num_threads(threads)


def _train_toy(directory: Path, params: dict, steps: int, seed: int, vocab_size: int, n_layer: int, n_embd: int,
               sequence_len: int) -> Path:
    torch.manual_seed(seed)
    text = SHAKESPEARE.read_text()[:200_000] if SHAKESPEARE.exists() else _FALLBACK_TEXT
    convs = generated_conversations(400, seed)
    plain = [c.replace("<|", " ").replace("|>", " ") for c in convs[:50]]
    tok = Tokenizer.train([text, *plain], vocab_size=vocab_size)
    cfg = GPTConfig(vocab_size=tok.vocab_size, sequence_len=sequence_len, n_layer=n_layer,
                    n_head=max(1, n_embd // 32), n_kv_head=max(1, n_embd // 32), n_embd=n_embd)
    model = GPT(cfg)
    # Stream: conversations interleaved with prose, documents separated by BOS.
    text_ids = tok.encode(text[:50_000])
    conv_ids = [_encode_markup(tok, c) for c in convs]
    stream: list[int] = []
    chunk = 0
    for c in conv_ids:
        stream += c
        stream += [tok.bos_id, *text_ids[chunk:chunk + 40]]
        chunk = (chunk + 40) % max(1, len(text_ids) - 40)
    data = torch.tensor(stream, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    B, T = 16, sequence_len
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[s:s + T] for s in starts])
        y = torch.stack([data[s + 1:s + T + 1] for s in starts])
        loss = train_step(opt, model, [(x, y)], lambda b: model(b[0], targets=b[1]), grad_clip=None)["loss"]
    model.eval()
    return save_checkpoint(directory, model, tok, {"kind": "toy-generated", "step": steps, "toy_params": params,
                                                    "final_loss": loss})


def make_generated_token_shards(out: str | Path, texts: list[str], vocab_size: int, val_fraction: float = 0.05,
                                n_train_shards: int = 2, source: str = "generated") -> Path:
    """GENERATED tokenize-stage output (tokenizer.json + tokens/ shards + meta) from in-memory texts.

    For benchmarks and the GPU check on a fresh clone, where no curated demo
    output exists: a BPE tokenizer trained on `texts`, then the texts split
    into documents (blank lines), the first `val_fraction` held out.
    """
    from lm.tokens import ShardWriter, shard_name, write_meta

    out = Path(out)
    docs = [d for t in texts for d in t.split("\n\n") if d.strip()]
    n_val = max(1, int(len(docs) * val_fraction))
    val_docs, train_docs = docs[:n_val], docs[n_val:]
    tok = Tokenizer.train(train_docs, vocab_size)
    tok.save(out / "tokenizer.json")
    per = -(-len(train_docs) // n_train_shards)
    parts = [("train", i, train_docs[i * per:(i + 1) * per]) for i in range(n_train_shards)] + [("val", 0, val_docs)]
    shards = []
    for split, i, split_docs in parts:
        name = shard_name(split, i)
        with ShardWriter(out / "tokens" / name, tok.vocab_size, tok.bos_id) as w:
            for ids in tok.encode_batch(split_docs):
                w.add(ids)
        shards.append({"path": name, "split": split, "n_tokens": w.n_tokens, "n_docs": w.n_docs, "source": source})
    write_meta(out / "tokens", {"dtype": "uint16", "vocab_size": tok.vocab_size, "bos_id": tok.bos_id,
                                "tokenizer_sha256": tok.sha256(), "shards": shards,
                                "n_tokens": sum(s["n_tokens"] for s in shards)})
    return out
