"""Duplicate clusters without one process seeing every document: partitioned connected components.

`tasks.curation.minhash.cluster` loads every candidate pair at once. Here the pair
files (one per LSH band × partition, `tasks.curation.minhash.lsh_band(part=...)`) are
reduced by `n_parts` workers that each hold only the edges of their
partition of nodes (a node's partition: a hash of its doc key), and exchange
edges through files between rounds — a shuffle on a shared disk, the same
place every other curate intermediate lives.

The algorithm is Kiveris et al.'s "alternating large-star / small-star"
(Connected Components in MapReduce and Beyond, SoCC 2014): both steps keep the
components and shrink them to stars; the loop ends when a round changes no
edge, which happens exactly when every component is a star around its smallest
node. That smallest node is the label `tasks.curation.minhash.cluster` gives, so the
table written here holds the same rows (shard, row, cluster_id, cluster_size,
drop) — written as one Parquet part per partition, in a directory that
`pyarrow.parquet.read_table` reads like one file (tasks/curation/finalize.py does).

- large-star at node u: m = min(u, neighbours); every neighbour v > u is joined to m.
- small-star at node u: m = min of the neighbours v ≤ u; they and u are joined to m.

Rounds are O(log² n) in theory; LSH pairs are already stars around each
bucket's smallest key, so a handful of rounds is typical (the benchmark
prints them). Each step's partitions run as Ray tasks when Ray is up (inside
the flow's `cluster` task, or in a test's `ray.init`), else one after another.
Memory per worker: one partition's edges, 16 bytes per directed edge.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.curation.minhash import CLUSTER_SCHEMA, _mix64, _save_npy, cluster_table, jaccard_filter, read_pairs

log = logging.getLogger(__name__)

_U64 = np.uint64
_EMPTY = np.empty((0, 2), _U64)
# A round that keeps changing after this many rounds is a bug, not a big graph (O(log² n)).
MAX_ROUNDS = 200


def node_partition(keys: np.ndarray, n_parts: int) -> np.ndarray:
    """Partition of each doc key (a hash, so shards and rows spread evenly)."""
    if n_parts <= 1:
        return np.zeros(len(keys), dtype=np.int64)
    return (_mix64(keys.astype(_U64, copy=True)) % _U64(n_parts)).astype(np.int64)


def _scatter(src: np.ndarray, dst: np.ndarray, n_parts: int, step_dir: Path, me: int) -> None:
    """Write directed edges (src → dst), keyed by src, to `step_dir/to-PPP/from-MMM.npy`."""
    part = node_partition(src, n_parts)
    order = np.argsort(part, kind="stable")
    part, edges = part[order], np.stack([src[order], dst[order]], axis=1)
    bounds = np.searchsorted(part, np.arange(n_parts + 1))
    for p in range(n_parts):
        if bounds[p + 1] == bounds[p]:
            continue  # nothing for p: no file (P² files a step would be mostly empty)
        d = step_dir / f"to-{p:03d}"
        d.mkdir(parents=True, exist_ok=True)
        _save_npy(str(d / f"from-{me:03d}.npy"), edges[bounds[p]:bounds[p + 1]])


def _gather(step_dir: Path, part: int) -> np.ndarray:
    """All directed edges sent to `part`, duplicates removed, sorted by (src, dst)."""
    files = sorted((step_dir / f"to-{part:03d}").glob("from-*.npy"))
    edges = np.concatenate([np.load(f, allow_pickle=False) for f in files]) if files else _EMPTY
    if len(edges) == 0:
        return _EMPTY
    edges = edges[np.lexsort((edges[:, 1], edges[:, 0]))]  # by src, then dst
    keep = np.concatenate(([True], np.any(edges[1:] != edges[:-1], axis=1)))
    return edges[keep]


def _groups(src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start index, group id per edge) of runs of equal `src` in a sorted array."""
    new = np.concatenate(([True], src[1:] != src[:-1]))
    return np.flatnonzero(new), np.cumsum(new) - 1


# ------------------------------------------------------------------ steps (one partition each)
def seed_step(pair_paths: list[str], me: int, n_parts: int, out_dir: str, signature_paths: list[str],
              jaccard_threshold: float | None) -> dict[str, int]:
    """Pair files → both directions of every edge, scattered for the first large-star."""
    arrays = [read_pairs(p) for p in pair_paths]
    n_in = sum(len(a) for a in arrays)
    if jaccard_threshold is not None:
        arrays = [jaccard_filter(a, signature_paths, jaccard_threshold) for a in arrays]
    pairs = np.concatenate(arrays) if arrays else _EMPTY
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    _scatter(np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]]),
             n_parts, Path(out_dir), me)
    return {"pairs": int(n_in), "kept_pairs": int(len(pairs))}


def large_star_step(in_dir: str, me: int, n_parts: int, out_dir: str) -> dict[str, int]:
    """Large-star over the nodes of partition `me`; edges go out keyed by their larger end."""
    e = _gather(Path(in_dir), me)
    src, dst = e[:, 0], e[:, 1]
    start, gid = _groups(src) if len(e) else (np.empty(0, np.int64), np.empty(0, np.int64))
    m = np.minimum(np.minimum.reduceat(dst, start), src[start]) if len(e) else np.empty(0, _U64)
    m_of = m[gid]
    up = dst > src
    v, mv = dst[up], m_of[up]
    changed = int(np.count_nonzero(mv != src[up]))
    _scatter(v, mv, n_parts, Path(out_dir), me)  # the larger end v keys small-star
    return {"edges": int(len(e)), "changed": changed}


