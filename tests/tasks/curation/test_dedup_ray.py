"""Partitioned dedup (tasks/curation/dedup_ray.py + lsh_band(part=...)) equals the single-node clustering exactly.

Signatures are GENERATED with planted duplicate clusters (random 64-bit
min-hashes; a member of a cluster copies some bands of an earlier member, so
clusters are joined through different bands and form chains, not only stars).
The Ray test runs on a real local Ray (`ray.init(num_cpus=2)`, conftest).
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tasks.curation.dedup_ray import cluster_partitioned, read_cluster_table
from tasks.curation.minhash import (
    cluster, connected_components, jaccard_filter, lsh_band, signature_arrays, write_signatures,
)

BANDS, ROWS = 14, 8


def serial(fn, calls):
    return [fn(*c) for c in calls]


def planted_signature_files(tmp_path, n_docs=3000, n_shards=6, seed=0, layout="sorted"):
    """GENERATED signature files with planted clusters; returns paths.

    layout "sorted": compute_signatures' format (each band sorted by its partition
    hash); "legacy": the format before, bands in row order, read whole by lsh_band.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sig = rng.integers(0, 2**63, size=(n_docs, BANDS * ROWS), dtype=np.uint64)
    order = rng.permutation(n_docs)
    at = 0
    while at < n_docs * 0.4:  # 40% of documents sit in clusters of 2..8
        size = int(rng.integers(2, 9))
        members = order[at:at + size]
        at += size
        for j, m in enumerate(members[1:], 1):
            src = members[rng.integers(0, j)]  # copy from any earlier member: chains
            share = rng.random(BANDS) < 0.3
            share[rng.integers(0, BANDS)] = True
            for b in np.flatnonzero(share):
                sig[m, b * ROWS:(b + 1) * ROWS] = sig[src, b * ROWS:(b + 1) * ROWS]
    paths = []
    for s, idx in enumerate(np.array_split(np.arange(n_docs), n_shards)):
        # shards skip some rows (documents too short to sign), as real ones do
        rows = np.flatnonzero(rng.random(len(idx) + len(idx) // 10 + 50) < 0.95)[:len(idx)].astype(np.int64)
        p = tmp_path / f"sig_{s:05d}.npz"
        if layout == "sorted":
            write_signatures(str(p), signature_arrays(s, int(rows.max()) + 1, rows, sig[idx], BANDS, ROWS))
        else:
            arrays = {"shard": np.asarray(s, np.int64), "n_docs": np.asarray(rows.max() + 1, np.int64),
                      "rows": rows}
            for b in range(BANDS):
                arrays[f"band_{b:03d}"] = np.ascontiguousarray(sig[idx, b * ROWS:(b + 1) * ROWS])
            np.savez(p, **arrays)
        paths.append(str(p))
    return paths


def sorted_rows(path):
    t = read_cluster_table(str(path))
    return sorted(zip(*(t.column(c).to_pylist() for c in t.column_names)))


def pair_files(tmp_path, sigs, n_parts):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = []
    for b in range(BANDS):
        for p in range(n_parts):
            out.append(str(tmp_path / f"band_{b:03d}_p{p:03d}_of{n_parts}.npy"))
            lsh_band(sigs, b, out[-1], part=p, n_parts=n_parts)
    return out


def test_partitioned_lsh_gives_the_pairs_of_the_whole_band(tmp_path):
    sigs = planted_signature_files(tmp_path, n_docs=1500, n_shards=3)
    for b in (0, 5):
        whole = tmp_path / "whole.npy"
        lsh_band(sigs, b, str(whole))
        parts = []
        for p in range(4):
            lsh_band(sigs, b, str(tmp_path / f"p{p}.npy"), part=p, n_parts=4)
            parts.append(np.load(tmp_path / f"p{p}.npy"))
        assert sum(len(x) for x in parts) == len(np.load(whole)) > 0
        assert sorted(map(tuple, np.concatenate(parts).tolist())) == sorted(map(tuple, np.load(whole).tolist()))
    with pytest.raises(ValueError, match="partition 4"):
        lsh_band(sigs, 0, str(tmp_path / "x.npy"), part=4, n_parts=4)


def _rchar() -> int:
    """Bytes this process has read through read()/pread() so far (the kernel's count)."""
    with open("/proc/self/io") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("rchar:"))


def test_a_partition_task_reads_only_its_share_of_the_band(tmp_path):
    """Sorted signature files: partition p of P reads ~1/P of a band; the old layout made each read all of it."""
    n_docs, n_parts, band = 20_000, 8, 3
    new = planted_signature_files(tmp_path / "sorted", n_docs=n_docs, n_shards=4)
    old = planted_signature_files(tmp_path / "legacy", n_docs=n_docs, n_shards=4, layout="legacy")
    band_bytes = n_docs * ROWS * 8
    read, pairs = {}, {}
    for layout, sigs in (("sorted", new), ("legacy", old)):
        read[layout], pairs[layout] = [], []
        for p in range(n_parts):
            out = str(tmp_path / f"{layout}_p{p}.npy")
            r0 = _rchar()
            lsh_band(sigs, band, out, part=p, n_parts=n_parts)
            read[layout].append(_rchar() - r0)
            pairs[layout] += map(tuple, np.load(out).tolist())
    # each partition: its 1/8 of the band (+ 4-byte row ids, headers, the binary search), not the band
    assert max(read["sorted"]) < 1.5 * band_bytes / n_parts, read["sorted"]
    assert sum(read["sorted"]) < 1.3 * band_bytes
    assert min(read["legacy"]) >= band_bytes  # before: every partition task read the whole band
    lsh_band(old, band, str(tmp_path / "whole.npy"))
    whole = sorted(map(tuple, np.load(tmp_path / "whole.npy").tolist()))
    assert sorted(pairs["sorted"]) == sorted(pairs["legacy"]) == whole and len(whole) > 100

    # the same clusters as before: old files, whole bands, single node vs sorted files, partitioned
    cluster(pair_files(tmp_path / "old-pairs", old, 1), str(tmp_path / "before.parquet"))
    cluster_partitioned(pair_files(tmp_path / "new-pairs", new, n_parts), str(tmp_path / "after"), n_parts,
                        str(tmp_path / "cc"), None, None, serial)
    assert sorted_rows(tmp_path / "after") == sorted_rows(tmp_path / "before.parquet")
    assert len(sorted_rows(tmp_path / "before.parquet")) > 1000


def test_partitioned_clusters_on_ray_equal_single_node(tmp_path, ray_cluster):
    sigs = planted_signature_files(tmp_path)
    single = cluster(pair_files(tmp_path, sigs, 1), str(tmp_path / "single.parquet"))
    assert single["clusters"] > 200 and single["largest_cluster"] >= 5
    dist = cluster_partitioned(pair_files(tmp_path, sigs, 3), str(tmp_path / "dist.parquet"), n_parts=4,
                               work_dir=str(tmp_path / "cc-work"))
    assert {k: dist[k] for k in single} == single and dist["partitions"] == 4 and dist["rounds"] >= 2
    assert sorted_rows(tmp_path / "dist.parquet") == sorted_rows(tmp_path / "single.parquet")
    assert len(list((tmp_path / "dist.parquet").glob("part-*.parquet"))) == 4
    assert not (tmp_path / "cc-work").exists()
    # finalize reads the directory of parts with a per-shard filter, like the single file
    t = pq.read_table(tmp_path / "dist.parquet", columns=["row", "drop"], filters=[("shard", "=", 2)])
    ref = pq.read_table(tmp_path / "single.parquet", columns=["row", "drop"], filters=[("shard", "=", 2)])
    assert sorted(zip(*t.to_pydict().values())) == sorted(zip(*ref.to_pydict().values()))


def test_long_chains_and_random_graphs_converge_to_the_smallest_key(tmp_path):
    rng = np.random.default_rng(1)
    n = 4000
    keys = np.sort(rng.choice(2**40, size=n, replace=False)).astype(np.uint64)
    perm = rng.permutation(n)
    chain = np.stack([perm[:999], perm[1:1000]], axis=1)  # one path of 1,000 nodes in random key order
    rand = rng.integers(1000, n, size=(1500, 2))  # a sparse random graph on the rest
    edges = np.concatenate([chain, rand])
    edges = edges[edges[:, 0] != edges[:, 1]]
    lo, hi = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    for k, part in enumerate(np.array_split(np.stack([keys[lo], keys[hi]], axis=1), 5)):
        np.save(tmp_path / f"pairs{k}.npy", part)
    paths = [str(tmp_path / f"pairs{k}.npy") for k in range(5)]
    single = cluster(paths, str(tmp_path / "single.parquet"))
    dist = cluster_partitioned(paths, str(tmp_path / "dist.parquet"), n_parts=3,
                               work_dir=str(tmp_path / "w"), map_fn=serial)
    assert {k: dist[k] for k in single} == single and single["largest_cluster"] >= 1000
    assert sorted_rows(tmp_path / "dist.parquet") == sorted_rows(tmp_path / "single.parquet")
    labels = connected_components(lo, hi, n)
    assert single["clusters"] == len(set(labels[np.unique(edges)].tolist()))
    # no pairs at all: an empty table with the schema
    np.save(tmp_path / "none.npy", np.empty((0, 2), np.uint64))
    empty = cluster_partitioned([str(tmp_path / "none.npy")], str(tmp_path / "e.parquet"), 2,
                                str(tmp_path / "w2"), map_fn=serial)
    assert empty["clusters"] == 0 and read_cluster_table(str(tmp_path / "e.parquet")).num_rows == 0


def test_jaccard_check_drops_pairs_that_share_too_few_hashes(tmp_path):
    sigs = planted_signature_files(tmp_path, n_docs=2000, n_shards=4, seed=3)
    pairs = pair_files(tmp_path, sigs, 1)
    allp = np.concatenate([np.load(p) for p in pairs])
    kept = jaccard_filter(allp, sigs, 0.5)
    # planted members copy ~30% of the bands: some pairs are far below 0.5, some above
    assert 0 < len(kept) < len(allp)
    off = cluster(pairs, str(tmp_path / "off.parquet"))
    on = cluster(pairs, str(tmp_path / "on.parquet"), signature_paths=sigs, jaccard_threshold=0.5)
    assert on["pairs_below_jaccard"] == len(allp) - len(kept)
    assert on["docs_in_clusters"] < off["docs_in_clusters"]
    dist = cluster_partitioned(pairs, str(tmp_path / "d.parquet"), 3, str(tmp_path / "w"),
                               signature_paths=sigs, jaccard_threshold=0.5, map_fn=serial)
    assert {k: dist[k] for k in on} == on
    assert sorted_rows(tmp_path / "d.parquet") == sorted_rows(tmp_path / "on.parquet")
    # threshold 0: every candidate pair agrees on ≥ one band, so nothing is dropped
    assert len(jaccard_filter(allp, sigs, 0.0)) == len(allp)
