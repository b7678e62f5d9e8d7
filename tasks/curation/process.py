"""`process_warc`: one WARC file → one filtered Parquet shard + its funnel + dropped samples.

The per-file half of the curation stage (FineWeb's recipe; quality filters equal to datatrove's blocks):
read → URL filter → [language gate] → extract → language ID → Gopher repetition
→ Gopher quality → C4 (no terminal-punctuation rule) → FineWeb quality. Each
stage after `read` is a step (`step(page) -> page | Drop(reason)`) run by
`tasks.curation.steps.StepRunner`, which counts, times and samples the drops. Cross-file
work (MinHash dedup, PII) happens later, on these shards.

Runs unchanged in a plain process or a Ray worker: the heavy resources (UT1
list, fastText model, filter objects) come from per-process caches, so a worker
pays their load time once, not per task.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from conf.curate import CurateConfig
from core.atomic import atomic_path
from tasks.curation.extract import extract_text, extract_with_retry
from tasks.curation.funnel import STAGE_ORDER, StageCounter
from tasks.curation.langid import gate_verdict, identify
from tasks.curation.quality import QUALITY_STAGES, QualityDoc, load_quality_filters, verdict
from tasks.curation.remote import RetryPolicy
from tasks.curation.shard_checkpoint import (ShardCheckpoint, counter_state, restore_counter, restore_runner,
                                    runner_state)
from tasks.curation.steps import Drop, FnStep, StepRunner
from tasks.curation.urlfilter import load_url_blocker, resolve_list_path
from tasks.curation.warc import CheckpointMismatch, WarcDoc, fault_of, iter_records

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


def domain_of(url: str) -> str:
    """Host part of a URL, lower-case, without port or credentials ('' if none)."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


@dataclass(slots=True)
class Page:
    """One record on its way through the steps: HTML (then main text) and what the steps found."""

    rec: WarcDoc
    text: str              # the page's HTML until `extract`, its main text after
    language: str = ""
    language_score: float = 0.0
    doc: Any = None        # tasks.curation.quality.QualityDoc for the quality filters (C4 edits its text)


class ExtractStep:
    """Main text (WET records pass through); a page over time budget gets one longer try first."""

    name = "extract"

    def __init__(self, cfg: CurateConfig):
        self.cfg = cfg
        self.retried = 0  # first-attempt timeouts (load-dependent: reported outside the funnel)

    def __call__(self, page: Page) -> Page | Drop:
        if page.rec.kind == "text":  # WET conversion record: already plain text
            text, reason = (page.text.strip() or None), (None if page.text.strip() else "no_text")
        else:
            text, reason, retried = extract_with_retry(page.text, self.cfg.extractor, self.cfg.extract_timeout_s,
                                                       self.cfg.extract_retry_timeout_s,
                                                       self.cfg.favour_precision)
            self.retried += retried
        if reason:
            return Drop(reason)
        page.text = text
        return page


_WARM_PAGE = ("<html><head><title>Warm-up</title></head><body><article><p>A warm-up page for the "
              "extractor, long enough to be kept as its main text by the extractor.</p></article></body></html>")


@functools.lru_cache(maxsize=4)
def _warm_up(extractor: str) -> None:
    """Once per process and extractor: the extractor's imports and first-call set-up (trafilatura:
    ~0.4 s), the language model, and pyarrow's lazy import of pandas on the first
    `Table.from_pylist` (0.8 s), paid with the other resources instead of on the first pages."""
    extract_text(_WARM_PAGE, extractor, timeout_s=30.0)
    identify("A warm-up text for the language model.", ["en"], 0.5)
    pa.Table.from_pylist([], schema=SCHEMA)


def _settle(extractor: str) -> None:
    """After the resources are loaded: warm up, then take everything alive out of the cyclic garbage
    collector's reach (`gc.freeze()`).

    The URL filter's 4.5 M-domain set made every full collection traverse 4.5 M entries
    (0.6 s of CPU each), and the documents' garbage triggers a few per 1,000 pages: 0.9 of
    7.6 CPU s on the benchmark's mix. (That set is now a mapped index, invisible to the
    collector — tasks/curation/urlfilter.py — but spaCy's, trafilatura's and tldextract's
    tables are not.) Frozen objects are still freed when their last reference
    goes (reference counting); only a cycle alive at this point would outlive its use.
    """
    _warm_up(extractor)
    gc.freeze()


def build_steps(cfg: CurateConfig) -> list:
    """The steps of the per-file recipe for `cfg`, in STAGE_ORDER (read is the reader, not a step).

    A switched-off stage stays in the list as a pass-through, so every funnel
    has the same rows.
    """
    blocker = load_url_blocker(cfg.use_ut1_adult, cfg.soft_banned_threshold,
                               tuple(resolve_list_path(p) for p in cfg.url_blocklist_files))
    quality = dict(load_quality_filters(cfg.gopher_repetition, cfg.gopher_quality, cfg.c4, cfg.fineweb))
    _settle(cfg.extractor)

    def url_filter(page: Page) -> Page | Drop:
        reason = blocker.check(page.rec.url)
        return Drop(reason) if reason else page

    def language_gate(page: Page) -> Page | Drop:
        if not cfg.language_gate or page.rec.kind != "html":  # WET text has no extraction to skip
            return page
        _, _, reason = gate_verdict(page.text, cfg.languages, cfg.language_gate_threshold)
        return Drop(reason) if reason else page

    def language(page: Page) -> Page | Drop:
        page.language, page.language_score, reason = identify(page.text, cfg.languages, cfg.language_threshold)
        if reason:
            return Drop(reason)
        page.doc = QualityDoc(page.text)  # one tokenization shared by the four quality filters
        return page

    def quality_step(name: str) -> FnStep:
        flt = quality.get(name)

        def run(page: Page) -> Page | Drop:
            reason = verdict(flt, page.doc) if flt is not None else None
            if reason:
                return Drop(reason)
            page.text = page.doc.text
            return page
        return FnStep(name, run)

    steps = [FnStep("url_filter", url_filter), FnStep("language_gate", language_gate), ExtractStep(cfg),
             FnStep("language", language), *(quality_step(n) for n in QUALITY_STAGES)]
    assert [s.name for s in steps] == list(STAGE_ORDER[1:]), "steps and STAGE_ORDER disagree"
    return steps


