"""Our per-WARC curation (tasks/curation/process.py) against datatrove's FineWeb base recipe, in one run,
on a Common-Crawl-like language mix and on the real sample WARCs.

Inputs:

- ``mix``: a GENERATED WARC (data/build_warc.py with CC_LANGUAGE_MIX and
  CC_LANGUAGE_WEIGHTS): real English text (C4, Wikipedia, ...) in built HTML
  pages for 44 % of the records (with planted near-duplicates, PII, blocked URLs,
  repetitive pages), real Tatoeba text in 83 other languages for 52 %, weighted
  like Common Crawl's language shares (ru 6.2 %, de 5.6 %, ja 5 %, zh 4.8 %,
  es 4.6 %, fr 4.4 %, ...), and 4 % junk records — Common Crawl is under half English;
- ``real``: the real WARCs in data/samples (CC-MAIN-2020-34 excerpt: 16 pages,
  10 of them not English; the wget crawl: 22 English pages; CC-MAIN-2024-22:
  one Aragonese page).

Sides, each in a fresh process (so its wall time includes loading the 4.5 M-domain
UT1 list, spaCy and fastText, as a real worker pays once):

- ``datatrove``: LocalPipelineExecutor, 1 task, 1 worker: WarcReader → URLFilter →
  Trafilatura(favour_precision) → LanguageFilter(en, 0.65; the local lid.176.ftz
  is put into the block because it would download lid.176.bin) →
  GopherRepetition → GopherQuality → C4Quality(no terminal-punct rule) →
  FineWebQuality → JsonlWriter;
- ``datatrove_inproc``: the same blocks in one process, first run on the 10-record
  start-up input (their lazy loading: UT1 lists, fastText, spaCy, imports), then on
  the input under CPU time (the process's and its extraction sandbox child's) — the
  loop of the executor's `_run_for_rank` without its log and stats files; the
  start-up-free figure, timed as ours is (`proc_cpu_vs_datatrove_inproc`);
- ``ours``: `process_warc`, 1 core, the plain recipe (no language gate);
- ``ours_gate``: the same with `language_gate: true` (pages that fastText, on the
  tag-stripped HTML, is confident are not English skip trafilatura);
- ``ours_2core``: the default config on two processes at once (the mix WARC split
  into halves at record boundaries; the real files shared out) — the shape of
  the curate flow, which runs one task per WARC file on Ray;
- the profile: the default config once more, its per-stage times taken in thread
  CPU seconds (`profile_cpu_s`).

Both recipes use trafilatura with `deduplicate=False` (its process-global cache
would otherwise drop repeated paragraphs depending on document order, see
PITFALLS) and a 1 s per-page budget (datatrove's; ours counts CPU time and
retries an over-budget page with a longer budget), and both get tldextract's
offline public-suffix snapshot. Printed per side: wall seconds, docs/s, CPU
seconds, the processing time without start-up (sum of per-stage times: our
funnel's `seconds`, datatrove's per-block time stats), the processing CPU per core
(`proc_cpu_s`: datatrove's is its processes' CPU less its start-up, measured as its CPU on
a 10-record input; ours is timed inside the worker after its warm-up, the start-up-less
figure `proc_cpu_net_s` kept as a cross-check; `proc_cpu_vs_datatrove` the ratio), kept
documents, and the
kept-set agreement (Jaccard of WARC-Record-IDs) with datatrove and with our
plain recipe. Then the WARC reader: warcio (ours today) against fastwarc on
the same files — same records? how much faster?

Ours then runs the corpus-level stages of the default curate that datatrove's recipe
lacks (quality classifier, exact line dedup, PII) on its kept documents, timed apart
(`post_cpu_s`). Then the four quality filters alone, ours against datatrove's blocks on
the same real English documents (`filters`). `mix.default_gate` names the run with the
default config.

If benchmarks/minhash_vs_datatrove.py exists, its `run(docs)` is then called
on the documents we kept from the mix (MinHash stages vs datatrove's MinhashDedup*).

    .venv/bin/python benchmarks/curate_vs_datatrove.py --docs 2000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
SAMPLES = REPO / "data" / "samples"
REAL_WARCS = ("cc-main-2020-34_resiliparse_warcfile.warc.gz", "noncc_wget-2024_dolma_sample-0000.warc.gz",
              "cc-main-2024-22_whirlwind.warc.gz")
TIMEOUT_S = 1.0  # datatrove's Trafilatura default


# --------------------------------------------------------------------------- workers (subprocesses)
def _worker_datatrove(warc_dir: Path, glob: str, out: Path, warm: Path | None = None) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LanguageFilter, URLFilter)
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from fasttext.FastText import _FastText
    from tldextract import TLDExtract

    from tasks.curation.langid import model_path

    url_filter = URLFilter()
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())

    class LocalModelLanguageFilter(LanguageFilter):
        """datatrove's LanguageFilter, given the local lid.176.ftz instead of downloading lid.176.bin.

        Set lazily: the executor deep-copies the pipeline and fastText models cannot be copied.
        """

        def filter(self, doc):
            if self.model._model is None:
                self.model._model = _FastText(model_path())
            return super().filter(doc)

    blocks = [
        url_filter,
        Trafilatura(favour_precision=True, timeout=TIMEOUT_S, deduplicate=False),
        LocalModelLanguageFilter(languages=["en"], language_threshold=0.65),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]
    import gzip
    if warm is not None:
        # In-process timing, as ours: the same blocks first run on the 10-record input (their lazy
        # start-up: UT1 lists, fastText, spaCy, imports), then on the input under CPU time — the
        # loop of datatrove's executor (_run_for_rank) without its logging and stats files. The
        # CPU counted is this process's and its extraction child's.
        from collections import deque

        def run_blocks(reader, writer) -> None:
            data = None
            for step in [reader, *blocks, writer]:
                data = step(data, 0, 1)
            deque(data or (), maxlen=0)

        def cpu() -> float:  # this process and its reaped children: datatrove extracts in a child
            # process (ExtractorSandbox, one per run, joined at its end)
            own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

        import trafilatura  # noqa: F401 — imported here, the sandbox's forked child inherits it (as ours)

        run_blocks(WarcReader(str(warm.parent), glob_pattern=warm.name),
                   JsonlWriter(str(out / "warm"), output_filename="kept.jsonl.gz"))
        cpu0 = cpu()
        run_blocks(WarcReader(str(warc_dir), glob_pattern=glob), JsonlWriter(str(out), output_filename="kept.jsonl.gz"))
        proc_cpu = cpu() - cpu0
        with gzip.open(out / "kept.jsonl.gz", "rt") as f:
            docs = [json.loads(line) for line in f]
        return {"kept_ids": [d["id"] for d in docs], "kept_urls": [d["metadata"]["url"] for d in docs],
                "proc_s": 0.0, "proc_cpu_s": proc_cpu}
    pipeline = [WarcReader(str(warc_dir), glob_pattern=glob), *blocks,
                JsonlWriter(str(out), output_filename="kept.jsonl.gz")]
    stats = LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=str(out / "logs")).run()
    with gzip.open(out / "kept.jsonl.gz", "rt") as f:
        docs = [json.loads(line) for line in f]
    # per-block time (the writer excluded: ours does not time its Parquet writes per stage either)
    proc = sum(s.time_stats.total for s in stats.stats if "Writer" not in s.name)
    return {"kept_ids": [d["id"] for d in docs], "kept_urls": [d["metadata"]["url"] for d in docs],
            "proc_s": proc}


def _worker_ours(warcs: list[Path], out: Path, extractor: str, gate: bool, stage_cpu: bool = False) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from conf.curate import CurateConfig
    from tasks.curation.process import process_warc
    from tasks.curation.steps import StepRunner

    if stage_cpu:  # the profile run: per-stage thread CPU seconds instead of wall seconds
        StepRunner.clock = staticmethod(time.thread_time)

    cfg = CurateConfig(extractor=extractor, extract_timeout_s=TIMEOUT_S, language_gate=gate)
    urls, ids, texts, stats = [], [], [], []
    # CPU seconds of the processing alone: load the resources (UT1 list, fastText,
    # spaCy) first, as a long-running worker has; CPU time is robust to machine load.
    from tasks.curation.langid import identify
    from tasks.curation.process import build_steps
    from tasks.curation.quality import check_text
    build_steps(cfg)
    identify("Warm-up text for the language model.", ["en"], 0.65)
    check_text("Warm-up text for the quality filters. " * 20)
    cpu0 = time.process_time()
    for i, w in enumerate(warcs):
        path = out / f"shard-{i}.parquet"
        stats.append(process_warc(str(w), str(path), cfg))
        t = pq.read_table(path, columns=["id", "url", "text"])
        urls += t.column("url").to_pylist()
        ids += t.column("id").to_pylist()
        texts += t.column("text").to_pylist()
    proc_cpu = time.process_time() - cpu0
    proc = sum(sum(s.get("seconds", {}).values()) for s in stats)
    # The corpus-level stages of the default curate after the per-WARC recipe (datatrove's
    # FineWeb recipe has none of them): quality classifier, exact line dedup, PII. MinHash is
    # benchmarked on its own (minhash_vs_datatrove.py). CPU timed apart: `post_cpu_s`.
    from tasks.curation.finalize import finalize_shard
    from tasks.curation.line_dedup import count_duplicates, shard_pass
    cpu1 = time.process_time()
    post_stats = []
    shards = [str(out / f"shard-{i}.parquet") for i in range(len(warcs))]
    passes = [shard_pass(sh, i, None, f"{sh}.h.npy", f"{sh}.s.npy", cfg) for i, sh in enumerate(shards)]
    count_duplicates([f"{sh}.h.npy" for sh in shards], out / "dups", 1, map_fn=lambda f, c: [f(*a) for a in c])
    for i, sh in enumerate(shards):
        post_stats.append(finalize_shard(sh, i, None, str(out / f"final-{i}.parquet"), cfg, str(out / "dups"), 1,
                                         f"{sh}.s.npy", cfg.quality_threshold))
    post_cpu = time.process_time() - cpu1
    return {"kept_urls": urls, "kept_ids": ids, "kept_texts": texts, "stats": stats, "proc_s": proc,
            "proc_cpu_s": proc_cpu, "post_cpu_s": post_cpu, "post_stats": post_stats,
            "post_docs": sum(p["documents"] for p in passes)}


def _spawn(args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, __file__, "--_worker", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _timed(jobs: list[list[str]]) -> tuple[float, float, list[dict[str, Any]]]:
    """Run worker subprocesses concurrently; (wall s, CPU s of the children, their JSON results)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [_spawn(j) for j in jobs]
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p, j in zip(procs, jobs):
        if p.returncode:
            raise RuntimeError(f"benchmark worker {j} failed with exit code {p.returncode}")
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return wall, cpu, [json.loads(o.strip().splitlines()[-1]) for o in outs]


