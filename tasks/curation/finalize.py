"""Last step of `curate`, one per shard: drop near-duplicates, apply the quality classifier's cut,
remove corpus-wide duplicated lines, scrub PII, write the curated Parquet.

Input: a pre-dedup shard (tasks/curation/process.py) and the cluster table of
`tasks.curation.minhash.cluster` (rows of every shard that sit in a duplicate cluster).
Output: `<out>/curated/<shard>.parquet` with every input column plus
`dup_cluster_size` (int64, 1 for a unique document; for a kept representative
the size of the cluster it stands for), `quality_score` (float64 in [0, 1], the
classifier's P(high quality); null when the classifier is off) and `pii_replacements`
(int64, total placeholders put into `text`). The file is written atomically, with the full
schema even when no document survives.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_path
from tasks.curation.line_dedup import apply_line_dedup
from tasks.curation.pii import KINDS, scrub_pii

log = logging.getLogger(__name__)

ADDED_COLUMNS = (("dup_cluster_size", pa.int64()), ("quality_score", pa.float64()), ("pii_replacements", pa.int64()))


def _shard_clusters(dedup_path: str | None, shard_index: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(drop mask, cluster size per row) of one shard from the cluster table."""
    drop = np.zeros(n_rows, dtype=bool)
    sizes = np.ones(n_rows, dtype=np.int64)
    if dedup_path is None:  # dedup switched off: every document is unique
        return drop, sizes
    if not Path(dedup_path).exists():
        raise FileNotFoundError(f"cluster table {dedup_path} does not exist; run the minhash cluster step first")
    t = pq.read_table(dedup_path, columns=["row", "cluster_size", "drop"],
                      filters=[("shard", "=", shard_index)])
    rows = t.column("row").to_numpy()
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"cluster table {dedup_path} names row {int(rows.max())} of shard {shard_index}, "
                         f"which has {n_rows} rows: signatures were computed on another version of the "
                         "shard; re-run the minhash steps")
    drop[rows] = t.column("drop").to_numpy(zero_copy_only=False)
    sizes[rows] = t.column("cluster_size").to_numpy()
    return drop, sizes


def finalize_shard(parquet_in: str, shard_index: int, dedup_path: str | None, out_path: str,
                   cfg: Any = None, lines_dir: str | None = None, line_parts: int = 1,
                   scores_path: str | None = None, quality_cut: float | None = None) -> dict[str, Any]:
    """Drop this shard's near-duplicates and low-quality documents, remove duplicated lines,
    scrub PII, write the curated shard; return its funnel.

    `dedup_path` None means dedup is off; `scores_path` None the classifier (its scores, one
    per row of the shard: tasks/line_dedup.shard_pass), `lines_dir` None line dedup. `cfg`
    supplies `pii_<kind>` and `line_dedup_min_chars/min_words`.
    Returns {"stages": [minhash_dedup, quality_classifier, line_dedup, pii]} in the format of
    tasks/curation/funnel.py (a stage that is off passes everything); line_dedup also carries
    `"lines_removed"` and `"docs_changed"`, pii `"replaced": {kind: n}` and `"docs_changed"`.
    """
    t0 = time.perf_counter()
    if not Path(parquet_in).exists():
        raise FileNotFoundError(f"pre-dedup shard {parquet_in} does not exist; run the process stage first")
    table = pq.read_table(parquet_in)
    if "text" not in table.column_names:
        raise ValueError(f"{parquet_in} has no 'text' column (columns: {table.column_names}); "
                         "it is not a pre-dedup shard of tasks/curation/process.py")
    clash = [name for name, _ in ADDED_COLUMNS if name in table.column_names]
    if clash:
        raise ValueError(f"{parquet_in} already has {clash}: it looks like a curated shard, not a pre-dedup one")
    n_in = table.num_rows
    drop, sizes = _shard_clusters(dedup_path, shard_index, n_in)
    keep = ~drop
    kept = table.filter(pa.array(keep))
    sizes = sizes[keep]
    n_near = kept.num_rows

    # quality classifier: scores were computed on exactly these documents (shard_pass)
    scores = np.full(n_near, np.nan)
    if scores_path is not None:
        all_scores = np.load(scores_path)
        if all_scores.shape[0] != n_in:
            raise ValueError(f"{scores_path} has {all_scores.shape[0]} scores for {n_in} rows of shard "
                             f"{shard_index}: re-run the line/score pass")
        scores = all_scores[keep]
        good = scores >= (quality_cut or 0.0)
        kept, sizes, scores = kept.filter(pa.array(good)), sizes[good], scores[good]
    n_quality = kept.num_rows

    # exact line dedup across the corpus
    texts_in = kept.column("text").to_pylist()
    line_counts = {"lines_removed": 0, "docs_changed": 0, "too_short": 0}
    if lines_dir is not None:
        texts_in, lkeep, line_counts, _ = apply_line_dedup(
            texts_in, lines_dir, line_parts, cfg.line_dedup_min_chars, cfg.line_dedup_min_words)
        kept, sizes, scores = kept.filter(pa.array(lkeep)), sizes[lkeep], scores[lkeep]
        texts_in = [t for t, k in zip(texts_in, lkeep) if k]

    replaced = dict.fromkeys(KINDS, 0)
    texts, per_doc = [], []
    for text in texts_in:
        if text is None:
            texts.append(None)
            per_doc.append(0)
            continue
        clean, counts = scrub_pii(text, cfg)
        texts.append(clean)
        per_doc.append(sum(counts.values()))
        for k, v in counts.items():
            replaced[k] += v
    text_idx = kept.column_names.index("text")
    kept = kept.set_column(text_idx, kept.schema.field("text"), pa.array(texts, type=kept.schema.field("text").type))
    kept = kept.append_column(pa.field(*ADDED_COLUMNS[0]), pa.array(sizes, type=pa.int64()))
    kept = kept.append_column(pa.field(*ADDED_COLUMNS[1]), pa.array(
        [None if np.isnan(x) else round(float(x), 4) for x in scores], type=pa.float64()))
    kept = kept.append_column(pa.field(*ADDED_COLUMNS[2]), pa.array(per_doc, type=pa.int64()))
    with atomic_path(out_path) as tmp:
        pq.write_table(kept, tmp)

    n_kept = kept.num_rows
    stats = {"stages": [
        {"stage": "minhash_dedup", "in": n_in, "kept": n_near, "dropped": {"near_duplicate": n_in - n_near}},
        {"stage": "quality_classifier", "in": n_near, "kept": n_quality, "dropped": {"low_quality": n_near - n_quality}},
        {"stage": "line_dedup", "in": n_quality, "kept": n_kept, "dropped": {"too_short": n_quality - n_kept},
         "lines_removed": line_counts["lines_removed"], "docs_changed": line_counts["docs_changed"]},
        {"stage": "pii", "in": n_kept, "kept": n_kept, "dropped": {}, "replaced": replaced,
         "docs_changed": int(np.count_nonzero(per_doc))},
    ]}
    log.info("finalize shard %d: %d → %d docs (near-duplicates %d, low quality %d, too short after line "
             "dedup %d; %d lines removed), PII %s in %.2fs → %s", shard_index, n_in, n_kept, n_in - n_near,
             n_near - n_quality, n_quality - n_kept, line_counts["lines_removed"], replaced,
             time.perf_counter() - t0, out_path)
    return stats
