"""Our per-WARC curation (tasks/process.py) against datatrove's FineWeb base recipe, in one run.

Same GENERATED WARC (data/build_warc.py: real text in built HTML pages, with
planted junk, blocked URLs, non-English and repetitive pages), same settings:

- datatrove: LocalPipelineExecutor, 1 task, 1 worker: WarcReader → URLFilter →
  Trafilatura(favour_precision) → LanguageFilter(en, 0.65; the local lid.176.ftz
  is put into the block because it would download lid.176.bin) →
  GopherRepetition → GopherQuality → C4Quality(no terminal-punct rule) →
  FineWebQuality → JsonlWriter;
- ours, 1 core: `process_warc` on the whole file in one process;
- ours, 2 cores: the WARC split into two halves (record boundaries), two
  `process_warc` processes at once — the shape of the curate flow, which runs
  one task per WARC file on Ray (Ray's own start-up is per run, not per file,
  and is left out);
- ours with `extractor: resiliparse`, 1 core.

Both sides use the same extractor settings (trafilatura `deduplicate=False`:
its process-global cache would otherwise drop repeated paragraphs depending on
document order, see PITFALLS) and the same per-page timeout (datatrove's 1 s),
and both get tldextract's offline public-suffix snapshot (the default tries
publicsuffix.org first). Every side runs in a fresh process, so its wall time
includes loading the 4.5 M-domain UT1 list, spaCy and fastText, as a real
worker pays once. Also printed: CPU seconds (robust on a busy machine) and the
Jaccard agreement of the kept URL sets.

If benchmarks/minhash_vs_datatrove.py exists, its `run(docs)` is then called
on the documents we kept (MinHash stages vs datatrove's MinhashDedup*).

    .venv/bin/python benchmarks/curate_vs_datatrove.py --docs 2000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
TIMEOUT_S = 1.0  # datatrove's Trafilatura default


# --------------------------------------------------------------------------- workers (subprocesses)
def _worker_datatrove(warc: Path, out: Path) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LanguageFilter, URLFilter)
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from fasttext.FastText import _FastText
    from tldextract import TLDExtract

    from tasks.langid import model_path

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

    lang = LocalModelLanguageFilter(languages=["en"], language_threshold=0.65)
    pipeline = [
        WarcReader(str(warc.parent), glob_pattern=warc.name),
        url_filter,
        Trafilatura(favour_precision=True, timeout=TIMEOUT_S, deduplicate=False),
        lang,
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        JsonlWriter(str(out), output_filename="kept.jsonl.gz"),
    ]
    LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=str(out / "logs")).run()
    import gzip
    with gzip.open(out / "kept.jsonl.gz", "rt") as f:
        urls = [json.loads(line)["metadata"]["url"] for line in f]
    return {"kept_urls": urls}


def _worker_ours(warcs: list[Path], out: Path, extractor: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from conf.curate import CurateConfig
    from tasks.process import process_warc

    cfg = CurateConfig(extractor=extractor, extract_timeout_s=TIMEOUT_S)
    urls, ids, texts, stats = [], [], [], []
    for i, w in enumerate(warcs):
        path = out / f"shard-{i}.parquet"
        stats.append(process_warc(str(w), str(path), cfg))
        t = pq.read_table(path, columns=["id", "url", "text"])
        urls += t.column("url").to_pylist()
        ids += t.column("id").to_pylist()
        texts += t.column("text").to_pylist()
    return {"kept_urls": urls, "kept_ids": ids, "kept_texts": texts, "stats": stats}


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


def run_benchmark(n_docs: int, seed: int, work: Path, minhash: bool = True) -> dict[str, Any]:
    """Build the WARC, time all sides, return the figures."""
    from data.build_warc import build_warc, generated_name

    warc = work / generated_name(n_docs, seed)
    manifest = build_warc(warc, n_docs, seed)
    halves = split_warc(warc, 2, work)
    res: dict[str, Any] = {"docs": n_docs, "warc": str(warc), "cpus": os.cpu_count(),
                           "load_avg_before": os.getloadavg()[0]}
    runs = {
        "datatrove_1core": [["datatrove", str(warc), str(work / "dt")]],
        "ours_1core": [["ours", "trafilatura", str(work / "ours1"), str(warc)]],
        "ours_2core": [["ours", "trafilatura", str(work / f"ours2_{k}"), str(h)] for k, h in enumerate(halves)],
        "ours_resiliparse_1core": [["ours", "resiliparse", str(work / "res1"), str(warc)]],
    }
    results = {}
    for name, jobs in runs.items():
        for j in jobs:
            Path(j[2]).mkdir(parents=True, exist_ok=True)
        print(f"  running {name} ...", flush=True)
        wall, cpu, outs = _timed(jobs)
        kept = [u for o in outs for u in o["kept_urls"]]
        results[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                         "docs_per_s": round(n_docs / wall, 1), "kept": len(kept)}
        results[name]["_kept"] = set(kept)
        results[name]["_outs"] = outs
    ref = results["datatrove_1core"]
    for name, r in results.items():
        r["speed_vs_datatrove"] = round(ref["wall_s"] / r["wall_s"], 2)
        r["cpu_ratio_vs_datatrove"] = round(ref["cpu_s"] / r["cpu_s"], 2)
        r["kept_jaccard_vs_datatrove"] = round(_jaccard(ref["_kept"], r["_kept"]), 4)
    res["runs"] = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")} for k, v in results.items()}
    ours = results["ours_1core"]
    res["ours_1core_vs_2core_jaccard"] = round(_jaccard(ours["_kept"], results["ours_2core"]["_kept"]), 4)
    only_dt = sorted(ref["_kept"] - ours["_kept"])[:5]
    only_ours = sorted(ours["_kept"] - ref["_kept"])[:5]
    res["disagreements_sample"] = {"only_datatrove": only_dt, "only_ours": only_ours}
    from tasks.funnel import merge_stats
    res["ours_funnel"] = merge_stats(ours["_outs"][0]["stats"])

    hook = REPO / "benchmarks" / "minhash_vs_datatrove.py"
    if minhash and hook.exists():
        import importlib.util
        spec = importlib.util.spec_from_file_location("minhash_vs_datatrove", hook)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out = ours["_outs"][0]
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


def report(res: dict[str, Any]) -> str:
    lines = [f"Curation recipe on {res['docs']} GENERATED WARC records ({res['warc']}); "
             f"{res['cpus']} CPUs, load average before: {res['load_avg_before']:.1f}",
             f"{'run':<24}{'wall s':>9}{'docs/s':>9}{'× dt':>7}{'CPU s':>9}{'CPU× dt':>9}{'kept':>7}"
             f"{'Jaccard':>9}"]
    for name, r in res["runs"].items():
        lines.append(f"{name:<24}{r['wall_s']:>9.1f}{r['docs_per_s']:>9.1f}{r['speed_vs_datatrove']:>7.2f}"
                     f"{r['cpu_s']:>9.1f}{r['cpu_ratio_vs_datatrove']:>9.2f}{r['kept']:>7}"
                     f"{r['kept_jaccard_vs_datatrove']:>9.4f}")
    lines.append(f"ours 1-core vs 2-core kept-set Jaccard: {res['ours_1core_vs_2core_jaccard']}")
    if res["disagreements_sample"]["only_datatrove"] or res["disagreements_sample"]["only_ours"]:
        lines.append(f"disagreements (sample): {res['disagreements_sample']}")
    from tasks.funnel import funnel_table
    lines += ["", "Our funnel (1 core):", funnel_table(res["ours_funnel"])]
    if "minhash" in res:
        m = res["minhash"]
        lines += ["", f"MinHash on {m.get('docs')} kept docs: datatrove {m.get('datatrove_s')} s, ours "
                      f"{m.get('ours_s')} s, speed-up {m.get('speedup')}× (CPU {m.get('speedup_cpu')}×), "
                      f"removed-set Jaccard {m.get('removed_jaccard')}"]
    return "\n".join(lines)


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
        kind = argv[1]
        if kind == "datatrove":
            out = _worker_datatrove(Path(argv[2]), Path(argv[3]))
        else:
            out = _worker_ours([Path(p) for p in argv[4:]], Path(argv[3]), argv[2])
        print(json.dumps(out))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=2000, help="records in the GENERATED WARC")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="keep inputs/outputs here (default: a temp dir)")
    ap.add_argument("--no-minhash", action="store_true", help="skip the MinHash comparison")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        res = run_benchmark(args.docs, args.seed, work, minhash=not args.no_minhash)
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