# --------------------------------------------------------------------------- helpers
def split_warc(src: Path, parts: int, out_dir: Path) -> list[Path]:
    """Split a per-record-gzip WARC into `parts` files at record boundaries (raw bytes copied)."""
    from warcio.archiveiterator import ArchiveIterator

    spans = []
    with open(src, "rb") as f:
        it = ArchiveIterator(f)
        for _ in it:
            spans.append((it.get_record_offset(), it.get_record_length()))
    raw = src.read_bytes()
    paths = []
    per = (len(spans) + parts - 1) // parts
    for k in range(parts):
        chunk = spans[k * per:(k + 1) * per]
        p = out_dir / f"{src.name.removesuffix('.warc.gz')}.part{k}.warc.gz"
        p.write_bytes(b"".join(raw[o:o + n] for o, n in chunk))
        paths.append(p)
    return paths


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def count_pages(warcs: list[Path]) -> int:
    """HTML/text documents the reader yields (the denominator of docs/s)."""
    from tasks.curation.funnel import StageCounter
    from tasks.curation.warc import iter_records

    read = StageCounter("read")
    for w in warcs:
        for _ in iter_records(str(w), read, {}):
            pass
    return read.n_in


# --------------------------------------------------------------------------- the WARC reader
def _read_warcio(path: Path) -> list[tuple[str, str, str]]:
    from warcio.archiveiterator import ArchiveIterator

    out = []
    with open(path, "rb") as f:
        for r in ArchiveIterator(f, check_digests=False):
            if r.rec_type in ("response", "conversion"):
                body = r.content_stream().read()
                h = r.rec_headers
                out.append((h.get_header("WARC-Record-ID"), h.get_header("WARC-Target-URI"),
                            hashlib.sha1(body).hexdigest()))
    return out


