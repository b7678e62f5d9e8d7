"""The `index` stage's logic: curated documents → passages → an on-disk Tantivy index (BM25).

    passages_for_shard    one curated shard → RUN/index/passages/<shard>.parquet
                          (url, title, domain, date, doc_id, passage_id, text)
    update_index          add new/changed shards' passages to RUN/index/tantivy,
                          drop passages of shards no longer curated; one writer,
                          one commit; RUN/index/state.json records what is committed

Incremental: a shard already in `state.json` with the same size and mtime is
not read again. Before a shard's passages are added, any passages of that shard
are deleted in the same commit, so a re-run after a crash (committed but not yet
recorded) never indexes a passage twice. The schema lives in lm/tools/search.py, next
to the reader.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.atomic import atomic_path, write_json
from lm.tools.search import PASSAGES_DIR, TANTIVY_DIR, schema

log = logging.getLogger(__name__)

STATE = "state.json"
PASSAGE_SCHEMA = pa.schema([(n, pa.string()) for n in
                            ("passage_id", "doc_id", "url", "title", "domain", "date", "text")])


def split_passages(text: str, words: int, max_words: int, min_words: int) -> list[str]:
    """Cut a document into passages: close one at the first line break after `words` words.

    A line longer than `max_words` is cut by words; a last passage under
    `min_words` joins the one before it (unless it is the only one).
    """
    out: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines():
        ws = line.split()
        if not ws:
            continue
        if len(ws) > max_words:  # one very long line: cut it by words
            if cur:
                out.append(cur)
                cur = []
            for i in range(0, len(ws), words):
                out.append(ws[i:i + words])
            continue
        cur = cur + (["\n"] if cur else []) + ws
        if sum(1 for w in cur if w != "\n") >= words:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    if len(out) > 1 and sum(1 for w in out[-1] if w != "\n") < min_words:
        last = out.pop()
        out[-1] = out[-1] + ["\n"] + last
    return [" ".join(p).replace(" \n ", "\n") for p in out]


def passages_for_shard(shard: str | Path, out_path: str | Path, cfg) -> dict[str, Any]:
    """Write the passages of one curated shard to `out_path` (Parquet); return counts.

    Documents without text or URL are skipped and counted by reason; an unreadable
    shard raises (the flow records it as failed and goes on).
    """
    t0 = time.perf_counter()
    table = pq.read_table(shard)
    cols = set(table.column_names)
    if "text" not in cols:
        raise ValueError(f"{shard} has no 'text' column (columns: {sorted(cols)}): not a curated shard")
    n = table.num_rows

    def col(name: str) -> list:
        return table.column(name).to_pylist() if name in cols else [None] * n

    texts, urls, ids = col("text"), col("url"), col("id")
    domains, dates, titles = col("domain"), col("date"), col(cfg.title_column)
    rows: dict[str, list[str]] = {f.name: [] for f in PASSAGE_SCHEMA}
    skipped: dict[str, int] = {}
    docs = 0
    for i in range(n):
        text, url = texts[i], urls[i]
        if not isinstance(text, str) or not text.strip():
            skipped["no_text"] = skipped.get("no_text", 0) + 1
            continue
        if not isinstance(url, str) or not url.strip():
            skipped["no_url"] = skipped.get("no_url", 0) + 1
            continue
        doc_id = str(ids[i] or f"{Path(shard).name}:{i}")
        domain = str(domains[i] or "")
        title = str(titles[i] or domain)
        docs += 1
        for j, p in enumerate(split_passages(text, cfg.passage_words, cfg.max_passage_words,
                                             cfg.min_passage_words)):
            for k, v in (("passage_id", f"{doc_id}#{j}"), ("doc_id", doc_id), ("url", url), ("title", title),
                         ("domain", domain), ("date", str(dates[i] or "")), ("text", p)):
                rows[k].append(v)
    with atomic_path(out_path) as tmp:
        pq.write_table(pa.table(rows, schema=PASSAGE_SCHEMA), tmp)
    stats = {"source": str(shard), "passages_path": str(out_path), "documents": docs,
             "passages": len(rows["text"]), "skipped": skipped, "seconds": round(time.perf_counter() - t0, 3)}
    log.info("index: %s → %d passages from %d documents (skipped %s)", Path(shard).name, stats["passages"], docs,
             skipped or "none")
    return stats


def read_state(index_dir: str | Path) -> tuple[dict[str, Any], str]:
    """({shard path: {size, mtime_ns, documents, passages, passages_path}}, passage key) the index holds."""
    try:
        data = json.loads((Path(index_dir) / STATE).read_text())
    except (OSError, ValueError):
        return {}, ""
    if not isinstance(data, dict):
        return {}, ""
    return data.get("shards") or {}, str(data.get("key") or "")


def plan_update(sources: list[dict[str, Any]], state: dict[str, Any]) -> tuple[list[dict], list[str]]:
    """(shards to (re)index, indexed shards no longer curated) from fingerprints and the state."""
    todo = [s for s in sources
            if (state.get(s["path"]) or {}).get("size") != s["size"]
            or state[s["path"]].get("mtime_ns") != s["mtime_ns"]]
    current = {s["path"] for s in sources}
    gone = [p for p in state if p not in current]
    return todo, gone


def _open_or_create(tv_dir: Path):
    import tantivy

    tv_dir.mkdir(parents=True, exist_ok=True)
    if tantivy.Index.exists(str(tv_dir)):
        return tantivy.Index.open(str(tv_dir))
    return tantivy.Index(schema(), path=str(tv_dir))


def update_index(index_dir: str | Path, added: list[dict[str, Any]], gone: list[str], cfg,
                 key: str = "") -> dict[str, Any]:
    """Apply one incremental update in one commit; returns the new state and counts.

    `added`: results of `passages_for_shard` (their `source` is the curated shard,
    with `size`/`mtime_ns` of its fingerprint); `gone`: shard paths to remove;
    `key`: what the passages depend on (config), recorded for the next run.
    """
    import tantivy

    t0 = time.perf_counter()
    index_dir = Path(index_dir)
    ix = _open_or_create(index_dir / TANTIVY_DIR)
    state, _ = read_state(index_dir)
    writer = ix.writer(heap_size=cfg.heap_mb * 1_000_000, num_threads=cfg.threads)
    n_added = 0
    try:
        for path in gone:
            writer.delete_documents_by_term("shard", path)
        for a in added:
            writer.delete_documents_by_term("shard", a["source"])  # a half-recorded earlier run, a changed shard
            t = pq.read_table(a["passages_path"])
            for r in t.to_pylist():
                writer.add_document(tantivy.Document(**{k: v or "" for k, v in r.items()}, shard=a["source"]))
                n_added += 1
        writer.commit()
        writer.wait_merging_threads()
    except BaseException:
        writer.rollback()
        raise
    for path in gone:
        old = state.pop(path, None) or {}
        if old.get("passages_path"):
            (index_dir / old["passages_path"]).unlink(missing_ok=True)
    for a in added:
        state[a["source"]] = {k: a[k] for k in ("size", "mtime_ns", "documents", "passages")}
        state[a["source"]]["passages_path"] = str(Path(a["passages_path"]).resolve().relative_to(index_dir.resolve()))
    write_json(index_dir / STATE, {"key": key, "shards": state})  # after the commit: it says what the index holds
    ix.reload()
    total = int(ix.searcher().num_docs)
    expected = sum(s["passages"] for s in state.values())
    if total != expected:
        raise RuntimeError(f"index {index_dir} holds {total} passages but its state lists {expected}; "
                           f"delete {index_dir} and re-run the index stage")
    return {"state": state, "added_passages": n_added, "removed_shards": len(gone), "num_passages": total,
            "seconds": round(time.perf_counter() - t0, 3)}


def passages_path(index_dir: str | Path, shard: str | Path) -> Path:
    """Where the passages of a curated shard go: RUN/index/passages/<shard stem>.parquet."""
    return Path(index_dir) / PASSAGES_DIR / f"{Path(shard).stem}.parquet"


# ------------------------------------------------------------------ Prefect wrappers
# Config travels as a dict (hashable task input); the stage's own state.json, not
# Prefect's cache, decides what is new, so the wrappers cache nothing.
def passages_task(shard: str, out_path: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Prefect task: `passages_for_shard`."""
    from conf.index import IndexConfig
    from tasks.prefect_task import prefect_task

    return prefect_task(passages_for_shard, name="index-passages", retries=1, no_cache=True)(
        shard, out_path, IndexConfig(**cfg))


def update_index_task(index_dir: str, added: list[dict[str, Any]], gone: list[str], cfg: dict[str, Any],
                      key: str) -> dict:
    """Prefect task: `update_index` (one writer, one commit)."""
    from conf.index import IndexConfig
    from tasks.prefect_task import prefect_task

    return prefect_task(update_index, name="index-update", no_cache=True)(index_dir, added, gone,
                                                                          IndexConfig(**cfg), key)
