"""`crawl2chat pipeline` when curate loses an input: exit 3 and no complete manifest, unless --allow-partial.

Real Prefect API, real Ray, MLflow on sqlite under the run root; the inputs are
real sample WARCs served by tests/support/flaky_http.py on 127.0.0.1, one of which
answers 503 to every GET (its HEAD works, so it is a real remote object the
reader gives up on after its retries). Only the pipeline's curate stage runs.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.flaky_http import FlakyServer

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
FAST = ["--set", "curate.remote_retries=1", "--set", "curate.remote_backoff_s=0.01",
        "--set", "curate.remote_backoff_max_s=0.02", "--set", "curate.remote_read_timeout_s=5"]


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(SAMPLES / "cc-main-2024-22_whirlwind.warc.gz", root / "a.warc.gz")
    shutil.copy(SAMPLES / "cc-main-2024-22_whirlwind.warc.wet.gz", root / "b.warc.wet.gz")
    srv = FlakyServer(root)
    yield srv
    srv.close()


def _parent(root: Path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "attributes.run_name = 'llm-pipeline'", order_by=["attributes.start_time DESC"])
    return runs[0]


@pytest.mark.slow  # two curate runs on Ray + one that skips: 57 s at load 2-5, 274 s at load 10-13 here
def test_pipeline_stops_with_exit_3_on_lost_inputs_unless_allow_partial(prefect_api, ray_cluster, server,
                                                                      tmp_path, capsys, monkeypatch):
    from crawl2chat.cli import main
    from flows import pipeline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "run"
    url_b = server.url + "/b.warc.wet.gz"
    server.reset({"/b.warc.wet.gz": ["503"] * 100})  # b's endpoint stays down
    cmd = ["pipeline", "--preset", "tiny", "--out", str(root), "--stages", "curate",
           "--input", server.url + "/a.warc.gz", "--input", url_b, *FAST]
    manifest = pipeline.stage("curate").manifest(root)

    # 1. default: stop with exit 3, say why on stdout, record no complete output
    assert main(cmd) == 3
    said = capsys.readouterr().out
    assert "stage 'curate' is PARTIAL: 1 of 2 input(s) not read completely (remote_http_503: 1)" in said
    assert "--allow-partial" in said and "exit 3" in said
    assert server.gets["/b.warc.wet.gz"] == 2  # retries=1: tried twice, then counted lost
    assert not manifest.exists()
    assert dict((st.name, a) for st, a in pipeline.plan(root, ["curate"]))["curate"] == "run"  # not skipped
    stats = json.loads((root / "curate" / "stats.json").read_text())
    assert stats["failed_inputs"] == {url_b: "remote_http_503"} and stats["shards"] == 1
    run = _parent(root)
    assert run.info.status == "FAILED" and run.data.tags["stage.curate"] == "partial"
    assert run.data.metrics["curate.failed_input_count"] == 1 and "remote_http_503: 1" in run.data.tags["partial.curate"]
    assert not (root / "pipeline.json").exists()

    # 2. --allow-partial: b is tried again (nothing was cached as complete), the loss is accepted and recorded
    assert main([*cmd, "--allow-partial"]) == 0
    said = capsys.readouterr().out
    assert "curate    done" in said and "PARTIAL: 1 of 2 input(s) not read completely" in said
    assert server.gets["/b.warc.wet.gz"] == 4
    m = json.loads(manifest.read_text())
    assert m["partial"] is True and m["failed_inputs"] == {url_b: "remote_http_503"}
    assert m["failed_input_count"] == 1 and m["inputs"] == 2 and len(m["shards"]) == 1
    summary = json.loads((root / "pipeline.json").read_text())
    assert summary["stages"]["curate"]["status"] == "done"
    assert summary["stages"]["curate"]["partial"]["by_reason"] == {"remote_http_503": 1}
    run = _parent(root)
    assert run.info.status == "FINISHED" and run.data.metrics["curate.failed_input_count"] == 1
    assert "accepted" in run.data.tags["partial.curate"]

    # 3. a later run skips the accepted output, and still says it is partial
    assert main(cmd) == 0
    said = capsys.readouterr().out
    assert "curate    skipped PARTIAL: 1 of 2 input(s)" in said
    assert server.gets["/b.warc.wet.gz"] == 4  # skipped: nothing read
    summary = json.loads((root / "pipeline.json").read_text())
    assert summary["stages"]["curate"]["status"] == "skipped" and summary["stages"]["curate"]["partial"]["failed"] == 1
    run = _parent(root)
    assert run.data.tags["stage.curate"] == "skipped" and run.data.metrics["curate.failed_input_count"] == 1
    assert os.environ.get("MLFLOW_TRACKING_URI") is None  # the pipeline restored it
