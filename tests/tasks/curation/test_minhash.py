"""MinHash near-dedup (tasks/curation/minhash.py) on real C4 text from data/text.

The near-duplicates are generated in the tests (real documents with a sentence
inserted, words changed or a sentence deleted); the 300 C4 documents are real.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.curation.minhash import (
    cluster, compute_signatures, connected_components, lsh_band, normalize_text, shingle_hashes, signatures,
)

C4 = Path(__file__).resolve().parents[3] / "data" / "text" / "llamafactory_c4_demo.jsonl"
BANDS, ROWS = 14, 8


class Cfg:
    minhash_ngram = 5
    minhash_buckets = BANDS
    minhash_hashes_per_bucket = ROWS
    minhash_seed = 1


@pytest.fixture(scope="module")
def c4() -> list[str]:
    if not C4.exists():
        pytest.fail(f"real sample data missing: {C4} (see data/README.md)")
    return [json.loads(line)["text"] for line in C4.read_text().splitlines()]


def long_docs(docs: list[str], n: int, min_words: int = 250) -> list[int]:
    return [i for i, d in enumerate(docs) if len(d.split()) >= min_words][:n]


def near_duplicate(text: str, kind: int) -> str:
    """Generated variant of a real document: one small edit of three kinds."""
    words = text.split()
    k = len(words) // 2
    if kind == 0:  # insert a sentence
        return " ".join(words[:k] + "This sentence was added to the copy by the generator.".split() + words[k:])
    if kind == 1:  # change three scattered words
        for j in (k // 2, k, k + k // 2):
            words[j] = "CHANGED"
        return " ".join(words)
    return " ".join(words[:k] + words[k + 8:])  # delete a sentence-sized span


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    w = normalize_text(text).split()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def run_dedup(tmp_path: Path, shards: list[list[str | None]]) -> tuple[dict, "pa.Table", list[int]]:
    """Write shards as pre-dedup Parquet, run signatures → 14 bands → cluster; return (stats, table, signed)."""
    sig_paths, signed = [], []
    for i, texts in enumerate(shards):
        src = tmp_path / f"pre_{i:05d}.parquet"
        pq.write_table(pa.table({"text": pa.array(texts, pa.string())}), src)
        signed.append(compute_signatures(str(src), str(tmp_path / f"sig_{i:05d}.npz"), i, Cfg()))
        sig_paths.append(str(tmp_path / f"sig_{i:05d}.npz"))
    pair_paths = []
    for band in range(BANDS):
        lsh_band(sig_paths, band, str(tmp_path / f"band_{band:03d}.npy"))
        pair_paths.append(str(tmp_path / f"band_{band:03d}.npy"))
    stats = cluster(pair_paths, str(tmp_path / "clusters.parquet"))
    return stats, pq.read_table(tmp_path / "clusters.parquet"), signed


def test_normalisation_gives_datatrove_words(c4):
    from datatrove.utils.text import simplify_text

    same = sum(normalize_text(d).split() == simplify_text(d).split() for d in c4)
    assert same >= 0.98 * len(c4)
    assert normalize_text("Héllo, WORLD! It’s 3.14 —\u00a0“ok”").split() == ["hello", "world", "it", "s", "0", "ok"]


def test_shingle_hashes_are_the_word_5grams(c4):
    docs = c4[:40]
    hashes, doc = shingle_hashes(docs, 5)
    assert np.all(np.diff(doc) >= 0)
    for i, text in enumerate(docs):
        mine = hashes[doc == i]
        assert mine.size == max(0, len(normalize_text(text).split()) - 4)
        assert len(set(mine.tolist())) == len(shingles(text))  # no collisions, no misses
    # the same 5-gram hashes the same in any document and position; docs never leak into each other
    h, d = shingle_hashes(["alpha beta gamma delta epsilon", "x y alpha beta gamma delta epsilon", "a b c d"], 5)
    assert d.tolist() == [0, 1, 1, 1] and h[0] == h[3]


def test_signature_agreement_estimates_jaccard(c4):
    errors = []
    for i in long_docs(c4, 40, 150):
        a, b = c4[i], near_duplicate(c4[i], i % 3)
        jac = len(shingles(a) & shingles(b)) / len(shingles(a) | shingles(b))
        _, sig = signatures([a, b], Cfg())
        errors.append((sig[0] == sig[1]).mean() - jac)
    assert abs(np.mean(errors)) < 0.03 and np.std(errors) < 0.06


def test_signatures_deterministic_and_seeded(c4):
    _, s1 = signatures(c4[:20], Cfg())
    _, s2 = signatures(c4[:20], Cfg())
    other = Cfg()
    other.minhash_seed = 2
    _, s3 = signatures(c4[:20], other)
    assert s1.shape == (20, BANDS * ROWS) and s1.dtype == np.uint64
    assert np.array_equal(s1, s2) and not np.array_equal(s1, s3)


def test_short_and_missing_texts_get_no_signature(tmp_path, c4):
    src = tmp_path / "pre.parquet"
    pq.write_table(pa.table({"text": pa.array([c4[0], "only four words here", None, "", c4[1]], pa.string())}), src)
    assert compute_signatures(str(src), str(tmp_path / "s.npz"), 7, Cfg()) == 2
    with np.load(tmp_path / "s.npz") as z:
        assert int(z["shard"]) == 7 and int(z["n_docs"]) == 5
        assert z["rows"].tolist() == [0, 4]
        assert sorted(f for f in z.files if f.startswith("band_")) == sorted(
            f"band_{b:03d}{x}" for b in range(BANDS) for x in ("", "_rows", "_hi"))
        assert z["band_013"].shape == (2, ROWS) and sorted(z["band_013_rows"].tolist()) == [0, 4]
        assert np.all(np.diff(z["band_013_hi"].astype(np.int64)) >= 0)  # sorted by the partition hash
    # a shard where nothing can be signed still yields a valid (empty) file that lsh_band reads
    pq.write_table(pa.table({"text": pa.array(["too short", None], pa.string())}), tmp_path / "short.parquet")
    assert compute_signatures(str(tmp_path / "short.parquet"), str(tmp_path / "short.npz"), 8, Cfg()) == 0
    assert lsh_band([str(tmp_path / "s.npz"), str(tmp_path / "short.npz")], 0, str(tmp_path / "p.npy")) == 0
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(FileNotFoundError, match="pre-dedup shard"):
        compute_signatures(str(tmp_path / "missing.parquet"), str(tmp_path / "m.npz"), 0, Cfg())


def test_distinct_real_documents_are_all_kept(tmp_path, c4):
    stats, table, signed = run_dedup(tmp_path, [c4[:100], c4[100:200], c4[200:]])
    assert sum(signed) == 300
    assert stats["docs_dropped"] == 0 and stats["clusters"] == 0 and table.num_rows == 0


def test_near_duplicates_across_shards_one_kept_per_cluster(tmp_path, c4):
    planted = long_docs(c4, 18)
    assert len(planted) == 18
    shard0 = c4[:150]
    shard1 = c4[150:] + [near_duplicate(c4[i], j % 3) for j, i in enumerate(planted)]
    shard2 = [c4[planted[0]], near_duplicate(c4[planted[1]], 0) + " And another generated sentence at the end."]
    stats, table, _ = run_dedup(tmp_path, [shard0, shard1, shard2])

    rows = table.to_pylist()
    by_cluster: dict[int, list[dict]] = {}
    for r in rows:
        by_cluster.setdefault(r["cluster_id"], []).append(r)
    # every planted copy sits in the cluster of its original, wherever the original is
    key_of = {(r["shard"], r["row"]): r["cluster_id"] for r in rows}
    where = lambda i: (0, i) if i < 150 else (1, i - 150)  # noqa: E731
    for j, i in enumerate(planted):
        assert key_of[where(i)] == key_of[(1, 150 + j)], f"planted copy of C4 doc {i} not clustered"
    assert key_of[(2, 0)] == key_of[where(planted[0])]
    assert key_of[(2, 1)] == key_of[where(planted[1])]
    # exactly one kept per cluster: the smallest (shard, row); sizes agree
    for cid, members in by_cluster.items():
        kept = [m for m in members if not m["drop"]]
        assert len(kept) == 1
        assert (kept[0]["shard"], kept[0]["row"]) == min((m["shard"], m["row"]) for m in members)
        assert cid == (kept[0]["shard"] << 32 | kept[0]["row"])
        assert all(m["cluster_size"] == len(members) for m in members)
    assert stats["clusters"] == len(by_cluster) == 18
    assert stats["docs_dropped"] == 20  # 18 copies in shard 1 + 2 in shard 2
    assert not any(r["drop"] for r in rows if r["shard"] == 0)


def write_sig(path: Path, shard: int, rows: list[int], band_rows: np.ndarray) -> str:
    np.savez(path, shard=np.asarray(shard), n_docs=np.asarray(max(rows) + 1), rows=np.asarray(rows),
             band_000=band_rows.astype(np.uint64))
    return str(path)


def test_lsh_band_pairs_identical_band_rows_only(tmp_path):
    a = write_sig(tmp_path / "a.npz", 0, [0, 1, 2], np.array([[1, 2], [3, 4], [1, 2]]))
    b = write_sig(tmp_path / "b.npz", 1, [5, 6], np.array([[1, 2], [1, 3]]))
    assert lsh_band([a, b], 0, str(tmp_path / "p.npy")) == 2
    pairs = np.load(tmp_path / "p.npy")
    assert pairs.dtype == np.uint64
    assert sorted(map(tuple, pairs.tolist())) == [(0, 2), (0, (1 << 32) | 5)]
    assert lsh_band([], 0, str(tmp_path / "none.npy")) == 0
    with pytest.raises(ValueError, match="band_003"):
        lsh_band([a], 3, str(tmp_path / "x.npy"))


def test_cluster_joins_pairs_of_different_bands(tmp_path):
    key = lambda s, r: (s << 32) | r  # noqa: E731
    np.save(tmp_path / "b0.npy", np.array([[key(0, 4), key(1, 2)]], dtype=np.uint64))
    np.save(tmp_path / "b1.npy", np.array([[key(1, 2), key(2, 0)], [key(3, 1), key(3, 9)]], dtype=np.uint64))
    stats = cluster([str(tmp_path / "b0.npy"), str(tmp_path / "b1.npy")], str(tmp_path / "c.parquet"))
    assert stats == {"pairs": 3, "clusters": 2, "docs_in_clusters": 5, "docs_dropped": 3, "largest_cluster": 3}
    rows = {(r["shard"], r["row"]): r for r in pq.read_table(tmp_path / "c.parquet").to_pylist()}
    assert [k for k, r in rows.items() if not r["drop"]] == [(0, 4), (3, 1)]
    assert rows[(2, 0)]["cluster_id"] == key(0, 4) and rows[(2, 0)]["cluster_size"] == 3
    empty = cluster([], str(tmp_path / "e.parquet"))
    assert empty["clusters"] == 0 and pq.read_table(tmp_path / "e.parquet").num_rows == 0


def test_connected_components_matches_plain_union_find():
    rng = np.random.default_rng(0)
    n = 2000
    u, v = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(u.tolist(), v.tolist()):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    labels = connected_components(u, v, n)
    roots = np.array([find(x) for x in range(n)])
    # same partition, and each label is the smallest member of its component
    assert all(labels[x] == labels[y] for x, y in zip(u, v))
    assert len(set(labels.tolist())) == len(set(roots.tolist()))
    for lab in set(labels.tolist()):
        members = np.flatnonzero(labels == lab)
        assert lab == members.min() and len(set(roots[members].tolist())) == 1