def _read_fastwarc(path: Path) -> list[tuple[str, str, str]]:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    out = []
    with open(path, "rb") as f:
        # auto_decode="all": undo chunked transfer and gzip/br content encoding, as warcio's content_stream
        for r in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.conversion,
                                 parse_http=True, auto_decode="all"):
            body = r.reader.read()
            # WARC/1.0 writers may put the URI in <>; warcio strips them
            out.append((r.record_id, (r.headers.get("WARC-Target-URI") or "").strip("<>"),
                        hashlib.sha1(body).hexdigest()))
    return out


def compare_readers(warcs: list[Path], repeats: int = 3) -> dict[str, Any]:
    """warcio vs fastwarc on the same files: same (id, URI, payload sha1) records? best-of-N seconds.

    fastwarc is not a dependency (the reader stays warcio, see the README's figures):
    `pip install fastwarc` to include it.
    """
    try:
        import fastwarc  # noqa: F401
    except ImportError:
        return {"records": None, "same_records": None, "warcio_s": None, "fastwarc_s": None,
                "fastwarc_speedup": "fastwarc not installed"}
    best: dict[str, float] = {}
    recs: dict[str, list] = {}
    for name, fn in (("warcio", _read_warcio), ("fastwarc", _read_fastwarc)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            recs[name] = [r for w in warcs for r in fn(w)]
            times.append(time.perf_counter() - t0)
        best[name] = min(times)
    return {"records": len(recs["warcio"]), "same_records": recs["warcio"] == recs["fastwarc"],
            "warcio_s": round(best["warcio"], 4), "fastwarc_s": round(best["fastwarc"], 4),
            "fastwarc_speedup": round(best["warcio"] / best["fastwarc"], 2) if best["fastwarc"] else None}


# --------------------------------------------------------------------------- gate stress
def gate_stress(warcs: list[Path], kept_ids: set[str], levels: tuple[int, ...] = (1, 2, 4),
                seed: int = 0) -> dict[str, Any]:
    """The gate's risk: English pages (ones the plain recipe keeps) on a foreign-language site.

    Each kept page gets `k` snippets of real Tatoeba text in one other language
    (~1 KB each) as site boilerplate (menu, sidebar, footer) around its article;
    returns, per k, the share of those pages the gate would skip (= lost).
    """
    import random

    from conf.curate import CurateConfig
    from data.build_warc import load_non_english
    from tasks.curation.funnel import StageCounter
    from tasks.curation.langid import gate_verdict
    from tasks.curation.warc import iter_records

    cfg = CurateConfig()
    pages = [d.text for w in warcs for d in iter_records(str(w), StageCounter("read"), {})
             if d.id in kept_ids and d.kind == "html"]
    foreign = load_non_english()
    top = ["rus", "deu", "jpn", "cmn", "spa", "fra", "ita", "por", "nld", "pol"]
    out: dict[str, Any] = {"pages": len(pages)}
    for k in levels:
        rng = random.Random(seed)
        lost = 0
        for html in pages:
            lang = rng.choice(top)
            boiler = "".join(f"<li>{rng.choice(foreign[lang])}</li>" for _ in range(k))
            page = html.replace("<body>", f"<body><nav><ul>{boiler}</ul></nav>", 1)
            lost += gate_verdict(page, cfg.languages, cfg.language_gate_threshold)[2] is not None
        out[f"{k}_snippets_lost"] = lost
    return out


# --------------------------------------------------------------------------- one input set
def head_warc(src: Path, n_records: int, out: Path) -> Path:
    """The first `n_records` records of a per-record-gzip WARC (raw bytes copied): the start-up input."""
    from warcio.archiveiterator import ArchiveIterator

    spans = []
    with open(src, "rb") as f:
        it = ArchiveIterator(f)
        for _ in it:
            spans.append((it.get_record_offset(), it.get_record_length()))
            if len(spans) >= n_records:
                break
    raw = src.read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(raw[o:o + n] for o, n in spans))
    return out


