"""The curate flow reading s3:// inputs on Ray: scale-out input is configuration only.

A local S3 API (moto's server, tests/conftest.py `s3_server`) holds two real
sample WARCs; the flow gets an s3:// glob, Ray workers read the objects with
s3fs, and the curated rows name the s3:// object they came from.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import pyarrow.parquet as pq

from tests.conftest import restart_local_ray

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
FILES = ("cc-main-2020-34_resiliparse_warcfile.warc.gz", "noncc_wget-2024_dolma_sample-0000.warc.gz")


@pytest.mark.slow
def test_curate_reads_s3_glob_on_ray(prefect_api, ray_cluster, s3_server, tmp_path, monkeypatch):
    from crawl2chat.cli import main

    s3_server.create_bucket(Bucket="cc-mirror")
    for name in FILES:
        s3_server.upload_file(str(SAMPLES / name), "cc-mirror", f"crawl-data/CC-TEST/{name}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Workers take the AWS_* variables from the Ray job's runtime_env, set at ray.init.
    restart_local_ray()
    out = tmp_path / "out"
    rc = main(["curate", "--input", "s3://cc-mirror/crawl-data/CC-TEST/*.warc.gz", "--out", str(out)])
    assert rc == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["inputs"] == 2 and not stats["errors"], stats
    warc_files = set()
    for p in (out / "curated").glob("*.parquet"):
        warc_files |= set(pq.read_table(p, columns=["warc_file"]).column("warc_file").to_pylist())
    assert warc_files and all(w.startswith("s3://cc-mirror/crawl-data/CC-TEST/") for w in warc_files)
    assert stats["stages"][0]["in"] > 20
