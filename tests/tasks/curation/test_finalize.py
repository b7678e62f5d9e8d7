"""finalize_shard (tasks/curation/finalize.py) end to end on small pre-dedup Parquet shards.

Shards are generated here from real C4 text: planted near-duplicates (one
edited copy across shards) and planted PII (fictional e-mails/phones, public
resolver IPs); column values other than `text` are generated placeholders.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.curation.finalize import finalize_shard
from tasks.curation.funnel import merge_stats
from tasks.curation.minhash import cluster, compute_signatures, lsh_band

C4 = Path(__file__).resolve().parents[3] / "data" / "text" / "llamafactory_c4_demo.jsonl"
PRE_SCHEMA = pa.schema([
    ("id", pa.string()), ("url", pa.string()), ("domain", pa.string()), ("date", pa.string()),
    ("warc_file", pa.string()), ("text", pa.string()), ("language", pa.string()),
    ("language_score", pa.float64()),
])
CURATED = [f.name for f in PRE_SCHEMA] + ["dup_cluster_size", "quality_score", "pii_replacements"]


class Cfg:
    minhash_ngram, minhash_buckets, minhash_hashes_per_bucket, minhash_seed = 5, 14, 8, 1
    pii_email = pii_ip = pii_phone = True


def shard_table(texts: list[str], shard: int) -> pa.Table:
    rows = [{"id": f"<urn:uuid:generated-{shard}-{i}>", "url": f"https://example.com/{shard}/{i}",
             "domain": "example.com", "date": "2024-03-01T00:00:00Z", "warc_file": f"generated_{shard}.warc.gz",
             "text": t, "language": "en", "language_score": 0.9} for i, t in enumerate(texts)]
    return pa.Table.from_pylist(rows, schema=PRE_SCHEMA)


def dedup(tmp_path: Path, paths: list[Path]) -> str:
    sigs = []
    for i, p in enumerate(paths):
        sigs.append(str(tmp_path / f"sig{i}.npz"))
        compute_signatures(str(p), sigs[-1], i, Cfg())
    pairs = []
    for band in range(14):
        pairs.append(str(tmp_path / f"band{band}.npy"))
        lsh_band(sigs, band, pairs[-1])
    out = str(tmp_path / "duplicates.parquet")
    cluster(pairs, out)
    return out


@pytest.fixture(scope="module")
def c4() -> list[str]:
    return [json.loads(line)["text"] for line in C4.read_text().splitlines()]


def test_end_to_end_two_shards(tmp_path, c4):
    docs = [d for d in c4 if len(d.split()) >= 200]
    original = docs[0]
    words = original.split()
    copy = " ".join(words[:100] + "An extra sentence the generator inserted.".split() + words[100:])
    with_pii = docs[1] + "\nQuestions? Mail help.desk@example.org or call (202) 555-0143, server 8.8.8.8."
    shard0 = [original, docs[2], with_pii]
    shard1 = [docs[3], copy, original, docs[4]]  # a near copy and an exact copy of shard0's doc 0
    paths = []
    for i, texts in enumerate([shard0, shard1]):
        paths.append(tmp_path / f"pre_{i}.parquet")
        pq.write_table(shard_table(texts, i), paths[-1])
    dup_path = dedup(tmp_path, paths)

    out0, out1 = tmp_path / "curated" / "s0.parquet", tmp_path / "curated" / "s1.parquet"
    st0 = finalize_shard(str(paths[0]), 0, dup_path, str(out0), Cfg())
    st1 = finalize_shard(str(paths[1]), 1, dup_path, str(out1), Cfg())
    t0, t1 = pq.read_table(out0), pq.read_table(out1)

    assert t0.column_names == CURATED and t0.schema.field("dup_cluster_size").type == pa.int64()
    # shard 0 keeps all three, and its doc 0 stands for a cluster of three
    assert t0.num_rows == 3 and t0.column("dup_cluster_size").to_pylist() == [3, 1, 1]
    # shard 1 lost the near copy and the exact copy; the rest keep their provenance
    assert t1.column("url").to_pylist() == ["https://example.com/1/0", "https://example.com/1/3"]
    assert t1.column("dup_cluster_size").to_pylist() == [1, 1]
    # PII scrubbed in text, counted per document and per kind
    text = t0.column("text").to_pylist()[2]
    assert "help.desk@example.org" not in text and "555-0143" not in text and "8.8.8.8" not in text
    assert text.endswith("Mail <EMAIL> or call <PHONE>, server <IP>.")
    assert t0.column("pii_replacements").to_pylist()[2] >= 3
    assert st0["stages"][0] == {"stage": "minhash_dedup", "in": 3, "kept": 3, "dropped": {"near_duplicate": 0}}
    assert st1["stages"][0] == {"stage": "minhash_dedup", "in": 4, "kept": 2, "dropped": {"near_duplicate": 2}}
    pii = st0["stages"][-1]
    assert pii["stage"] == "pii" and pii["in"] == pii["kept"] == 3 and pii["dropped"] == {}
    assert pii["replaced"]["email"] >= 1 and pii["replaced"]["phone"] >= 1 and pii["replaced"]["ip"] == 1
    assert sum(pii["replaced"].values()) == sum(t0.column("pii_replacements").to_pylist())
    merged = merge_stats([st0, st1])
    assert [s["stage"] for s in merged["stages"]] == ["minhash_dedup", "quality_classifier", "line_dedup", "pii"]
    assert merged["stages"][0]["kept"] == 5 and merged["stages"][0]["dropped"] == {"near_duplicate": 2}
    assert not list((tmp_path / "curated").glob("*.tmp-*"))


def test_empty_shard_writes_full_schema(tmp_path):
    src = tmp_path / "pre.parquet"
    pq.write_table(shard_table([], 0), src)
    stats = finalize_shard(str(src), 0, None, str(tmp_path / "out.parquet"), Cfg())
    t = pq.read_table(tmp_path / "out.parquet")
    assert t.num_rows == 0 and t.column_names == CURATED
    assert stats["stages"][0]["in"] == 0 and stats["stages"][-1]["replaced"] == dict.fromkeys(
        ("email", "ip", "ssn", "card", "address", "phone"), 0)


def test_dedup_off_keeps_everything_and_pii_flags_apply(tmp_path, c4):
    src = tmp_path / "pre.parquet"
    pq.write_table(shard_table([c4[0], c4[0], "mail a@example.com"], 0), src)

    class NoPii(Cfg):
        pii_email = False

    finalize_shard(str(src), 0, None, str(tmp_path / "out.parquet"), NoPii())
    t = pq.read_table(tmp_path / "out.parquet")
    assert t.num_rows == 3 and t.column("dup_cluster_size").to_pylist() == [1, 1, 1]
    assert t.column("text").to_pylist()[2] == "mail a@example.com"


def test_bad_inputs_are_refused_clearly(tmp_path, c4):
    src = tmp_path / "pre.parquet"
    pq.write_table(shard_table([c4[0]], 0), src)
    with pytest.raises(FileNotFoundError, match="cluster table"):
        finalize_shard(str(src), 0, str(tmp_path / "missing.parquet"), str(tmp_path / "o.parquet"), Cfg())
    with pytest.raises(FileNotFoundError, match="pre-dedup shard"):
        finalize_shard(str(tmp_path / "nope.parquet"), 0, None, str(tmp_path / "o.parquet"), Cfg())
    # a cluster table naming rows the shard does not have (signatures of another version of it)
    table = pa.table({"shard": pa.array([0, 0], pa.int32()), "row": pa.array([0, 5], pa.int64()),
                      "cluster_id": pa.array([0, 0], pa.int64()), "cluster_size": pa.array([2, 2], pa.int64()),
                      "drop": [False, True]})
    pq.write_table(table, tmp_path / "dups.parquet")
    with pytest.raises(ValueError, match="re-run the minhash steps"):
        finalize_shard(str(src), 0, str(tmp_path / "dups.parquet"), str(tmp_path / "o.parquet"), Cfg())
    assert not (tmp_path / "o.parquet").exists()


def test_chain_runs_in_ray_workers_like_in_process(tmp_path, c4, ray_cluster):
    """The stage functions are plain file-in/file-out: Ray workers give the same curated shards.

    Uses the real `CurateConfig` (the test's own Cfg class cannot be unpickled in a worker).
    """
    from conf.curate import CurateConfig

    ray = ray_cluster
    cfg = CurateConfig()
    texts = [c4[:20] + [c4[3]], c4[20:40] + [c4[5] + " Mail a.b@example.com."]]
    pre = []
    for i, t in enumerate(texts):
        pre.append(str(tmp_path / f"pre_{i}.parquet"))
        pq.write_table(shard_table(t, i), pre[-1])
    sig = ray.remote(compute_signatures)
    band = ray.remote(lsh_band)
    fin = ray.remote(finalize_shard)
    sigs = [str(tmp_path / f"sig{i}.npz") for i in range(2)]
    assert sum(ray.get([sig.remote(pre[i], sigs[i], i, cfg) for i in range(2)])) == 42
    pairs = [str(tmp_path / f"band{b}.npy") for b in range(14)]
    ray.get([band.remote(sigs, b, pairs[b]) for b in range(14)])
    stats = ray.get(ray.remote(cluster).remote(pairs, str(tmp_path / "dups.parquet")))
    assert stats["docs_dropped"] == 2
    outs = ray.get([fin.remote(pre[i], i, str(tmp_path / "dups.parquet"), str(tmp_path / f"ray_{i}.parquet"), cfg)
                    for i in range(2)])
    assert [o["stages"][0]["dropped"]["near_duplicate"] for o in outs] == [1, 1]

    local = tmp_path / "local"
    local.mkdir()
    dup_local = dedup(local, [Path(p) for p in pre])
    for i in range(2):
        finalize_shard(pre[i], i, dup_local, str(local / f"out_{i}.parquet"), Cfg())
        assert pq.read_table(local / f"out_{i}.parquet").equals(pq.read_table(tmp_path / f"ray_{i}.parquet"))