def startup_cpu(tiny: Path, work: Path) -> dict[str, float]:
    """Whole-process CPU seconds of each side on a tiny input (a few records): its start-up
    (imports, UT1 list, fastText, spaCy), subtracted from every run to get processing CPU."""
    out: dict[str, float] = {}
    for side, job in (("datatrove", ["datatrove", str(work / "tiny_dt"), str(tiny.parent), tiny.name]),
                      ("ours", ["ours", str(work / "tiny_ours"), "trafilatura", "plain", str(tiny)])):
        Path(job[1]).mkdir(parents=True, exist_ok=True)
        _, cpu, outs = _timed([job])
        out[side] = round(cpu - outs[0].get("post_cpu_s", 0.0), 2)
    return out


def run_set(label: str, warcs: list[Path], halves: list[list[Path]], dt_dir: Path, dt_glob: str,
            work: Path, resiliparse: bool, startup: dict[str, float], tiny: Path) -> dict[str, Any]:
    """All sides on one input set; the figures, with the kept sets under '_kept'."""
    from conf.curate import CurateConfig

    default_gate = "gate" if CurateConfig().language_gate else "plain"
    pages = count_pages(warcs)
    runs = {
        "datatrove": [["datatrove", str(work / f"{label}_dt"), str(dt_dir), dt_glob]],
        "datatrove_inproc": [["datatrove", str(work / f"{label}_dt_inproc"), str(dt_dir), dt_glob, str(tiny)]],
        "ours": [["ours", str(work / f"{label}_ours"), "trafilatura", "plain", *map(str, warcs)]],
        "ours_gate": [["ours", str(work / f"{label}_gate"), "trafilatura", "gate", *map(str, warcs)]],
    }
    if halves:
        runs["ours_2core"] = [["ours", str(work / f"{label}_2core_{k}"), "trafilatura", default_gate,
                               *map(str, h)] for k, h in enumerate(halves)]
    # the default config again, its per-stage times in thread CPU seconds: the profile
    runs["ours_profile"] = [["ours", str(work / f"{label}_profile"), "trafilatura", f"{default_gate}+cpu",
                             *map(str, warcs)]]
    if resiliparse:
        runs["ours_resiliparse"] = [["ours", str(work / f"{label}_res"), "resiliparse", "plain",
                                     *map(str, warcs)]]
    results: dict[str, Any] = {}
    for name, jobs in runs.items():
        for j in jobs:
            Path(j[1]).mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()[0]
        print(f"  [{label}] running {name} (load average {load:.1f}) ...", flush=True)
        wall, cpu, outs = _timed(jobs)
        kept = {i for o in outs for i in o["kept_ids"]}
        proc = sum(o["proc_s"] for o in outs)
        proc_cpu = sum(o.get("proc_cpu_s", 0.0) for o in outs)
        side = "datatrove" if name == "datatrove" else "ours"
        # processing CPU per core: the whole processes' CPU less each process's start-up (its
        # CPU on a tiny input) and, for ours, less the corpus-level stages timed apart
        post = sum(o.get("post_cpu_s", 0.0) for o in outs)
        proc_cpu_net = cpu - len(jobs) * startup[side] - post
        # Ours is also timed inside the worker, after its warm-up (`inproc`): that figure does not
        # carry the start-up measurement's noise (±1.5 s between runs), so it is ours' processing
        # CPU; datatrove cannot be timed so, and keeps whole-process CPU less its start-up.
        proc_cpu_used = proc_cpu if proc_cpu else proc_cpu_net
        results[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "docs_per_s": round(pages / wall, 1),
                         "proc_s": round(proc, 2), "proc_docs_per_s": round(pages / proc, 1) if proc else None,
                         "proc_cpu_s": round(proc_cpu_used, 2), "proc_cpu_net_s": round(proc_cpu_net, 2),
                         "startup_cpu_s": round(len(jobs) * startup[side], 2),
                         "inproc_cpu_s": round(proc_cpu, 2) if proc_cpu else None,
                         "post_cpu_s": round(post, 2) if side == "ours" else None,
                         "post_docs": sum(o.get("post_docs", 0) for o in outs) if side == "ours" else None,
                         "kept": len(kept), "load_avg": round(load, 1), "_kept": kept, "_outs": outs}
    ref, plain, ref_in = results["datatrove"], results["ours"], results["datatrove_inproc"]
    for r in results.values():
        r["proc_cpu_vs_datatrove"] = round(ref["proc_cpu_s"] / r["proc_cpu_s"], 2) if r["proc_cpu_s"] > 0 else None
        # the same against datatrove's blocks timed in-process after their warm-up, as ours are
        r["proc_cpu_vs_datatrove_inproc"] = (round(ref_in["proc_cpu_s"] / r["proc_cpu_s"], 2)
                                             if r["proc_cpu_s"] > 0 else None)
        r["speed_vs_datatrove"] = round(ref["wall_s"] / r["wall_s"], 2)
        r["cpu_vs_datatrove"] = round(ref["cpu_s"] / r["cpu_s"], 2)
        r["proc_vs_datatrove"] = round(ref["proc_s"] / r["proc_s"], 2) if r["proc_s"] else None
        r["jaccard_vs_datatrove"] = round(_jaccard(ref["_kept"], r["_kept"]), 4)
        r["agreement_vs_plain"] = round(_jaccard(plain["_kept"], r["_kept"]), 4)
    gate_stats = results["ours_gate"]["_outs"][0]["stats"]
    gated = sum(sum(st["dropped"].values()) for s in gate_stats for st in s["stages"]
                if st["stage"] == "language_gate")
    from tasks.curation.funnel import merge_stats
    one_core = results["ours_gate" if default_gate == "gate" else "ours"]
    two = results.get("ours_2core")
    default_run = "ours_gate" if default_gate == "gate" else "ours"
    prof = results.pop("ours_profile")
    profile = merge_stats(s for o in prof["_outs"] for s in o["stats"]).get("seconds", {})
    return {"label": label, "pages": pages, "gated": gated, "runs": results, "default_gate": default_run,
            "profile_cpu_s": {"stages": profile, "proc_cpu_s": prof["proc_cpu_s"],
                              "load_avg": prof["load_avg"]},
            "startup_cpu_s": startup,
            "post_funnel": merge_stats(s for o in results[default_run]["_outs"] for s in o.get("post_stats", [])),
            "one_vs_two_cores": round(_jaccard(one_core["_kept"], two["_kept"]), 4) if two else None,
            "only_plain": sorted(plain["_kept"] - results["ours_gate"]["_kept"])[:5],
            "ours_funnel": merge_stats(plain["_outs"][0]["stats"]),
            "gate_funnel": merge_stats(gate_stats), "readers": compare_readers(warcs),
            "gate_stress": gate_stress(warcs, plain["_kept"])}


