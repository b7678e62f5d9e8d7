"""GENERATED tokenize-stage output (tokenizer + train/val shards) from real text, and a micro pretrain config."""
from __future__ import annotations

from pathlib import Path

from tests.support.toy import make_generated_token_shards

REPO = Path(__file__).resolve().parents[2]
TEXT = REPO / "data" / "text" / "tinyshakespeare.txt"


def make_generated_token_dataset(out: Path, n_chars: int = 120_000, vocab_size: int = 384,
                                 n_train_shards: int = 2) -> Path:
    """Generated test data: tokenizer + train/val token shards from real text."""
    return make_generated_token_shards(out, [TEXT.read_text(encoding="utf-8")[:n_chars]], vocab_size,
                                       val_fraction=0.1, n_train_shards=n_train_shards,
                                       source="generated-test:tinyshakespeare")


# Small enough for seconds per run on 2 CPU cores; 1 thread keeps runs comparable.
MICRO = dict(depth=2, sequence_len=64, device_batch_size=8, max_steps=40, warmup_steps=4, lr=3e-3,
             eval_every=20, eval_tokens=2048, checkpoint_every=10, sample_every=0, sample_tokens=8,
             progress=False, threads=1, seed=1234)
