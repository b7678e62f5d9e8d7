"""Config of the `curate` stage: Common Crawl WARC → clean, deduplicated Parquet.

Defaults are FineWeb's published ones (datatrove's `fineweb.py` recipe): UT1
adult URL list + banned words (soft threshold 2), trafilatura favouring
precision, fastText lid.176 English ≥ 0.65, Gopher repetition/quality, C4
without the terminal-punctuation rule, FineWeb quality, MinHash 5-grams with
14 bands × 8 hashes. Then, beyond FineWeb (FineWeb-Edu / DCLM / Dolma): a fastText
quality classifier, exact line dedup across the corpus, and PII scrubbing (e-mails, IPs,
SSNs, payment cards, street addresses, phones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from conf import resolve_path
from conf.settings import Settings, model_getter, setting


def _bundled_paths(paths: list[str]) -> list[str]:
    """Preset paths such as `data/samples/blocklists/…` work from any directory (conf.resolve_path)."""
    return [resolve_path(p) for p in paths]


def _bundled_path(path: str | None) -> str | None:
    """A bundled model path (`data/quality/…`) works from any directory; None stays None."""
    return resolve_path(path) if path else path


@dataclass
class CurateSettings(Settings):
    """Every knob of the curation stage (see conf/presets/*.yaml, section `curate`)."""

    section: ClassVar[str] = "curate"

    # --- reading ---------------------------------------------------------
    # Bodies above this are skipped with reason "too_large" before any parsing;
    # FineWeb's pages are rarely over 1 MB, a 10 MB body is junk or an attack.
    max_body_bytes: int = setting(10_000_000, gt=0)
    crawl_base_url: str = "https://data.commoncrawl.org"

    # --- remote reads (https://, s3://; tasks/curation/remote.py) ------------------
    # A transient fault (HTTP 429/5xx, reset, cut-short body, read timeout) is
    # retried with exponential backoff + jitter and the stream resumed with a
    # Range request at the first missing byte. Only `remote_retries` failures in
    # a row without a new byte count the file as failed (stats.json
    # `failed_inputs`, exit code 3). No cap on a whole download: a stall is
    # `remote_read_timeout_s` without a byte, then resumed. These shape how a
    # file is read, not what comes out: they are not part of the cache keys.
    remote_retries: int = setting(10, ge=0)
    remote_backoff_s: float = setting(1.0, ge=0)
    remote_backoff_max_s: float = setting(60.0, ge=0)
    remote_read_timeout_s: float = setting(60.0, gt=0)
    remote_connect_timeout_s: float = setting(30.0, gt=0)
    # Resume inside a file (tasks/curation/shard_checkpoint.py): progress is saved every
    # N WARC records (~1,700 pages of a Common Crawl file at 5000); 0 = off.
    checkpoint_every_records: int = setting(5000, ge=0)

    # --- URL filter ------------------------------------------------------
    use_ut1_adult: bool = True  # the 4.5 M-domain list bundled in datatrove's wheel
    url_blocklist_files: list[str] = setting([], check=_bundled_paths)  # extra domain/URL lists
    soft_banned_threshold: int = setting(2, ge=1)

    # --- extraction ------------------------------------------------------
    extractor: Literal["trafilatura", "resiliparse"] = "trafilatura"
    # Budget per page in CPU seconds (not wall-clock: a busy worker must not drop
    # pages an idle one keeps; tasks/curation/extract.py). datatrove/FineWeb use 1 s of
    # wall time; pages take ~30 ms. A page over budget is retried once with
    # `extract_retry_timeout_s`, then dropped with reason "timeout".
    extract_timeout_s: float = setting(5.0, gt=0)
    extract_retry_timeout_s: float = setting(30.0, gt=0)
    favour_precision: bool = True

    # --- language ID -----------------------------------------------------
    languages: list[str] = setting(["en"])
    language_threshold: float = setting(0.65, ge=0.0, le=1.0)
    # Gate before extraction (stage "language_gate", tasks/langid.gate_verdict):
    # fastText on the tag-stripped page; a page it is confident (score ≥ threshold)
    # is in none of `languages`, with under 100 characters of text blocks in them,
    # skips trafilatura. On by default: benchmarks/curate_vs_datatrove.py measured
    # kept-document agreement 1.0 with the gate off (Common-Crawl-like language mix
    # and the real samples), and 0 of the kept pages lost when put on a
    # foreign-language site (menus/footer in another language).
    language_gate: bool = True
    language_gate_threshold: float = setting(0.8, ge=0.0, le=1.0)

    # --- dropped samples -------------------------------------------------
    # The first N documents dropped for each (stage, reason) of a file go to
    # work/process/<shard>.dropped.parquet, to show what a filter removed. 0 = none.
    dropped_samples_per_reason: int = setting(5, ge=0)

    # --- quality filters (each can be switched off) ------------------------
    gopher_repetition: bool = True
    gopher_quality: bool = True
    c4: bool = True
    fineweb: bool = True

    # --- near-duplicate removal (MinHash, across all shards) ----------------
    minhash_ngram: int = setting(5, ge=1)
    minhash_buckets: int = setting(14, ge=1)
    minhash_hashes_per_bucket: int = setting(8, ge=1)
    minhash_seed: int = 1
    dedup: bool = True
    # Optional exact check (FineWeb has none): a candidate pair joins a cluster only
    # if its full signatures agree on at least this share of min-hashes
    # (estimated Jaccard). None = off, as in FineWeb.
    dedup_jaccard_threshold: float | None = setting(None, ge=0.0, le=1.0)
    # Scale-out of LSH buckets + clustering (tasks/curation/dedup_ray.py): with more signed
    # documents than this, every band is bucketed in ceil(docs / this) partitions
    # and clusters are found by that many workers (Ray tasks), each holding its
    # share only. The output is the same for any value; benchmarks/curate_scale.py
    # measured ~0.2 KB per document of a band-partition (5 M docs ≈ 1 GB a worker).
    dedup_docs_per_partition: int = setting(5_000_000, gt=0)
    # LSH work per Prefect task, in band × documents: the bands of a small corpus share
    # a task (one band per task while documents ≥ this). Each task run costs ~0.2 CPU s
    # of Prefect bookkeeping (a worker's API client and settings, the server's state
    # changes), more than bucketing one band of fewer than ~100k documents.
    lsh_band_docs_per_task: int = setting(1_000_000, gt=0)

    # --- model-based quality classifier (stage quality_classifier; tasks/curation/quality_classifier.py)
    # fastText P(high quality) of every document near-duplicate removal kept, written as the
    # `quality_score` column. quality_model None = the shipped model (data/quality/, trained on
    # the bundled Wikipedia + C4 text against the boilerplate of the real sample pages;
    # held-out figures in docs/CURATION.md). What is dropped: a score under
    # `quality_threshold`, or, when `quality_keep_share` is set, all but that share of the
    # corpus (highest scores kept). Default 0.1, not DCLM's top-10 %: the shipped model has
    # seen 39 pages of negatives, so it is trusted only where it is sure a document reads like
    # menus and footers; a model trained on your corpus (`crawl2chat quality-train`) earns a
    # stricter cut.
    quality_classifier: bool = True
    quality_model: str | None = setting(None, check=_bundled_path)
    quality_threshold: float = setting(0.1, ge=0.0, le=1.0)
    quality_keep_share: float | None = setting(None, gt=0.0, le=1.0)

    # --- exact line dedup across the corpus (stage line_dedup; tasks/curation/line_dedup.py) ----------
    # A line (case and whitespace ignored) in two or more documents that near-duplicate
    # removal kept is removed from all of them: site-wide boilerplate (cookie banners,
    # newsletter and navigation sentences). Lines under `line_dedup_min_chars` characters are
    # exempt (30 = the length FineWeb calls a short line: "Thank you!" or "Read more" in two
    # pages says nothing about either); a document left with fewer than
    # `line_dedup_min_words` words (Gopher's minimum, 50) is dropped ("too_short").
    line_dedup: bool = True
    line_dedup_min_chars: int = setting(30, ge=1)
    line_dedup_min_words: int = setting(50, ge=0)
    # Counting is split by hash range so that a worker holds at most this many line hashes
    # (8 bytes each: 50 M ≈ 400 MB + np.unique's sort). The output is the same for any value.
    line_dedup_hashes_per_partition: int = setting(50_000_000, gt=0)

    # --- PII scrubbing ---------------------------------------------------
    pii_email: bool = True
    pii_ip: bool = True
    pii_ssn: bool = True
    pii_card: bool = True
    pii_address: bool = True
    pii_phone: bool = True

    # --- output / compute ------------------------------------------------
    docs_per_shard: int = setting(100_000, gt=0)  # Parquet row-group/shard sizing hint
    # Inputs per Prefect task (process + minhash in one task, finalize in another):
    # thousands of small inputs would otherwise cost a task run's orchestration
    # each, three times (benchmarks/curate_scale.py "overhead"). Outputs are the
    # same for any value; a re-run skips finished inputs either way (sidecars).
    inputs_per_task: int = setting(1, ge=1)
    ray_address: str | None = None
    max_warc_files: int | None = None  # cap on inputs (demo/smoke runs)

    # --- default inputs of `llm-pipeline` (read by flows/pipeline.py) ------
    # Run without `inputs`, the pipeline curates the real samples in data/samples
    # (only ~14 clean English documents) plus, when this is > 0, one GENERATED
    # WARC of this many pages built from the real text in data/ (data/build_warc.py,
    # seed 0) under ROOT/inputs/. `make demo` and the `llm-pipeline/<preset>`
    # deployments take the same path, so they curate the same documents.
    generated_docs: int = setting(0, ge=0)


# CurateConfig: the pydantic model of CurateSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"CurateConfig": "CurateSettings"})
