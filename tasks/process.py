"""`process_warc`: one WARC file → one filtered Parquet shard + its funnel.

The per-file half of the curation stage (FineWeb's recipe, datatrove blocks):
read → URL filter → extract → language ID → Gopher repetition → Gopher quality
→ C4 (no terminal-punctuation rule) → FineWeb quality. Cross-file work (MinHash
dedup, PII) happens later, on these shards.

Runs unchanged in a plain process or a Ray worker: the heavy resources (UT1
list, fastText model, filter objects) come from per-process caches, so a worker
pays their load time once, not per task.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from conf.curate import CurateConfig
from tasks.extract import extract_text
from tasks.funnel import STAGE_ORDER, StageCounter
from tasks.langid import identify
from tasks.quality import load_quality_filters, verdict
from tasks.urlfilter import load_url_blocker, resolve_list_path
from tasks.warc import iter_records

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("id", pa.string()),            # WARC-Record-ID
    ("url", pa.string()),           # WARC-Target-URI
    ("domain", pa.string()),        # host of the URL, lower-case, no port
    ("date", pa.string()),          # WARC-Date, ISO 8601
    ("warc_file", pa.string()),     # input path/URL the record came from
    ("text", pa.string()),          # extracted, filtered main text
    ("language", pa.string()),      # lid.176 top label
    ("language_score", pa.float64()),
])
_BATCH = 1000


def domain_of(url: str) -> str:
    """Host part of a URL, lower-case, without port or credentials ('' if none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _write_batch(writer: pq.ParquetWriter, rows: list[dict[str, Any]]) -> None:
    writer.write_table(pa.Table.from_pylist(rows, schema=SCHEMA))
    rows.clear()


def process_warc(src: str, out_path: str, cfg: CurateConfig) -> dict[str, Any]:
    """Filter one WARC into `out_path` (Parquet, written atomically, even if empty); return its funnel."""
    t0 = time.perf_counter()
    stages = {name: StageCounter(name) for name in STAGE_ORDER}
    errors: dict[str, int] = {}
    blocker = load_url_blocker(cfg.use_ut1_adult, cfg.soft_banned_threshold,
                               tuple(resolve_list_path(p) for p in cfg.url_blocklist_files))
    quality = dict(load_quality_filters(cfg.gopher_repetition, cfg.gopher_quality, cfg.c4, cfg.fineweb))
    from datatrove.data import Document

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    rows: list[dict[str, Any]] = []
    n_out = 0
    writer = pq.ParquetWriter(tmp, SCHEMA, compression="zstd")
    try:
        for rec in iter_records(src, stages["read"], errors, cfg.max_body_bytes):
            stage = "url_filter"
            try:
                st = stages[stage]
                st.seen()
                reason = blocker.check(rec.url)
                if reason:
                    st.drop(reason)
                    continue
                st.keep()

                stage = "extract"
                st = stages[stage]
                st.seen()
                if rec.kind == "text":  # WET conversion record: already plain text
                    text, reason = (rec.text.strip() or None), (None if rec.text.strip() else "no_text")
                else:
                    text, reason = extract_text(rec.text, cfg.extractor, cfg.extract_timeout_s,
                                                cfg.favour_precision)
                if reason:
                    st.drop(reason)
                    continue
                st.keep()

                stage = "language"
                st = stages[stage]
                st.seen()
                lang, score, reason = identify(text, cfg.languages, cfg.language_threshold)
                if reason:
                    st.drop(reason)
                    continue
                st.keep()

                doc = Document(text=text, id=rec.id, metadata={"url": rec.url})
                dropped = False
                for stage in STAGE_ORDER[4:]:
                    st = stages[stage]
                    st.seen()
                    flt = quality.get(stage)
                    reason = verdict(flt, doc) if flt is not None else None
                    if reason:
                        st.drop(reason)
                        dropped = True
                        break
                    st.keep()
                if dropped:
                    continue
            except Exception as e:  # noqa: BLE001 — one bad page must not stop the file
                stages[stage].drop("error")
                errors["doc_error"] = errors.get("doc_error", 0) + 1
                log.warning("%s: record %s failed in %s: %s: %s", src, rec.id, stage,
                            type(e).__name__, e)
                continue
            rows.append({"id": rec.id, "url": rec.url, "domain": domain_of(rec.url), "date": rec.date,
                         "warc_file": src, "text": doc.text, "language": lang,
                         "language_score": round(score, 4)})
            n_out += 1
            if len(rows) >= _BATCH:
                _write_batch(writer, rows)
                log.info("%s: %d documents kept so far (%d read)", src, n_out, stages["read"].n_in)
        if rows:
            _write_batch(writer, rows)
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    stats = {"stages": [stages[s].as_dict() for s in STAGE_ORDER], "errors": dict(sorted(errors.items()))}
    log.info("%s: %d → %d documents in %.1fs", src, stages["read"].n_in, n_out, time.perf_counter() - t0)
    return stats
