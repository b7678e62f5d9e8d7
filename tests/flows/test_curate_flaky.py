"""`crawl2chat curate --crawl` against a flaky Common Crawl on 127.0.0.1: nothing lost, nothing cached wrong.

Real Prefect API, real Ray, MLflow on sqlite; the server (tests/support/flaky_http.py)
serves the repo's real sample WARCs in crawl-data/ layout and fails on a fixed
script (503/429/500 answers, bodies cut short, a stall), keyed by request
count — the same faults on every run, on any machine.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.support.flaky_http import SAMPLE_FILES, FlakyServer, crawl_mirror

CRAWL = "CC-MAIN-2099-14"
FILES = SAMPLE_FILES
# Short backoff and read timeout so a stall costs ~1.5 s; the limit is 4 failures in a row.
FAST = ["--set", "curate.remote_retries=4", "--set", "curate.remote_backoff_s=0.01",
        "--set", "curate.remote_backoff_max_s=0.05", "--set", "curate.remote_read_timeout_s=1.5",
        "--set", "curate.checkpoint_every_records=5"]  # the samples are 5-70 records long


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("cc-flaky")
    listing = crawl_mirror(root, CRAWL, FILES)
    server = FlakyServer(root)
    yield server, ["/" + p for p in listing]
    server.close()


def _curate(server, out: Path, *extra: str) -> int:
    from crawl2chat.cli import main

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    return main(["curate", "--crawl", CRAWL, "--warc-files", "4", "--base-url", server.url, "--out", str(out),
                 *FAST, *extra])


def _docs(out: Path) -> list[tuple]:
    rows = []
    for p in sorted((out / "curated").glob("*.parquet")):
        t = pq.read_table(p, columns=["id", "warc_file", "text"]).to_pylist()
        rows += [(r["id"], r["warc_file"], r["text"]) for r in t]
    return sorted(rows)


@pytest.fixture(scope="module")
def clean_run(prefect_api, ray_cluster, mirror, tmp_path_factory):
    server, paths = mirror
    server.reset()
    out = tmp_path_factory.mktemp("clean")
    assert _curate(server, out) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert not stats["failed_inputs"] and stats["documents"] > 0
    return out, stats


def test_flaky_server_curates_exactly_like_a_clean_one(clean_run, mirror, tmp_path):
    server, paths = mirror
    clean, clean_stats = clean_run
    a, b, c, d = paths
    server.reset({f"/crawl-data/{CRAWL}/warc.paths.gz": ["503", "503"],
                  a: ["503", "429", "drop:0.4", "500", "drop:0.7"],
                  b: ["drop:0.2", "stall:0.5", "503"],
                  c: ["500", "drop:0.5"],
                  d: ["429", "drop:0.9"]})
    out = tmp_path / "flaky"
    assert _curate(server, out) == 0
    assert dict(server.faults) == {"http_503": 4, "http_429": 2, "http_500": 2, "drop": 5, "stall": 1}
    assert _docs(out) == _docs(clean)  # document for document
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stages"] == clean_stats["stages"] and stats["errors"] == clean_stats["errors"]
    assert not stats["failed_inputs"]
    net = stats["network"]  # what was overcome, for the user to see
    assert net["http_503"] >= 2 and net["connection_dropped"] >= 5 and net["timeout"] >= 1
    assert net["resumes"] >= 6


def test_partial_run_exits_3_is_not_cached_and_the_next_run_redoes_it(clean_run, mirror, tmp_path, capsys):
    from mlflow import MlflowClient

    server, paths = mirror
    clean, _ = clean_run
    b = paths[1]
    url_b = server.url + b
    out = tmp_path / "partial"

    server.reset({b: ["drop:0.5"] + ["503"] * 100})  # half of b, then the endpoint stays down
    assert _curate(server, out) == 3
    said = capsys.readouterr().out
    assert "PARTIAL" in said and "remote_http_503: 1" in said and "--allow-partial" in said
    stats = json.loads((out / "stats.json").read_text())
    assert stats["failed_inputs"] == {url_b: "remote_http_503"}
    assert stats["failed_by_reason"] == {"remote_http_503": 1}
    assert stats["errors"]["remote_http_503"] == 1 and stats["shards"] == 3
    client = MlflowClient(tracking_uri=f"sqlite:///{out}/mlflow.db")
    run = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1,
                             order_by=["attributes.start_time DESC"])[0]
    assert run.data.metrics["failed_inputs.remote_http_503"] == 1 and run.data.metrics["failed_inputs"] == 1
    ckpt = list((out / "work" / "process").glob("*.ckpt"))
    assert len(ckpt) == 1  # b's progress is kept for the next run

    # still down: --allow-partial accepts the loss (exit 0); b is tried again, not "cached"
    server.reset({b: ["503"] * 100})
    assert _curate(server, out, "--allow-partial") == 0
    assert server.gets[b] == 5 and "PARTIAL" in capsys.readouterr().out

    # healthy again: the same command redoes b (from its checkpoint) and matches the clean run
    server.reset()
    assert _curate(server, out) == 0
    assert server.gets[b] >= 1 and server.ranges[b][0] > 0  # resumed inside b, by Range
    assert _docs(out) == _docs(clean)
    stats = json.loads((out / "stats.json").read_text())
    assert not stats["failed_inputs"] and stats["shards"] == 4
