"""Config of the `index` stage: curated Parquet → passages → Tantivy full-text index (+ the search tool's settings)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from conf.settings import Settings, model_getter, setting


@dataclass
class IndexSettings(Settings):
    """Every knob of the index stage (see conf/presets/*.yaml, section `index`)."""

    section: ClassVar[str] = "index"

    # --- passages -----------------------------------------------------------
    # A passage closes at the first line break after `passage_words` words (a line
    # longer than `max_passage_words` is cut by words): a few hundred tokens each.
    passage_words: int = setting(150, ge=8)
    max_passage_words: int = setting(300, ge=8)
    # A document's last passage shorter than this joins the one before it.
    min_passage_words: int = setting(20, ge=1)
    title_column: str = "title"  # used when the curated shards have it; else the domain is the title
    # --- index writer ---------------------------------------------------------
    heap_mb: int = setting(64, ge=15)  # Tantivy's writer needs at least 15 MB
    threads: int = setting(1, ge=1)
    # --- the search tool (recorded in the manifest; SFT data, eval and serving read it)
    top_k: int = setting(3, ge=1, le=20)
    max_tokens: int = setting(256, ge=16)  # word pieces of tool output (lm/tools/search.py)


# IndexConfig: the pydantic model of IndexSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"IndexConfig": "IndexSettings"})
