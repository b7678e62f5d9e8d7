"""Config of the `tokenize` stage: curated Parquet → tokenizer.json + token shards."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from conf.settings import Settings, model_getter, setting


@dataclass
class TokenizeSettings(Settings):
    """Every knob of the tokenize stage (see conf/presets/*.yaml, section `tokenize`)."""

    section: ClassVar[str] = "tokenize"

    # --- tokenizer training ------------------------------------------------
    # Counts bytes (256) + merges + special tokens. ≤ 65536 keeps shards uint16.
    vocab_size: int = setting(4096, ge=512, le=1 << 20)
    # Training text is capped: BPE statistics settle long before the corpus ends,
    # and training memory grows with the number of distinct pre-tokens.
    max_chars: int = setting(200_000_000, gt=0)
    min_frequency: int = setting(2, ge=1)
    text_column: str = "text"
    id_column: str = "id"  # hashed for the train/val split; falls back to the text

    # --- train/val split ---------------------------------------------------
    # A document is held out when hash(id) falls in the first `val_fraction` of
    # the hash range: deterministic, independent of shard layout and order, and
    # the same documents the tokenizer never saw and the compression table uses.
    val_fraction: float = setting(0.01, ge=0.0, lt=1.0)
    # A tiny corpus would often hash no document into val: the threshold is then
    # raised just enough to hold out this many (always leaving one for training).
    min_val_docs: int = setting(1, ge=0)
    split_seed: str = "crawl2chat-val"

    # --- sharding / compute -------------------------------------------------
    batch_docs: int = setting(1024, gt=0)  # documents per encode_batch call
    ray_address: str | None = None

    # --- compression report -------------------------------------------------
    compression_docs: int = setting(2000, gt=0)  # held-out documents measured
    # GPT-2 vocab/merges for the reference row; None = look in the usual places
    # (data/text/ in the repo) and skip the row if absent.
    gpt2_vocab: str | None = None
    gpt2_merges: str | None = None


# TokenizeConfig: the pydantic model of TokenizeSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"TokenizeConfig": "TokenizeSettings"})