def small_star_step(in_dir: str, me: int, n_parts: int, out_dir: str) -> dict[str, int]:
    """Small-star over the nodes of partition `me` (edges keyed by their larger end); both directions out."""
    e = _gather(Path(in_dir), me)
    u, v = e[:, 0], e[:, 1]  # v < u always
    if len(e):
        start, gid = _groups(u)
        m = np.minimum.reduceat(v, start)[gid]
        changed = int(len(e) - len(start))  # a node with k smaller neighbours makes k-1 new edges
        x = np.concatenate([u[start], v[v != m]])
        mx = np.concatenate([m[start], m[v != m]])
    else:
        changed, x, mx = 0, np.empty(0, _U64), np.empty(0, _U64)
    _scatter(np.concatenate([x, mx]), np.concatenate([mx, x]), n_parts, Path(out_dir), me)
    return {"edges": int(len(e)), "changed": changed}


def table_step(in_dir: str, me: int, out_dir: str) -> dict[str, int]:
    """Stars → this partition's part of the cluster table: each centre with its leaves."""
    e = _gather(Path(in_dir), me)
    e = e[e[:, 1] > e[:, 0]]  # centre → leaf (converged: centres have only larger neighbours)
    if len(e):
        start, gid = _groups(e[:, 0])
        count = np.diff(np.append(start, len(e))) + 1
        centres = e[start, 0]
        nodes = np.concatenate([centres, e[:, 1]])
        key = np.concatenate([centres, e[:, 0]])
        size = np.concatenate([count, count[gid]])
        order = np.argsort(nodes, kind="stable")
        table = cluster_table(nodes[order], key[order], size[order])
    else:
        table, count = CLUSTER_SCHEMA.empty_table(), np.empty(0, np.int64)
    pq.write_table(table, str(Path(out_dir) / f"part-{me:05d}.parquet"))
    return {"clusters": int(len(count)), "docs_in_clusters": int(count.sum()),
            "largest_cluster": int(count.max()) if len(count) else 0}


# ------------------------------------------------------------------ driver
def default_map(fn: Callable[..., Any], calls: list[tuple]) -> list[Any]:
    """Run `fn(*args)` for each call: as Ray tasks (one CPU each) when Ray is up, else in turn."""
    try:
        import ray

        up = ray.is_initialized()
    except ImportError:
        up = False
    if not up or len(calls) <= 1:
        return [fn(*c) for c in calls]
    if fn not in _REMOTE:
        _REMOTE[fn] = ray.remote(num_cpus=1, max_retries=2)(fn)
    return ray.get([_REMOTE[fn].remote(*c) for c in calls])


_REMOTE: dict[Callable[..., Any], Any] = {}


def cluster_partitioned(pair_paths: list[str], out_path: str, n_parts: int, work_dir: str,
                        signature_paths: list[str] | None = None, jaccard_threshold: float | None = None,
                        map_fn: Callable[[Callable[..., Any], list[tuple]], list[Any]] = default_map,
                        ) -> dict[str, int]:
    """The cluster table of `tasks.curation.minhash.cluster`, computed by `n_parts` bounded workers.

    Writes a directory `out_path` of Parquet parts (temp name, then renamed:
    the directory is complete when it exists). `work_dir` holds the edge files
    of the rounds and is removed at the end. Returns the same stats as
    `cluster` plus "rounds" and "partitions".
    """
    if n_parts < 1:
        raise ValueError(f"n_parts must be ≥ 1, not {n_parts}")
    t0 = time.perf_counter()
    work = Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sig = list(signature_paths or [])
    # Seed: the pair files are split over the partitions' workers by position.
    groups = [pair_paths[i::n_parts] for i in range(n_parts)]
    seeded = map_fn(seed_step, [(g, i, n_parts, str(work / "r000-seed"), sig, jaccard_threshold)
                                for i, g in enumerate(groups)])
    prev = work / "r000-seed"
    rounds = 0
    while True:
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds (a bug)")
        large = work / f"r{rounds:03d}-large"
        ls = map_fn(large_star_step, [(str(prev), i, n_parts, str(large)) for i in range(n_parts)])
        small = work / f"r{rounds:03d}-small"
        ss = map_fn(small_star_step, [(str(large), i, n_parts, str(small)) for i in range(n_parts)])
        shutil.rmtree(prev, ignore_errors=True)
        shutil.rmtree(large, ignore_errors=True)
        prev = small
        changed = sum(s["changed"] for s in ls) + sum(s["changed"] for s in ss)
        log.info("cluster round %d: %d edges, %d changed", rounds, sum(s["edges"] for s in ss), changed)
        if changed == 0:
            break
    out = Path(out_path)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    parts = map_fn(table_step, [(str(prev), i, str(tmp)) for i in range(n_parts)])
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    os.replace(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    n_in = sum(s["pairs"] for s in seeded)
    in_clusters = sum(p["docs_in_clusters"] for p in parts)
    n_clusters = sum(p["clusters"] for p in parts)
    stats = {"pairs": n_in, "clusters": n_clusters, "docs_in_clusters": in_clusters,
             "docs_dropped": in_clusters - n_clusters,
             "largest_cluster": max((p["largest_cluster"] for p in parts), default=0),
             "rounds": rounds, "partitions": n_parts}
    if jaccard_threshold is not None:
        stats["pairs_below_jaccard"] = n_in - sum(s["kept_pairs"] for s in seeded)
    log.info("minhash cluster (%d partitions): %s in %.2fs", n_parts, json.dumps(stats), time.perf_counter() - t0)
    return stats


def read_cluster_table(path: str) -> pa.Table:
    """The cluster table from a file (`cluster`) or a directory of parts (`cluster_partitioned`)."""
    return pq.read_table(path, schema=CLUSTER_SCHEMA) if Path(path).is_dir() else pq.read_table(path)
