"""The `tokenize` flow end to end on a real Prefect API, real Ray and a real MLflow store.

Input: Parquet shards GENERATED here from real C4 documents (see tests/tasks/test_tokenize.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq

from conf import load, preset_names
from conf.tokenize import TokenizeConfig
from lm.tokenizer import Tokenizer
from lm.tokens import TokenShards, read_meta
from tests.support.curated_data import write_generated_curated


OVERRIDES = {"val_fraction": 0.1, "compression_docs": 50, "batch_docs": 32}


def _shard_mtimes(tokens: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(tokens.glob("*.bin"))}


def test_tokenize_flow_on_ray_tracks_in_mlflow_and_skips_when_done(repo_data, tmp_path, prefect_api,
                                                                   ray_cluster, mlflow_uri):
    import mlflow

    from flows.tokenize import run_tokenize

    data = tmp_path / "curate"
    sources = write_generated_curated(repo_data, data, n_files=3, per_file=40)
    # One damaged input: counted and named in the manifest, the run goes on.
    broken = data / "curated" / "generated_c4_00003.parquet"
    broken.write_bytes(sources[0].read_bytes()[:200])
    out = tmp_path / "tokenize"

    meta = run_tokenize(str(data), str(out), preset=None, vocab_size=1024, overrides=OVERRIDES)

    tokens = out / "tokens"
    assert read_meta(out) == meta == json.loads((tokens / "meta.json").read_text())
    tok = Tokenizer.load(out / "tokenizer.json")
    assert meta["tokenizer_sha256"] == tok.sha256() and meta["vocab_size"] == 1024 and meta["dtype"] == "uint16"
    assert [f["source"] for f in meta["failed_sources"]] == [str(broken.resolve())]
    assert meta["sources"] == [str(p.resolve()) for p in [*sources, broken]]
    # Every good document is in exactly one split, as BOS + its ids.
    texts = [t for p in sources for t in pq.read_table(p)["text"].to_pylist()]
    train, val = TokenShards(out, "train"), TokenShards(out, "val")
    assert train.n_docs + val.n_docs == len(texts) == 120 and val.n_docs > 0
    decoded = [tok.decode(d[1:].tolist()) for ds in (train, val) for d in ds.iter_docs()]
    assert sorted(decoded) == sorted(texts)
    assert train.n_tokens + val.n_tokens == meta["n_tokens"]
    assert train.load_tokenizer().sha256() == tok.sha256()
    assert {r["tokenizer"] for r in meta["compression"]} == {"crawl2chat", "gpt2"}
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]

    # MLflow: one `tokenize` run with params, tags, metrics, compression table and artifacts.
    runs = mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")
    assert [r.info.run_name for r in runs] == ["tokenize"]
    run = runs[0]
    assert run.info.run_id == meta["mlflow_run_id"]
    assert run.data.params["vocab_size"] == "1024" and run.data.params["val_fraction"] == "0.1"
    assert run.data.tags["stage"] == "tokenize" and run.data.tags.get("prefect_flow_run_id")
    assert run.data.metrics["val_n_docs"] == val.n_docs
    assert run.data.metrics["bytes_per_token_gpt2"] > run.data.metrics["bytes_per_token_crawl2chat"] > 2
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"compression.json", "tokenizer.json", "meta.json"} <= arts
    table = mlflow.load_table("compression.json", run_ids=[run.info.run_id])
    assert list(table["tokenizer"]) == ["crawl2chat", "gpt2"]

    # Re-run with the same inputs: nothing is rewritten, no new MLflow run.
    before = _shard_mtimes(tokens)
    again = run_tokenize(str(data), str(out), preset=None, vocab_size=1024, overrides=OVERRIDES)
    assert again == meta and _shard_mtimes(tokens) == before
    assert len(mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")) == 1

    # Another vocabulary overwrites tokenizer and shards; going back to 1024 must not
    # trust the Prefect cache of the first run (its files were replaced), and a lost
    # shard is redone too.
    other = run_tokenize(str(data), str(out), preset=None, vocab_size=700, overrides=OVERRIDES)
    assert other["vocab_size"] == 700 and other["tokenizer_sha256"] != meta["tokenizer_sha256"]
    os.remove(tokens / "train_00001.bin")
    third = run_tokenize(str(data), str(out), preset=None, vocab_size=1024, overrides=OVERRIDES)
    assert third["tokenizer_sha256"] == meta["tokenizer_sha256"]
    assert [s["n_tokens"] for s in third["shards"]] == [s["n_tokens"] for s in meta["shards"]]
    tok = TokenShards(out, "train").load_tokenizer()
    decoded = [tok.decode(d[1:].tolist()) for split in ("train", "val") for d in TokenShards(out, split).iter_docs()]
    assert sorted(decoded) == sorted(texts)
    assert len(mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")) == 3


def test_every_preset_has_a_valid_tokenize_section():
    for name in preset_names():
        cfg = load(TokenizeConfig, name)
        assert 512 <= cfg.vocab_size <= 1 << 17, name


def test_cli_rejects_a_folder_without_parquet(tmp_path, capsys):
    from crawl2chat.cli import main

    rc = main(["tokenize", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--preset", ""])
    assert rc == 2
    assert "no Parquet files" in capsys.readouterr().err