def filters_alone(n_docs: int = 400) -> dict[str, Any]:
    """The four quality filters alone, ours (tasks/curation/quality.py) vs datatrove's blocks, on the same
    real English documents (data/ C4 + Wikipedia windows, as the demo curates): CPU seconds
    after a warm-up (both sides' spaCy loaded, our chunk cache empty), equal decisions count."""
    from data.build_warc import load_english
    from tasks.curation.quality import _CACHE, check_text, datatrove_check_text

    docs = ["\n\n".join(d) for d in load_english()][:n_docs]
    check_text("Warm-up text for the quality filters. " * 20)
    datatrove_check_text("Warm-up text for the quality filters. " * 20)
    _CACHE.clear()  # cold chunk cache: the first documents pay spaCy for every new chunk, as a worker does
    out: dict[str, Any] = {"docs": len(docs), "chars_mean": round(sum(map(len, docs)) / len(docs))}
    c0 = time.process_time()
    ours = [check_text(t) for t in docs]
    c1 = time.process_time()
    ref = [datatrove_check_text(t) for t in docs]
    c2 = time.process_time()
    ours_warm = [check_text(t) for t in docs]  # the same documents again: a worker's steady state
    c3 = time.process_time()
    out.update({"ours_warm_cpu_s": round(c3 - c2, 3), "ours_warm_docs_per_s": round(len(docs) / (c3 - c2), 1),
                "cpu_ratio_warm": round((c2 - c1) / (c3 - c2), 2), "same_warm": ours_warm == ours})
    out.update({"ours_cpu_s": round(c1 - c0, 3), "datatrove_cpu_s": round(c2 - c1, 3),
                "ours_docs_per_s": round(len(docs) / (c1 - c0), 1), "datatrove_docs_per_s": round(len(docs) / (c2 - c1), 1),
                "cpu_ratio": round((c2 - c1) / (c1 - c0), 2), "same_decisions": sum(a == b for a, b in zip(ours, ref)),
                "load_avg": round(os.getloadavg()[0], 1)})
    return out


