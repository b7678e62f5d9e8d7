"""Our MinHash near-dedup (tasks/curation/minhash.py + tasks/curation/finalize.py) against datatrove's, in one run.

Same documents, same settings (word 5-grams, 14 bands × 8 hashes, seed 1):

- datatrove: MinhashDedupSignature → MinhashDedupBuckets → MinhashDedupCluster →
  MinhashDedupFilter, each through LocalPipelineExecutor with one worker
  (1 task; Buckets needs one task per band, run one after another);
- ours: compute_signatures per shard → lsh_band per band → cluster →
  finalize_shard per shard with PII scrubbing off (the drop step only; the PII
  pass is timed separately), all in this process, one core.

The documents are GENERATED from real text: chunks of data/text (C4,
Wikipedia, Tiny Shakespeare, the cs336 sample) plus planted near-duplicates of
some chunks (a sentence inserted, words changed, a span deleted, or an exact
copy). Prints seconds, documents/second, the speed ratio, agreement of the
removed sets and of the clustered sets (Jaccard), and recall of the planted
copies for each side.

    .venv/bin/python benchmarks/minhash_vs_datatrove.py --docs 2000
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
TEXT = REPO / "data" / "text"

NGRAM, BANDS, ROWS, SEED = 5, 14, 8, 1


class _Cfg:
    minhash_ngram, minhash_buckets, minhash_hashes_per_bucket, minhash_seed = NGRAM, BANDS, ROWS, SEED
    pii_email = pii_ip = pii_phone = False


# ------------------------------------------------------------------ documents


def _chunks(text: str, sep: str, target: int) -> list[str]:
    out, cur, size = [], [], 0
    for part in text.split(sep):
        cur.append(part)
        size += len(part)
        if size >= target:
            out.append(sep.join(cur).strip())
            cur, size = [], 0
    return [c for c in out if len(c.split()) >= 50]


def _edit(text: str, kind: int, rng: random.Random) -> str:
    words = text.split()
    k = rng.randrange(len(words) // 4, 3 * len(words) // 4)
    if kind == 0:
        return " ".join(words[:k] + "This sentence was inserted into the copy by the benchmark generator.".split()
                        + words[k:])
    if kind == 1:
        for j in rng.sample(range(len(words)), 3):
            words[j] = "generated"
        return " ".join(words)
    if kind == 2:
        return " ".join(words[:k] + words[k + 6:])
    return text


def generated_docs(n_docs: int, dup_fraction: float = 0.1, seed: int = 0) -> list[dict[str, Any]]:
    """GENERATED benchmark corpus: real-text chunks + planted near-duplicates (`planted_from` set)."""
    rng = random.Random(seed)
    base = [json.loads(line)["text"] for line in (TEXT / "llamafactory_c4_demo.jsonl").read_text().splitlines()]
    base += _chunks((TEXT / "llamafactory_wiki_demo.txt").read_text(), ". ", 1500)
    base += _chunks((TEXT / "tinyshakespeare.txt").read_text(), "\n", 1500)
    base += _chunks((TEXT / "cs336_corpus.en").read_text(), "\n", 1500)
    n_dups = max(int(n_docs * dup_fraction), n_docs - len(base))
    n_base = n_docs - n_dups
    rng.shuffle(base)
    base = base[:n_base]
    docs = [{"id": f"generated-{i:06d}", "text": t, "planted_from": None} for i, t in enumerate(base)]
    long_enough = [d for d in docs if len(d["text"].split()) >= 150]
    for j in range(n_dups):
        src = rng.choice(long_enough)
        docs.append({"id": f"generated-dup-{j:06d}", "text": _edit(src["text"], j % 4, rng),
                     "planted_from": src["id"]})
    rng.shuffle(docs)
    return docs


# ---------------------------------------------------------------------- sides


def run_datatrove(docs: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig

    config = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=SEED,
                           hash_config=HashConfig(precision=64))
    as_docs = lambda: [Document(text=d["text"], id=d["id"]) for d in docs]  # noqa: E731
    kept: list[Document] = []

    def collect(data, rank=0, world_size=1):
        for doc in data:
            kept.append(doc)
            yield doc

    steps = {
        "signature": LocalPipelineExecutor([as_docs(), MinhashDedupSignature(str(work / "sigs"), config=config)],
                                           tasks=1, workers=1, logging_dir=str(work / "logs1")),
        "buckets": LocalPipelineExecutor([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=config)],
                                         tasks=BANDS, workers=1, logging_dir=str(work / "logs2")),
        "cluster": LocalPipelineExecutor([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config,
                                                              save_cluster_id=True, save_cluster_size=True)],
                                         tasks=1, workers=1, logging_dir=str(work / "logs3")),
        "filter": LocalPipelineExecutor([as_docs(), MinhashDedupFilter(str(work / "remove"), load_cluster_sizes=True),
                                         collect], tasks=1, workers=1, logging_dir=str(work / "logs4")),
    }
    seconds, cpu = {}, {}
    for name, ex in steps.items():
        t, c = time.perf_counter(), time.process_time()
        ex.run()
        seconds[name], cpu[name] = time.perf_counter() - t, time.process_time() - c
    kept_ids = {d.id for d in kept}
    removed = {d["id"] for d in docs} - kept_ids
    clustered = removed | {d.id for d in kept if d.metadata.get("minhash_cluster_size", 1) > 1}
    # (doc index, cluster id) uint32 pairs of the single input file (rank 0)
    members: dict[int, set[str]] = {}
    cluster_file = work / "remove" / "000000.clusters"
    if cluster_file.exists():
        import numpy as np

        for idx, cid in np.fromfile(cluster_file, dtype="<u4").reshape(-1, 2).tolist():
            members.setdefault(cid, set()).add(docs[idx]["id"])
    partition = {frozenset(m) for m in members.values()}
    return {"seconds": seconds, "cpu": cpu, "removed": removed, "clustered": clustered, "partition": partition}


def run_ours(docs: list[dict[str, Any]], work: Path, n_shards: int = 4) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.curation.finalize import finalize_shard
    from tasks.curation.minhash import cluster, compute_signatures, lsh_band

    shards = [docs[i::n_shards] for i in range(n_shards)]
    pre = []
    for i, shard in enumerate(shards):  # input files: setup, not timed (datatrove reads from memory)
        pre.append(str(work / f"pre_{i:05d}.parquet"))
        pq.write_table(pa.table({"id": [d["id"] for d in shard], "text": [d["text"] for d in shard]}), pre[-1])
    cfg = _Cfg()
    seconds, cpu = {}, {}
    sigs = [str(work / f"sig_{i:05d}.npz") for i in range(n_shards)]
    pairs = [str(work / f"band_{b:03d}.npy") for b in range(BANDS)]
    outs = [str(work / "curated" / f"{i:05d}.parquet") for i in range(n_shards)]
    stages = {
        "signature": lambda: [compute_signatures(pre[i], sigs[i], i, cfg) for i in range(n_shards)],
        "buckets": lambda: [lsh_band(sigs, b, pairs[b]) for b in range(BANDS)],
        "cluster": lambda: cluster(pairs, str(work / "duplicates.parquet")),
        "filter": lambda: [finalize_shard(pre[i], i, str(work / "duplicates.parquet"), outs[i], cfg)
                           for i in range(n_shards)],
    }
    for name, fn in stages.items():
        t, c = time.perf_counter(), time.process_time()
        fn()
        seconds[name], cpu[name] = time.perf_counter() - t, time.process_time() - c

    pii_cfg = _Cfg()
    pii_cfg.pii_email = pii_cfg.pii_ip = pii_cfg.pii_phone = True
    t = time.perf_counter()
    for i in range(n_shards):
        finalize_shard(pre[i], i, str(work / "duplicates.parquet"), str(work / "pii" / f"{i:05d}.parquet"), pii_cfg)
    pii_seconds = time.perf_counter() - t

    kept = {x for o in outs for x in pq.read_table(o, columns=["id"]).column("id").to_pylist()}
    removed = {d["id"] for d in docs} - kept
    table = pq.read_table(work / "duplicates.parquet")
    members: dict[int, set[str]] = {}
    for s, r, c in zip(*(table.column(k).to_pylist() for k in ("shard", "row", "cluster_id"))):
        members.setdefault(c, set()).add(shards[s][r]["id"])
    clustered = set().union(*members.values()) if members else set()
    partition = {frozenset(m) for m in members.values()}
    return {"seconds": seconds, "cpu": cpu, "removed": removed, "clustered": clustered, "partition": partition,
            "finalize_with_pii_s": pii_seconds}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _planted_recall(docs: list[dict[str, Any]], clustered: set) -> float:
    planted = [d for d in docs if d["planted_from"]]
    hit = sum(1 for d in planted if d["id"] in clustered and d["planted_from"] in clustered)
    return hit / len(planted) if planted else 1.0


def run(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Time both sides on `docs` (dicts with id, text[, planted_from]); return figures and agreement."""
    docs = [{"id": str(d.get("id", f"doc-{i}")), "text": d.get("text") or "", "planted_from": d.get("planted_from")}
            for i, d in enumerate(docs)]
    if len({d["id"] for d in docs}) != len(docs):
        raise ValueError("run(docs): document ids must be unique (agreement is measured on ids)")
    with tempfile.TemporaryDirectory(prefix="minhash-bench-") as tmp:
        (Path(tmp) / "dt").mkdir()
        (Path(tmp) / "ours").mkdir()
        dt = run_datatrove(docs, Path(tmp) / "dt")
        ours = run_ours(docs, Path(tmp) / "ours")
    n = len(docs)
    dt_s, our_s = sum(dt["seconds"].values()), sum(ours["seconds"].values())
    dt_cpu, our_cpu = sum(dt["cpu"].values()), sum(ours["cpu"].values())
    return {
        "docs": n,
        "datatrove_cpu_s": round(dt_cpu, 3), "ours_cpu_s": round(our_cpu, 3),
        "speedup_cpu": round(dt_cpu / our_cpu, 2),
        "datatrove_s": round(dt_s, 3), "ours_s": round(our_s, 3),
        "datatrove_docs_per_s": round(n / dt_s, 1), "ours_docs_per_s": round(n / our_s, 1),
        "speedup": round(dt_s / our_s, 2),
        "datatrove_stage_s": {k: round(v, 3) for k, v in dt["seconds"].items()},
        "ours_stage_s": {k: round(v, 3) for k, v in ours["seconds"].items()},
        "ours_finalize_with_pii_s": round(ours["finalize_with_pii_s"], 3),
        "removed_datatrove": len(dt["removed"]), "removed_ours": len(ours["removed"]),
        "removed_jaccard": round(_jaccard(dt["removed"], ours["removed"]), 4),
        "clustered_jaccard": round(_jaccard(dt["clustered"], ours["clustered"]), 4),
        "clusters_datatrove": len(dt["partition"]), "clusters_ours": len(ours["partition"]),
        "identical_clusters_jaccard": round(_jaccard(dt["partition"], ours["partition"]), 4),
        "planted": sum(1 for d in docs if d["planted_from"]),
        "planted_recall_datatrove": round(_planted_recall(docs, dt["clustered"]), 4),
        "planted_recall_ours": round(_planted_recall(docs, ours["clustered"]), 4),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/test_docs_commands.py parses the documented commands with it)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=2000, help="number of GENERATED documents (default 2000)")
    p.add_argument("--dup-fraction", type=float, default=0.1, help="share of planted near-duplicates")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    from loguru import logger

    logger.remove()  # datatrove's per-step logging would drown the figures
    docs = generated_docs(args.docs, args.dup_fraction)
    res = run(docs)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"MinHash dedup on {res['docs']} GENERATED documents ({res['planted']} planted near-duplicates), "
          f"{NGRAM}-grams, {BANDS}×{ROWS}, one core")
    print(f"  datatrove: {res['datatrove_s']:8.2f} s  {res['datatrove_docs_per_s']:8.1f} docs/s  "
          f"stages {res['datatrove_stage_s']}")
    print(f"  ours:      {res['ours_s']:8.2f} s  {res['ours_docs_per_s']:8.1f} docs/s  "
          f"stages {res['ours_stage_s']}")
    print(f"  CPU seconds (robust to a busy machine): datatrove {res['datatrove_cpu_s']:.2f}, "
          f"ours {res['ours_cpu_s']:.2f} → {res['speedup_cpu']:.2f}x")
    print(f"  speed-up (datatrove s / ours s, wall clock): {res['speedup']:.2f}x   "
          f"(ours finalize with PII on: {res['ours_finalize_with_pii_s']:.2f} s)")
    print(f"  removed: datatrove {res['removed_datatrove']}, ours {res['removed_ours']}, "
          f"Jaccard {res['removed_jaccard']:.4f} (each side keeps a different member per cluster: "
          f"ours the first document, datatrove its union-find root)")
    print(f"  clusters: datatrove {res['clusters_datatrove']}, ours {res['clusters_ours']}; "
          f"Jaccard of identical clusters {res['identical_clusters_jaccard']:.4f}; "
          f"of clustered documents {res['clustered_jaccard']:.4f}")
    print(f"  planted copies found: datatrove {res['planted_recall_datatrove']:.1%}, "
          f"ours {res['planted_recall_ours']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
