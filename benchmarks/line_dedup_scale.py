"""Growth of exact line dedup (tasks/curation/line_dedup.py) with the corpus: 1 M and 10 M GENERATED documents.

Documents are GENERATED here, short (3 lines of ~40 characters) so that millions fit the
machine: 20 % of lines come from 2,000 boilerplate lines shared across documents (the
kind line dedup exists for), the rest are unique. Steps, each timed in CPU seconds on one
core (OMP_NUM_THREADS=1), as the curate flow runs them:

1. hash: `shard_line_hashes` per shard of `--shard-docs` documents (one task per shard);
2. count: `count_partition` per hash-range partition, with `--hashes-per-partition` as the
   cap, so the partitions grow with the corpus and a worker's memory does not
   (tracemalloc peak of the largest partition's counting);
3. apply: `apply_line_dedup` per shard (removal + documents left too short).

Checks that the duplicate set equals the one counted in a single partition (1 M only).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/line_dedup_scale.py --docs 1000000 10000000
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/line_dedup_scale.py --demo   # the demo's corpus
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WORDS = ("river city school music science people house night garden market story window winter paper "
         "morning table station forest letter bridge island village mountain harbour engine circle").split()


def generated_docs(start: int, n: int, seed: int = 0) -> list[str]:
    """GENERATED documents start..start+n: 3 short lines, 20 % of them shared boilerplate."""
    rng = np.random.default_rng(seed + start)
    shared = rng.random((n, 3)) < 0.2
    which = rng.integers(0, 2000, (n, 3))
    w = rng.integers(0, len(WORDS), (n, 3, 3))
    out = []
    for i in range(n):
        lines = []
        for k in range(3):
            if shared[i, k]:
                lines.append(f"Subscribe to newsletter number {which[i, k]} for the latest updates")
            else:
                a, b, c = (WORDS[j] for j in w[i, k])
                lines.append(f"Document {start + i} line {k}: the {a} by the {b} and {c}")
        out.append("\n".join(lines))
    return out


def run(n_docs: int, work: Path, shard_docs: int, per_partition: int, min_chars: int = 30) -> dict[str, Any]:
    from tasks.curation.line_dedup import (apply_line_dedup, count_partition, dups_path, n_partitions,
                                  shard_line_hashes)
    from tasks.curation.minhash import _save_npy

    work.mkdir(parents=True, exist_ok=True)
    t = {"generate": 0.0, "hash": 0.0, "count": 0.0, "apply": 0.0}
    paths = []
    total = 0
    for lo in range(0, n_docs, shard_docs):
        c0 = time.process_time()
        docs = generated_docs(lo, min(shard_docs, n_docs - lo))
        c1 = time.process_time()
        h = shard_line_hashes(docs, min_chars)
        paths.append(str(work / f"shard-{lo // shard_docs:05d}.npy"))
        _save_npy(paths[-1], h)
        t["generate"] += c1 - c0
        t["hash"] += time.process_time() - c1
        total += int(h.size)
    n_parts = n_partitions(total, per_partition)
    peak = 0
    dups = 0
    for p in range(n_parts):
        tracemalloc.start()
        c0 = time.process_time()
        dups += count_partition(paths, p, n_parts, dups_path(work / "dups", p, n_parts))
        t["count"] += time.process_time() - c0
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    removed = too_short = 0
    for k, lo in enumerate(range(0, n_docs, shard_docs)):
        docs = generated_docs(lo, min(shard_docs, n_docs - lo))
        c0 = time.process_time()
        _, _, counts, _ = apply_line_dedup(docs, work / "dups", n_parts, min_chars, 12)
        t["apply"] += time.process_time() - c0
        removed += counts["lines_removed"]
        too_short += counts["too_short"]
    res = {"docs": n_docs, "shards": len(paths), "line_hashes": total, "partitions": n_parts,
           "duplicate_lines": dups, "lines_removed": removed, "docs_dropped": too_short,
           "cpu_s": {k: round(v, 2) for k, v in t.items()},
           "docs_per_s_per_core": {k: round(n_docs / v) for k, v in t.items() if k != "generate" and v},
           "count_peak_mb": round(peak / 1e6, 1), "load_avg": round(os.getloadavg()[0], 1)}
    if n_parts > 1 and n_docs <= 2_000_000:  # same duplicates in one partition
        one = count_partition(paths, 0, 1, str(work / "one.npy"))
        merged = np.concatenate([np.load(dups_path(work / "dups", p, n_parts)) for p in range(n_parts)])
        res["same_as_one_partition"] = bool(one == dups and np.array_equal(np.load(work / "one.npy"), merged))
    return res


def demo_report(work: Path, n_generated: int = 800) -> dict[str, Any]:
    """What line dedup removes from the demo's corpus (`make demo`: the real samples + the GENERATED
    800-page WARC, seed 0), with the default config: per-WARC recipe, MinHash dedup, quality
    classifier, then line dedup. Returns counts and the top removed lines."""
    from collections import Counter

    import pyarrow.parquet as pq

    from conf.curate import CurateConfig
    from data.build_warc import SAMPLES, build_warc, generated_name
    from tasks.curation.finalize import finalize_shard
    from tasks.curation.line_dedup import count_duplicates, doc_line_hashes, normalise_line, shard_pass
    from tasks.curation.minhash import cluster, compute_signatures, lsh_band
    from tasks.curation.process import process_warc

    cfg = CurateConfig()
    work.mkdir(parents=True, exist_ok=True)
    gen = work / generated_name(n_generated, 0)
    build_warc(gen, n_generated, 0)
    inputs = sorted(str(p) for p in SAMPLES.glob("*.warc.gz")) + [str(gen)]
    shards, sigs = [], []
    for i, src in enumerate(inputs):
        shards.append(str(work / f"pre-{i}.parquet"))
        process_warc(src, shards[-1], cfg)
        sigs.append(str(work / f"sig-{i}.npz"))
        compute_signatures(shards[-1], sigs[-1], i, cfg)
    bands = []
    for b in range(cfg.minhash_buckets):
        bands.append(str(work / f"band-{b}.npy"))
        lsh_band(sigs, b, bands[-1])
    dups = str(work / "dups.parquet")
    cluster(bands, dups)
    for i, sh in enumerate(shards):
        shard_pass(sh, i, dups, f"{sh}.h.npy", f"{sh}.s.npy", cfg)
    count_duplicates([f"{sh}.h.npy" for sh in shards], work / "lines", 1, map_fn=lambda f, c: [f(*a) for a in c])
    dup_set = set(np.load(work / "lines" / "dups_0000-of-0001.npy").tolist())
    removed: Counter[str] = Counter()
    stats = []
    for i, sh in enumerate(shards):
        stats.append(finalize_shard(sh, i, dups, str(work / f"final-{i}.parquet"), cfg, str(work / "lines"), 1,
                                    f"{sh}.s.npy", cfg.quality_threshold))
        # the lines removed, from the documents that reached line dedup
        from tasks.curation.finalize import _shard_clusters
        texts = pq.read_table(sh, columns=["text"]).column("text").to_pylist()
        drop, _ = _shard_clusters(dups, i, len(texts))
        scores = np.load(f"{sh}.s.npy")
        for t, d, sc in zip(texts, drop, scores):
            if d or not t or sc < cfg.quality_threshold:
                continue
            for line, h in zip(t.split("\n"), doc_line_hashes(t, cfg.line_dedup_min_chars)):
                if h is not None and h in dup_set:
                    removed[normalise_line(line)] += 1
    from tasks.curation.funnel import merge_stats
    funnel = merge_stats(stats)
    ld = next(s for s in funnel["stages"] if s["stage"] == "line_dedup")
    return {"inputs": [Path(p).name for p in inputs], "funnel": funnel["stages"],
            "line_dedup": {"documents_in": ld["in"], "documents_changed": ld.get("docs_changed"),
                           "documents_dropped": ld["in"] - ld["kept"], "lines_removed": ld.get("lines_removed"),
                           "distinct_lines_removed": len(removed)},
            "top_removed_lines": removed.most_common(10)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--shard-docs", type=int, default=250_000)
    ap.add_argument("--hashes-per-partition", type=int, default=1_000_000,
                    help="small here so partitions grow with the corpus (the curate default is 50 M)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--demo", action="store_true", help="instead: what line dedup removes from the demo's corpus")
    args = ap.parse_args(argv)
    if args.demo:
        with tempfile.TemporaryDirectory(prefix="line-dedup-demo-") as tmp:
            r = demo_report(Path(tmp))
        print(json.dumps(r, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=1))
        return 0
    results = []
    for n in args.docs:
        with tempfile.TemporaryDirectory(prefix="line-dedup-scale-") as tmp:
            print(f"{n:,} documents ...", flush=True)
            r = run(n, Path(tmp), args.shard_docs, args.hashes_per_partition)
        print(json.dumps(r), flush=True)
        results.append(r)
    if len(results) > 1:
        a, b = results[0], results[-1]
        growth = {k: round(b["cpu_s"][k] / a["cpu_s"][k], 2) for k in ("hash", "count", "apply") if a["cpu_s"][k]}
        print(f"growth {a['docs']:,} → {b['docs']:,} documents ({b['docs'] / a['docs']:.0f}×): CPU {growth}; "
              f"count peak memory {a['count_peak_mb']} → {b['count_peak_mb']} MB per partition")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