def run_benchmark(n_docs: int, seed: int, work: Path, minhash: bool = True,
                  resiliparse: bool = False) -> dict[str, Any]:
    """Build the mix WARC, time every side on it and on the real samples, return the figures."""
    from data.build_warc import CC_LANGUAGE_MIX, CC_LANGUAGE_WEIGHTS, build_warc, generated_name

    mix_dir, real_dir = work / "mix_in", work / "real_in"
    mix_dir.mkdir(parents=True, exist_ok=True)
    real_dir.mkdir(parents=True, exist_ok=True)
    warc = mix_dir / generated_name(n_docs, seed).replace("generated_", "generated_ccmix_")
    manifest = build_warc(warc, n_docs, seed, mix=CC_LANGUAGE_MIX, language_weights=CC_LANGUAGE_WEIGHTS)
    halves = split_warc(warc, 2, work)
    real = [Path(shutil.copy(SAMPLES / n, real_dir / n)) for n in REAL_WARCS]
    res: dict[str, Any] = {"docs": n_docs, "warc": str(warc), "cpus": os.cpu_count(),
                           "load_avg_before": round(os.getloadavg()[0], 1)}
    print("  measuring start-up (each side on the first 10 records) ...", flush=True)
    startup = startup_cpu(head_warc(warc, 10, work / "tiny_in" / "tiny.warc.gz"), work)
    res["startup_cpu_s"] = startup
    tiny = work / "tiny_in" / "tiny.warc.gz"
    res["mix"] = run_set("mix", [warc], [[h] for h in halves], mix_dir, warc.name, work, resiliparse, startup, tiny)
    # three small files: no 2-core split (start-up would be all it measures)
    res["real"] = run_set("real", real, [], real_dir, "*.warc.gz", work, resiliparse, startup, tiny)
    print("  quality filters alone, ours vs datatrove's blocks ...", flush=True)
    res["filters"] = filters_alone()
    res["load_avg_after"] = round(os.getloadavg()[0], 1)

    hook = REPO / "benchmarks" / "minhash_vs_datatrove.py"
    if minhash and hook.exists():
        import importlib.util
        spec = importlib.util.spec_from_file_location("minhash_vs_datatrove", hook)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out = res["mix"]["runs"]["ours"]["_outs"][0]
        url_to_id = dict(zip(out["kept_urls"], out["kept_ids"]))
        dup_of = {info["url"]: info.get("dup_of") for info in manifest.values()}
        docs = [{"id": i, "text": t, "planted_from": url_to_id.get(dup_of.get(u) or "")}
                for u, i, t in zip(out["kept_urls"], out["kept_ids"], out["kept_texts"])]
        print(f"  running MinHash comparison on the {len(docs)} kept documents ...", flush=True)
        try:
            from loguru import logger
            logger.remove()
        except ImportError:
            pass
        res["minhash"] = mod.run(docs)
    return res


