"""Config of the `curate` stage: Common Crawl WARC → clean, deduplicated Parquet.

Defaults are FineWeb's published ones (datatrove's `fineweb.py` recipe): UT1
adult URL list + banned words (soft threshold 2), trafilatura favouring
precision, fastText lid.176 English ≥ 0.65, Gopher repetition/quality, C4
without the terminal-punctuation rule, FineWeb quality, MinHash 5-grams with
14 bands × 8 hashes, then PII scrubbing.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from conf import StageConfig, resolve_path


class CurateConfig(StageConfig):
    """Every knob of the curation stage (see conf/presets/*.yaml, section `curate`)."""

    section: str = "curate"

    # --- reading ---------------------------------------------------------
    # Bodies above this are skipped with reason "too_large" before any parsing;
    # FineWeb's pages are rarely over 1 MB, a 10 MB body is junk or an attack.
    max_body_bytes: int = Field(10_000_000, gt=0)
    crawl_base_url: str = "https://data.commoncrawl.org"

    # --- URL filter ------------------------------------------------------
    use_ut1_adult: bool = True  # the 4.5 M-domain list bundled in datatrove's wheel
    url_blocklist_files: list[str] = Field(default_factory=list)  # extra domain/URL lists
    soft_banned_threshold: int = Field(2, ge=1)

    @field_validator("url_blocklist_files")
    @classmethod
    def _bundled_paths(cls, v: list[str]) -> list[str]:
        return [resolve_path(p) for p in v]

    # --- extraction ------------------------------------------------------
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    # datatrove/FineWeb use 1 s; 5 s so that a busy worker does not drop pages at
    # random (a re-run must give the same documents). Pages are ~30 ms typically.
    extract_timeout_s: float = Field(5.0, gt=0)
    favour_precision: bool = True

    # --- language ID -----------------------------------------------------
    languages: list[str] = Field(default_factory=lambda: ["en"])
    language_threshold: float = Field(0.65, ge=0.0, le=1.0)

    # --- quality filters (each can be switched off) ------------------------
    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4: bool = True
    fineweb: bool = True

    # --- near-duplicate removal (MinHash, across all shards) ----------------
    minhash_ngram: int = Field(5, ge=1)
    minhash_buckets: int = Field(14, ge=1)
    minhash_hashes_per_bucket: int = Field(8, ge=1)
    minhash_seed: int = 1
    dedup: bool = True

    # --- PII scrubbing ---------------------------------------------------
    pii_email: bool = True
    pii_ip: bool = True
    pii_phone: bool = True

    # --- output / compute ------------------------------------------------
    docs_per_shard: int = Field(100_000, gt=0)  # Parquet row-group/shard sizing hint
    ray_address: str | None = None
    max_warc_files: int | None = None  # cap on inputs (demo/smoke runs)

    # --- default inputs of `llm-pipeline` (read by flows/pipeline.py) ------
    # Run without `inputs`, the pipeline curates the real samples in data/samples
    # (only ~14 clean English documents) plus, when this is > 0, one GENERATED
    # WARC of this many pages built from the real text in data/ (data/build_warc.py,
    # seed 0) under ROOT/inputs/. `make demo` and the `llm-pipeline/<preset>`
    # deployments take the same path, so they curate the same documents.
    generated_docs: int = Field(0, ge=0)
