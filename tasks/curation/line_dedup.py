"""Exact line dedup across the corpus (stage `line_dedup`): site-wide boilerplate out.

Cookie banners, newsletter sign-ups and navigation sentences survive MinHash, because each
page that carries them differs elsewhere. FineWeb-Edu, DCLM and Dolma remove such lines
exactly: a line (normalised: lower case, whitespace collapsed) that occurs in more than one
document of the corpus is removed from every document that has it; a document left with
fewer than `line_dedup_min_words` words is dropped ("too_short"). Lines shorter than
`line_dedup_min_chars` (after normalising) are exempt: "Thank you!" or "Read more" in two
pages says nothing about either.

Counting is by 64-bit hash, in three steps that each hold a bounded share of the corpus:

1. `shard_line_hashes` (one task per shard): the hash of every eligible line of each
   document that near-duplicate removal kept, once per document, sorted (one uint64 .npy).
2. `count_partition` (one Ray task per partition): a partition is a range of hash values,
   so it reads only its slice of each shard's sorted file (memory-mapped) and keeps the
   hashes seen in ≥ 2 documents (`dups_PPPP-of-NNNN.npy`). A worker holds 1/n_parts of
   the corpus's line hashes (8 bytes each); `n_parts` comes from the total.
3. `apply_line_dedup` (in finalize, per shard): looks each line's hash up in the duplicate
   set of its partition, one partition at a time.

The duplicate set is a set of hashes counted per document, so it does not depend on the
order of the inputs, the number of partitions or of workers (tests/tasks/curation/test_line_dedup.py).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import xxhash

from tasks.curation.minhash import _save_npy

_WS = re.compile(r"\s+")


def normalise_line(line: str) -> str:
    """What makes two lines "the same": case and whitespace do not count."""
    return _WS.sub(" ", line).strip().lower()


def line_hash(norm: str) -> int:
    """64-bit hash of a normalised line (xxh64, seed 0: stable across processes and machines)."""
    return xxhash.xxh64_intdigest(norm)


def doc_line_hashes(text: str, min_chars: int) -> list[int | None]:
    """Per line of `text` (split on "\\n"): its hash, or None when the line is exempt (too short)."""
    out: list[int | None] = []
    for line in text.split("\n"):
        norm = normalise_line(line)
        out.append(line_hash(norm) if len(norm) >= min_chars else None)
    return out


def partition_of(hashes: np.ndarray, n_parts: int) -> np.ndarray:
    """Partition of each hash: its top 32 bits scaled to n_parts, so a partition is a hash range."""
    if n_parts == 1:
        return np.zeros(hashes.shape, dtype=np.int64)
    return ((hashes >> np.uint64(32)) * np.uint64(n_parts) >> np.uint64(32)).astype(np.int64)


def partition_bounds(n_parts: int) -> list[int]:
    """First hash of each partition, plus 2**64: partition p is [bounds[p], bounds[p+1])."""
    return [(-(-(p << 32) // n_parts)) << 32 for p in range(n_parts)] + [1 << 64]


def part_slice(sorted_hashes: np.ndarray, p: int, n_parts: int) -> np.ndarray:
    """The hashes of partition p in a sorted array (a memory-mapped file reads only that range)."""
    b = partition_bounds(n_parts)
    lo = 0 if p == 0 else int(np.searchsorted(sorted_hashes, np.uint64(b[p])))
    hi = len(sorted_hashes) if p == n_parts - 1 else int(np.searchsorted(sorted_hashes, np.uint64(b[p + 1])))
    return sorted_hashes[lo:hi]


def n_partitions(total_hashes: int, hashes_per_partition: int) -> int:
    """How many partitions keep each counting worker under `hashes_per_partition` hashes."""
    return max(1, math.ceil(total_hashes / hashes_per_partition))


def shard_line_hashes(texts: Iterable[str | None], min_chars: int) -> np.ndarray:
    """Sorted hashes of the eligible lines of every document, each distinct hash once per document."""
    chunks = []
    for text in texts:
        if not text:
            continue
        hs = {h for h in doc_line_hashes(text, min_chars) if h is not None}
        if hs:
            chunks.append(np.fromiter(hs, dtype=np.uint64, count=len(hs)))
    return np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, dtype=np.uint64)


def duplicate_hashes(part_arrays: Iterable[np.ndarray]) -> np.ndarray:
    """Sorted hashes seen in two or more documents (each array: one shard's hashes, once per document)."""
    arrays = [np.asarray(a) for a in part_arrays if len(a)]
    if not arrays:
        return np.zeros(0, dtype=np.uint64)
    values, counts = np.unique(np.concatenate(arrays), return_counts=True)
    return values[counts >= 2]


def count_partition(shard_paths: list[str], p: int, n_parts: int, out_path: str) -> int:
    """Partition p of every shard's hashes → its duplicate hashes (`out_path`, .npy); returns how many."""
    dups = duplicate_hashes(part_slice(np.load(path, mmap_mode="r"), p, n_parts) for path in shard_paths)
    _save_npy(out_path, dups)
    return int(dups.size)


def dups_path(out_dir: str | Path, p: int, n_parts: int) -> str:
    return str(Path(out_dir) / f"dups_{p:04d}-of-{n_parts:04d}.npy")


def count_duplicates(shard_paths: list[str], out_dir: str | Path, n_parts: int,
                     map_fn: Callable[..., list[Any]] | None = None) -> dict[str, int]:
    """Every partition counted (as Ray tasks when Ray is up: tasks.curation.dedup_ray.default_map)."""
    from tasks.curation.dedup_ray import default_map

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    calls = [(shard_paths, p, n_parts, dups_path(out_dir, p, n_parts)) for p in range(n_parts)]
    counts = (map_fn or default_map)(count_partition, calls)
    return {"duplicate_lines": int(sum(counts)), "partitions": n_parts}


def remove_lines(text: str, line_hashes: list[int | None], is_dup: list[bool]) -> tuple[str, int]:
    """`text` without its duplicated lines (is_dup per hashed line, in order); returns (text, removed)."""
    lines = text.split("\n")
    kept, removed, k = [], 0, 0
    for line, h in zip(lines, line_hashes):
        if h is not None:
            dup = is_dup[k]
            k += 1
            if dup:
                removed += 1
                continue
        kept.append(line)
    return "\n".join(kept).strip(), removed


def apply_line_dedup(texts: list[str | None], dup_dir: str | Path, n_parts: int, min_chars: int,
                     min_words: int) -> tuple[list[str | None], np.ndarray, dict[str, int], list[tuple[str, int]]]:
    """Remove duplicated lines from each text; (new texts, keep mask, counts, removed lines sample).

    `dup_dir`, `n_parts`: where `count_duplicates` wrote the duplicate hashes. Counts:
    `lines_removed`, `docs_changed`, `too_short` (documents dropped). The sample holds
    up to 50 (normalised removed line, 1) pairs for the report's "top removed lines".
    """
    per_doc = [doc_line_hashes(t, min_chars) if t else [] for t in texts]
    flat = np.fromiter((h for hs in per_doc for h in hs if h is not None), dtype=np.uint64)
    is_dup = np.zeros(flat.size, dtype=bool)
    if flat.size:
        parts = partition_of(flat, n_parts)
        for p in range(n_parts):  # one partition's duplicate set in memory at a time
            sel = np.flatnonzero(parts == p)
            if sel.size:
                dups = np.load(dups_path(dup_dir, p, n_parts))
                if dups.size:
                    pos = np.searchsorted(dups, flat[sel])
                    pos[pos >= dups.size] = 0
                    is_dup[sel] = dups[pos] == flat[sel]
    out: list[str | None] = []
    keep = np.ones(len(texts), dtype=bool)
    counts = {"lines_removed": 0, "docs_changed": 0, "too_short": 0}
    sample: list[tuple[str, int]] = []
    k = 0
    for i, (text, hs) in enumerate(zip(texts, per_doc)):
        n_h = sum(h is not None for h in hs)
        flags = is_dup[k:k + n_h].tolist()
        k += n_h
        if not text or not any(flags):
            out.append(text)
            continue
        if len(sample) < 50:
            lines = [ln for ln, h in zip(text.split("\n"), hs) if h is not None]
            sample.extend((normalise_line(ln), 1) for ln, f in zip(lines, flags) if f)
        new, removed = remove_lines(text, hs, flags)
        counts["lines_removed"] += removed
        counts["docs_changed"] += 1
        if len(new.split()) < min_words:
            keep[i] = False
            counts["too_short"] += 1
        out.append(new)
    return out, keep, counts, sample[:50]


def shard_pass(parquet_in: str, shard_index: int, dedup_path: str | None, hashes_out: str | None,
               scores_out: str | None, cfg: Any) -> dict[str, Any]:
    """The per-shard pass before finalize, over the documents near-duplicate removal kept:
    their line hashes (`hashes_out`, sorted uint64) and quality scores (`scores_out`, one
    float64 per row of the shard, NaN for a dropped row). Returns counts and a 1000-bin
    score histogram (for `quality_keep_share`)."""
    import pyarrow.parquet as pq

    from tasks.curation.finalize import _shard_clusters
    from tasks.curation.quality_classifier import histogram, load_classifier, resolve_model, score_texts

    texts = pq.read_table(parquet_in, columns=["text"]).column("text").to_pylist()
    drop, _ = _shard_clusters(dedup_path, shard_index, len(texts))
    kept = [t for t, d in zip(texts, drop) if not d]
    out: dict[str, Any] = {"documents": len(kept)}
    if scores_out is not None:
        scores = np.full(len(texts), np.nan)
        scores[~drop] = score_texts(kept, load_classifier(resolve_model(cfg.quality_model)))
        _save_npy(scores_out, scores)
        out["histogram"] = histogram(scores[~drop])
    if hashes_out is not None:
        hashes = shard_line_hashes(kept, cfg.line_dedup_min_chars)
        _save_npy(hashes_out, hashes)
        out["hashes"] = int(hashes.size)
    return out