def _public(res: dict[str, Any]) -> dict[str, Any]:
    """The figures without the private (set-valued) fields."""
    if isinstance(res, dict):
        return {k: _public(v) for k, v in res.items() if not str(k).startswith("_")}
    return res


def report(res: dict[str, Any]) -> str:
    from tasks.curation.funnel import funnel_table

    lines = [f"{res['cpus']} CPUs; load average before {res['load_avg_before']}, after {res['load_avg_after']}"]
    for label in ("mix", "real"):
        s = res[label]
        what = (f"GENERATED Common-Crawl-like language mix, {res['docs']} records" if label == "mix"
                else "real sample WARCs in data/samples")
        lines += ["", f"== {label}: {what}; {s['pages']} records read, {s['gated']} pages skipped by the gate",
                  f"{'run':<17}{'wall s':>8}{'docs/s':>8}{'× dt':>6}{'CPU s':>8}{'× dt':>6}{'proc s':>8}"
                  f"{'docs/s':>8}{'× dt':>6}{'pCPU s':>8}{'× dt':>6}{'kept':>6}{'J dt':>8}{'agree':>8}{'load':>6}"]
        for name, r in s["runs"].items():
            lines.append(f"{name:<17}{r['wall_s']:>8.1f}{r['docs_per_s']:>8.1f}{r['speed_vs_datatrove']:>6.2f}"
                         f"{r['cpu_s']:>8.1f}{r['cpu_vs_datatrove']:>6.2f}{r['proc_s']:>8.1f}"
                         f"{r['proc_docs_per_s'] or 0:>8.1f}{r['proc_vs_datatrove'] or 0:>6.2f}"
                         f"{r.get('proc_cpu_s') or 0:>8.1f}{r.get('proc_cpu_vs_datatrove') or 0:>6.2f}{r['kept']:>6}"
                         f"{r['jaccard_vs_datatrove']:>8.4f}{r['agreement_vs_plain']:>8.4f}{r['load_avg']:>6.1f}")
        r = s["runs"]
        gate_cpu = (f"{round(r['ours']['proc_cpu_s'] / r['ours_gate']['proc_cpu_s'], 2)}×"
                    if r["ours"].get("proc_cpu_s") and r["ours_gate"].get("proc_cpu_s") else "-")
        lines.append(f"docs/s ours ÷ datatrove: plain {r['ours']['speed_vs_datatrove']}×, gate "
                     f"{r['ours_gate']['speed_vs_datatrove']}× (wall, start-up included); plain "
                     f"{r['ours']['proc_vs_datatrove']}×, gate {r['ours_gate']['proc_vs_datatrove']}× "
                     f"(processing only); gate ÷ plain {round(r['ours']['proc_s'] / r['ours_gate']['proc_s'], 2)}× "
                     f"(processing wall), {gate_cpu} (processing CPU); kept-document agreement gate vs plain {r['ours_gate']['agreement_vs_plain']}; "
                     f"1 vs 2 cores (default config, {s['default_gate']}): {s['one_vs_two_cores']}")
        if s["only_plain"]:
            lines.append(f"kept without the gate only (sample): {s['only_plain']}")
        rd = s["readers"]
        read_s = s["ours_funnel"].get("seconds", {}).get("read", 0.0)
        lines.append(f"WARC reader on these files ({rd['records']} records): warcio {rd['warcio_s']} s, fastwarc "
                     f"{rd['fastwarc_s']} s ({rd['fastwarc_speedup']}×), same records: {rd['same_records']}; "
                     f"reading is {100 * read_s / max(r['ours']['proc_s'], 1e-9):.1f} % of our processing time")
        gs = s["gate_stress"]
        lines.append(f"gate stress: the {gs['pages']} pages kept without the gate, with 1 / 2 / 4 KB-ish snippets "
                     f"of another language as site boilerplate: gate would lose "
                     + " / ".join(str(v) for k, v in gs.items() if k.endswith("_lost")))
        d = r[s["default_gate"]]
        lines.append(f"processing CPU per core (datatrove: whole-process CPU less start-up {s['startup_cpu_s']} s "
                     f"per process, measured on a 10-record input; ours: timed after warm-up): default run "
                     f"{s['default_gate']} "
                     f"{d['proc_cpu_vs_datatrove']}× datatrove's ({d['proc_cpu_vs_datatrove_inproc']}× datatrove's "
                     f"blocks timed in-process after a warm-up, as ours), kept-set Jaccard {d['jaccard_vs_datatrove']}; "
                     f"the corpus-level stages datatrove's recipe lacks (quality classifier, line dedup, "
                     f"PII) took {d['post_cpu_s']} CPU s more on {d['post_docs']} documents")
        pr = s["profile_cpu_s"]
        lines.append(f"profile of the default run (thread CPU s per stage, load {pr['load_avg']}; "
                     f"{pr['proc_cpu_s']} CPU s in all): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in sorted(pr["stages"].items(), key=lambda kv: -kv[1])))
        lines += ["", f"Corpus-level stages after the per-WARC recipe ({label}, default run):",
                  funnel_table(s["post_funnel"])]
        lines += ["", f"Our funnel ({label}, plain):", funnel_table(s["ours_funnel"]),
                  "", f"Our funnel ({label}, gate):", funnel_table(s["gate_funnel"])]
    if "filters" in res:
        f = res["filters"]
        lines += ["", f"Quality filters alone on {f['docs']} real English documents ({f['chars_mean']} characters "
                      f"on average; load {f['load_avg']}): ours {f['ours_cpu_s']} CPU s ({f['ours_docs_per_s']} "
                      f"docs/s per core), datatrove's blocks {f['datatrove_cpu_s']} CPU s "
                      f"({f['datatrove_docs_per_s']} docs/s): {f['cpu_ratio']}× less CPU with a cold chunk cache, "
                      f"{f['cpu_ratio_warm']}× warm ({f['ours_warm_docs_per_s']} docs/s); same decision and "
                      f"reason on {f['same_decisions']}/{f['docs']}"]
    if "minhash" in res:
        m = res["minhash"]
        lines += ["", f"MinHash on {m.get('docs')} kept docs: datatrove {m.get('datatrove_s')} s, ours "
                      f"{m.get('ours_s')} s, speed-up {m.get('speedup')}× (CPU {m.get('speedup_cpu')}×), "
                      f"removed-set Jaccard {m.get('removed_jaccard')}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=2000, help="records in the GENERATED language-mix WARC")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep inputs/outputs here (default: a temp dir)")
    ap.add_argument("--no-minhash", action="store_true", help="skip the MinHash comparison")
    ap.add_argument("--resiliparse", action="store_true", help="also time our recipe with resiliparse")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_worker":  # internal: one timed side, JSON on the last stdout line
        import logging
        logging.disable(logging.WARNING)
        try:
            from loguru import logger
            logger.remove()
        except ImportError:
            pass
        kind, out = argv[1], Path(argv[2])
        if kind == "datatrove":
            res = _worker_datatrove(Path(argv[3]), argv[4], out, Path(argv[5]) if len(argv) > 5 else None)
        else:
            mode = argv[4].split("+")
            res = _worker_ours([Path(p) for p in argv[5:]], out, argv[3], mode[0] == "gate", "cpu" in mode)
        print(json.dumps(res))
        return 0
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.docs < 1:
        ap.error(f"--docs must be 1 or more, not {args.docs}")
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        res = run_benchmark(args.docs, args.seed, work, minhash=not args.no_minhash,
                            resiliparse=args.resiliparse)
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(_public(res), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