def dropped_path(out_path: str) -> str:
    """Where the dropped samples of shard `out_path` go: `<shard>.dropped.parquet` beside it."""
    return f"{out_path.removesuffix('.parquet')}.dropped.parquet"


def _describe(page: Page) -> dict[str, Any]:
    return {"id": page.rec.id, "url": page.rec.url, "text": page.text}


def process_warc(src: str, out_path: str, cfg: CurateConfig, key: str | None = None) -> dict[str, Any]:
    """Filter one WARC into `out_path` (Parquet, written atomically, even if empty); return its funnel.

    With `cfg.dropped_samples_per_reason` > 0, the first N documents dropped
    for each (stage, reason) are written to `dropped_path(out_path)` first.
    Every `cfg.checkpoint_every_records` records the progress is saved
    (tasks/curation/shard_checkpoint.py): called again with the same `key` after a kill,
    it resumes there. A remote file that a fault ended early (stats `errors`
    has `remote_<reason>`) writes no shard and keeps its checkpoint.
    """
    ckpt = ShardCheckpoint(out_path, key or f"{src}|{cfg.hash()}", SCHEMA)
    try:
        return _process_warc(src, out_path, cfg, ckpt, ckpt.load())
    except CheckpointMismatch as e:
        log.warning("%s; reading the file from its start", e)
        ckpt.clear()
        return _process_warc(src, out_path, cfg, ckpt, None)


def _process_warc(src: str, out_path: str, cfg: CurateConfig, ckpt: ShardCheckpoint,
                  saved: dict[str, Any] | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    read = StageCounter("read")
    errors: dict[str, int] = {}
    net: dict[str, int] = {}  # network faults overcome (tasks/curation/remote.py)
    steps = build_steps(cfg)
    extract_step = next(s for s in steps if s.name == "extract")
    runner = StepRunner(steps, cfg.dropped_samples_per_reason, _describe, source=src)
    rows: list[dict[str, Any]] = []
    n_out = 0
    if saved:  # resume: every counter as it was at the checkpoint
        st = saved["state"]
        restore_counter(read, st["read"])
        restore_runner(runner, st["runner"])
        errors.update(st["errors"])
        net.update(st["net"])
        n_out, extract_step.retried = int(st["n_out"]), int(st["extract_retried"])

    def checkpoint(offset: int, record_id: str, records: int) -> None:
        # Called by the reader between records: everything before `offset` is in `rows`/counters.
        ckpt.save(rows, {"offset": offset, "record_id": record_id, "records": records},
                  {"read": counter_state(read), "runner": runner_state(runner), "errors": errors,
                   "net": net, "n_out": n_out, "extract_retried": extract_step.retried})
        log.info("%s: checkpoint at record %d: %d documents kept so far (%d read)", src, records, n_out,
                 read.n_in)

    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    records = iter_records(src, read, errors, cfg.max_body_bytes, policy=RetryPolicy.from_config(cfg),
                           net=net, start=saved["position"] if saved else None,
                           on_boundary=checkpoint if cfg.checkpoint_every_records else None,
                           every=cfg.checkpoint_every_records)
    while True:
        t_read = runner.clock()
        rec = next(records, None)
        runner.add_time("read", runner.clock() - t_read)
        if rec is None:
            break
        page = runner.run(Page(rec, rec.text))
        if page is None:
            continue
        rows.append({"id": rec.id, "url": rec.url, "domain": domain_of(rec.url), "date": rec.date,
                     "warc_file": src, "text": page.text, "language": page.language,
                     "language_score": round(page.language_score, 4)})
        n_out += 1
    incomplete = fault_of(errors)
    if not incomplete:
        if cfg.dropped_samples_per_reason:
            with atomic_path(dropped_path(out_path)) as dtmp:
                pq.write_table(runner.samples_table(), dtmp, compression="zstd")
        ckpt.finish(rows)  # the shard under its final name, then the checkpoint goes
    stats = runner.stats(before=[read])
    for kind, n in errors.items():
        stats["errors"][kind] = stats["errors"].get(kind, 0) + n
    stats["errors"] = dict(sorted(stats["errors"].items()))
    if extract_step.retried:
        stats["retried"] = {"extract_timeout": extract_step.retried}
    if net:
        stats["network"] = dict(sorted(net.items()))
    if incomplete:
        log.warning("%s: ended early (%s) after %d records; no shard written, the checkpoint is kept "
                    "for the next run", src, incomplete, read.n_in)
    log.info("%s: %d → %d documents in %.1fs", src, read.n_in, n_out, time.perf_counter() - t0)
    return stats
