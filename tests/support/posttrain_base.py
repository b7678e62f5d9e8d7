"""A tiny GENERATED base model for the post-training tests (built once per process).

Tokenizer: byte-level BPE trained on real text (Tiny Shakespeare + GSM8K
questions); model: a 2-layer GPT pretrained for a few seconds on that text, so
post-training starts from weights that have seen language, not from noise.
"""
from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

import torch

from conf.posttrain import data_dir
from lm.checkpoint import load_model, save_checkpoint
from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer

SEQ_LEN = 96


def _texts() -> list[str]:
    d = data_dir()
    shakespeare = (d / "text" / "tinyshakespeare.txt").read_text()[:150_000]
    gsm = [json.loads(line)["question"] for line in (d / "gsm8k" / "train.jsonl").read_text().splitlines()[:300]]
    return [shakespeare[i:i + 2000] for i in range(0, len(shakespeare), 2000)] + gsm


@functools.lru_cache(maxsize=1)
def tiny_base() -> Path:
    """Path of a checkpoint directory holding the tiny base model (cached per process)."""
    torch.manual_seed(0)
    texts = _texts()
    tok = Tokenizer.train(texts, vocab_size=400)
    cfg = GPTConfig(vocab_size=tok.vocab_size, sequence_len=SEQ_LEN, n_layer=2, n_head=2, n_kv_head=2, n_embd=64)
    model = GPT(cfg)
    ids = torch.tensor([t for s in texts for t in tok.encode(s, prepend_bos=True)], dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        starts = torch.randint(0, len(ids) - SEQ_LEN - 1, (8,), generator=g)
        x = torch.stack([ids[s:s + SEQ_LEN] for s in starts])
        y = torch.stack([ids[s + 1:s + SEQ_LEN + 1] for s in starts])
        loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    root = Path(tempfile.mkdtemp(prefix="posttrain-base-"))
    return save_checkpoint(root / "base", model, tok, {"kind": "base-generated-test", "loss": float(loss.detach())})


def load_base():
    return load_model(tiny_base())


TOPICS = ["the weather", "a recipe for soup", "my homework", "a good book", "the train times", "python lists",
          "sleeping better", "a birthday gift", "the capital of France", "learning to swim", "saving money",
          "a poem about cats", "fixing my bike", "a movie tonight", "planting tomatoes", "writing a letter"]
ASKS = ["Can you help me with {t}?", "Tell me about {t}.", "I need advice on {t}.", "What do you know about {t}?"]
GOOD = ["Sure, I am happy to help with {t}. Here is a clear answer.", "Of course! Let us look at {t} together.",
        "Happy to help: here are a few useful tips about {t}."]
MEH = ["I think {t} is fine.", "Maybe look up {t} somewhere.", "Hmm, {t}. Not sure."]
BAD = ["No. Go away, I hate {t}.", "Stupid question about {t}. Shut up.", "Ugh, {t} is dumb and so are you."]


def generated_preferences(path: Path, n: int, seed: int = 0, rankings: bool = False) -> Path:
    """Write GENERATED preferences (helpful > lukewarm > rude) as JSONL rankings or HH-style pairs."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        t = rng.choice(TOPICS)
        q = rng.choice(ASKS).format(t=t)
        good, meh, bad = (rng.choice(x).format(t=t) for x in (GOOD, MEH, BAD))
        if rankings:
            lines.append(json.dumps({"prompt": q, "responses": [good, meh, bad]}))
        else:
            lines.append(json.dumps({"chosen": f"\n\nHuman: {q}\n\nAssistant: {good}",
                                     "rejected": f"\n\nHuman: {q}\n\nAssistant: {bad}"}))
    path.write_text("\n".join(lines) + "\n")
    return path
