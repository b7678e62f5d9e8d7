"""tasks/tokenize.py on Parquet files generated from real C4 text (no Prefect needed)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lm.tokenizer import Tokenizer
from lm.tokens import TokenShards, write_meta
from tasks.tokenize import (build_meta, compression_markdown, compression_report, effective_val_fraction,
                            find_gpt2_files,
                            find_parquet, held_out_texts, is_val, iter_documents, load_gpt2,
                            run_compression, tokenize_shard, train_tokenizer)
from tests.support.curated_data import write_generated_curated


@pytest.fixture(scope="module")
def curated(repo_data, tmp_path_factory) -> list[Path]:
    return write_generated_curated(repo_data, tmp_path_factory.mktemp("curate"))


@pytest.fixture(scope="module")
def trained(curated, tmp_path_factory) -> dict:
    return train_tokenizer(curated, vocab_size=1024, out_dir=tmp_path_factory.mktemp("tok"), max_chars=10**9,
                           val_fraction=0.1)


def test_find_parquet_accepts_curate_dir_or_plain_folder(curated, tmp_path):
    root = curated[0].parent.parent
    assert find_parquet(root) == curated
    assert find_parquet(root / "curated") == curated
    assert find_parquet(curated[1]) == [curated[1]]
    with pytest.raises(FileNotFoundError, match="no Parquet"):
        find_parquet(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_parquet(tmp_path / "nope")


def test_find_parquet_follows_the_curate_manifest(curated, tmp_path):
    root = tmp_path / "curate"
    (root / "curated").mkdir(parents=True)
    for p in curated[:2]:
        (root / "curated" / p.name).write_bytes(p.read_bytes())
    (root / "curated" / "stale_generated.parquet").write_bytes(curated[2].read_bytes())
    manifest = {"stage": "curate", "shards": [{"path": curated[1].name}, {"path": curated[0].name}]}
    (root / "curated" / "manifest.json").write_text(json.dumps(manifest))
    assert find_parquet(root) == [root / "curated" / curated[1].name, root / "curated" / curated[0].name]
    manifest["shards"].append({"path": "gone.parquet"})
    (root / "curated" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="missing"):
        find_parquet(root)
    # A manifest that lists no shards (older/other format): every Parquet file in the folder.
    (root / "curated" / "manifest.json").write_text(json.dumps({"stage": "curate", "documents": 0}))
    assert len(find_parquet(root)) == 3
    (root / "curated" / "manifest.json").write_text("{broken")
    with pytest.raises(ValueError, match="unreadable"):
        find_parquet(root)


def test_min_val_docs_holds_out_documents_of_a_tiny_corpus(tmp_path):
    path = tmp_path / "generated_tiny.parquet"
    keys = [f"doc-{i}" for i in range(5)]
    pq.write_table(pa.table({"id": keys, "text": [f"text {i}" for i in range(5)]}), path)
    assert not any(is_val(k, 0.01) for k in keys)  # the plain hash split holds out nothing here
    for k in (1, 2, 4, 9):
        frac = effective_val_fraction([path], 0.01, min_val_docs=k)
        assert sum(is_val(key, frac) for key in keys) == min(k, 4)  # always leaves one to train on
    assert effective_val_fraction([path], 0.01, min_val_docs=0) == 0.01
    assert effective_val_fraction([path], 0.9, min_val_docs=1) == 0.9  # already enough


def test_is_val_is_deterministic_and_near_the_fraction():
    keys = [f"doc-{i}" for i in range(20_000)]
    picks = [is_val(k, 0.05) for k in keys]
    assert picks == [is_val(k, 0.05) for k in keys]
    assert 0.04 < sum(picks) / len(keys) < 0.06
    assert not any(is_val(k, 0.0) for k in keys[:1000])
    # A different seed gives a different (independent) split.
    assert picks != [is_val(k, 0.05, seed="other") for k in keys]
    # Larger fractions contain the smaller ones: raising val_fraction only moves docs train → val.
    assert all(is_val(k, 0.2) for k, p in zip(keys, picks) if p)


def test_train_tokenizer_excludes_val_and_respects_max_chars(curated, trained, tmp_path):
    assert trained["vocab_size"] == 1024
    assert Tokenizer.load(trained["path"]).sha256() == trained["sha256"]
    n_val = sum(is_val(k, 0.1) for p in curated for docs in iter_documents(p) for k, _ in docs)
    assert trained["n_docs"] == 180 - n_val
    capped = train_tokenizer(curated, vocab_size=600, out_dir=tmp_path, max_chars=20_000, val_fraction=0.1)
    assert 20_000 <= capped["n_chars"] < 20_000 + 50_000
    assert capped["n_docs"] < 30
    again = train_tokenizer(curated, vocab_size=1024, out_dir=tmp_path / "again", max_chars=10**9,
                            val_fraction=0.1)
    assert again["sha256"] == trained["sha256"]  # deterministic


def test_tokenize_shard_round_trips_documents_with_bos(curated, trained, tmp_path):
    tok = Tokenizer.load(trained["path"])
    res = tokenize_shard(curated[0], trained["path"], tmp_path / "tokens", 0, val_fraction=0.1, batch_docs=16)
    assert res["error"] is None
    by_split = {s["split"]: s for s in res["shards"]}
    assert set(by_split) == {"train", "val"}
    assert by_split["train"]["n_docs"] + by_split["val"]["n_docs"] == 60
    meta = build_meta(tok, trained["path"], tmp_path / "tokens", [res])
    write_meta(tmp_path / "tokens", meta)
    assert meta["dtype"] == "uint16" and meta["n_tokens"] == sum(s["n_tokens"] for s in res["shards"])
    # Every document decodes back to its exact text, in file order, in its split.
    docs = [d for batch in iter_documents(curated[0]) for d in batch]
    for split in ("train", "val"):
        ds = TokenShards(tmp_path / "tokens", split)
        want = [t for k, t in docs if is_val(k, 0.1) == (split == "val")]
        got = list(ds.iter_docs())
        assert len(got) == len(want) == by_split[split]["n_docs"]
        assert all(int(d[0]) == tok.bos_id and tok.bos_id not in d[1:] for d in got)
        assert [tok.decode(d[1:].tolist()) for d in got] == want
        assert ds.n_tokens == by_split[split]["n_tokens"]
        assert by_split[split]["n_bytes"] == sum(len(t.encode()) for t in want)


def test_tokenize_shard_counts_empty_and_survives_a_damaged_file(trained, tmp_path):
    path = tmp_path / "generated_with_empty.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c", "d"], "text": ["real words here", "", None, "more words"]}), path)
    res = tokenize_shard(path, trained["path"], tmp_path / "t", 3, val_fraction=0.0)
    assert res["skipped"] == {"empty_text": 2}
    assert [s["n_docs"] for s in res["shards"]] == [2, 0]
    assert (tmp_path / "t" / "train_00003.bin").exists() and (tmp_path / "t" / "val_00003.bin").exists()

    bad = tmp_path / "generated_damaged.parquet"
    bad.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    res = tokenize_shard(bad, trained["path"], tmp_path / "t", 4)
    assert res["shards"] == [] and "not a readable Parquet" in res["error"]
    assert not list((tmp_path / "t").glob("*00004*"))  # no partial outputs

    no_text = tmp_path / "generated_no_text.parquet"
    pq.write_table(pa.table({"body": ["x"]}), no_text)
    res = tokenize_shard(no_text, trained["path"], tmp_path / "t", 5)
    assert "no 'text' column" in res["error"]


def test_uint32_shards_when_vocab_exceeds_65536(tmp_path, trained, curated):
    """Simulate a >65536 vocabulary: manifest and reader pick uint32 from vocab_size."""
    tok = Tokenizer.load(trained["path"])
    res = tokenize_shard(curated[1], trained["path"], tmp_path, 0, val_fraction=0.0)
    meta = build_meta(tok, trained["path"], tmp_path, [res])
    assert meta["dtype"] == "uint16"
    ids = np.fromfile(tmp_path / "train_00000.bin", dtype=np.uint16).astype(np.uint32)
    ids.tofile(tmp_path / "train_00000.bin")
    meta.update(dtype="uint32", vocab_size=100_000)
    write_meta(tmp_path, meta)
    ds = TokenShards(tmp_path, "train")
    assert ds.dtype == np.uint32 and ds.read(0, len(ids)).tolist() == ids.tolist()


def test_gpt2_reference_loads_with_known_ids(repo_data):
    files = find_gpt2_files()
    assert files is not None, "GPT-2 vocab/merges expected beside the checkout"
    gpt2 = load_gpt2(*files)
    assert gpt2.get_vocab_size() == 50257
    assert gpt2.encode("Hello world").ids == [15496, 995]  # GPT-2's published ids


def test_compression_report_on_held_out_text(curated, trained):
    tok = Tokenizer.load(trained["path"])
    texts = held_out_texts(curated, 1000, 0.1)
    assert texts and all(is_val(k, 0.1) for p in curated for docs in iter_documents(p) for k, t in docs
                         if t in set(texts))
    rows = compression_report(tok, texts, load_gpt2(*find_gpt2_files()))
    ours, gpt2 = rows
    n_bytes = sum(len(t.encode()) for t in texts)
    assert ours["n_bytes"] == gpt2["n_bytes"] == n_bytes
    assert ours["n_tokens"] == sum(len(tok.encode(t)) for t in texts)
    assert 2.5 < ours["bytes_per_token"] < gpt2["bytes_per_token"] < 6  # 1k vocab compresses less than 50k
    assert gpt2["tokens_vs_gpt2"] == 1.0 and ours["tokens_vs_gpt2"] > 1.0
    md = compression_markdown(rows)
    assert "| gpt2 | 50257 |" in md
    assert run_compression(trained["path"], curated, 1000, 0.1) == rows
    assert run_compression(trained["path"], curated, 1000, 0.0) == []  # nothing held out


def test_iter_documents_names_the_file_on_wrong_type(tmp_path):
    path = tmp_path / "generated_int_text.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(ValueError, match="expected a string column"):
        list(iter_documents(path))
    skipped = Counter()
    path2 = tmp_path / "generated_no_id.parquet"
    pq.write_table(pa.table({"text": ["a b", "c d"]}), path2)
    assert [d for b in iter_documents(path2, skipped=skipped) for d in b] == [("a b", "a b"), ("c d", "c d")]
