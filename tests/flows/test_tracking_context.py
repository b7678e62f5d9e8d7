"""Tracking state is explicit (flows/runtime.tracking_context), never the process environment.

Seams: the pipeline exported MLFLOW_TRACKING_URI and CRAWL2CHAT_PARENT_RUN_ID around its stage
subflows, and every stage's `mlflow.set_tracking_uri` exported MLFLOW_TRACKING_URI too, so a
later stand-alone stage in the same process read the first one's store as the user's setting
and logged there. Real MLflow stores (sqlite), real Prefect API, real Ray for curate.
"""
from __future__ import annotations

import os
import threading

import pytest

from flows import runtime

WARC = "cc-main-2024-22_whirlwind.warc.gz"  # the smallest real sample WARC (data/samples)


def _runs(uri: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(runtime.EXPERIMENT)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_stand_alone_stage_runs_keep_their_own_store_and_the_environment(tmp_path, monkeypatch, prefect_api):
    # prefect_api: the runs' link artifacts go to the session's server, not an ephemeral one
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = dict(os.environ)
    stores = {n: f"sqlite:///{tmp_path / n}/mlflow.db" for n in ("a", "b")}
    for name in stores:
        with runtime.mlflow_run(f"stage-{name}", tmp_path / name):
            assert dict(os.environ) == env  # MLflow's own exports (tracking URI, experiment id) are undone
    assert dict(os.environ) == env
    assert [r.info.run_name for r in _runs(stores["b"])] == ["stage-b"]  # not in a's store

    # the user's own MLFLOW_TRACKING_URI is still honoured
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stores["a"])
    with runtime.mlflow_run("stage-c", tmp_path / "c"):
        pass
    assert sorted(r.info.run_name for r in _runs(stores["a"])) == ["stage-a", "stage-c"]
    assert not (tmp_path / "c" / "mlflow.db").exists()


def test_tracking_contexts_in_two_threads_do_not_leak(tmp_path):
    both_open = threading.Barrier(2, timeout=30)
    seen: dict[str, tuple] = {}

    def worker(name: str) -> None:
        with runtime.tracking_context(f"sqlite:///{tmp_path}/{name}.db", f"parent-{name}"):
            both_open.wait()  # both contexts are live at once
            seen[name] = (runtime.tracking_uri(tmp_path / "ignored"), runtime.current_tracking().parent_run_id)
            both_open.wait()
        seen[name + "-after"] = (runtime.current_tracking(),)

    env = dict(os.environ)
    threads = [threading.Thread(target=worker, args=(n,)) for n in ("x", "y")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen["x"] == (f"sqlite:///{tmp_path}/x.db", "parent-x")
    assert seen["y"] == (f"sqlite:///{tmp_path}/y.db", "parent-y")
    assert seen["x-after"] == seen["y-after"] == (None,)
    assert runtime.current_tracking() is None and dict(os.environ) == env


def test_prefect_subflows_and_their_tasks_see_the_context(prefect_api, tmp_path):
    from prefect import flow, task

    @task
    def in_task() -> str | None:
        ctx = runtime.current_tracking()
        return ctx and f"{ctx.uri}|{ctx.parent_run_id}"

    @flow
    def stage_flow() -> tuple:
        ctx = runtime.current_tracking()
        return ctx and f"{ctx.uri}|{ctx.parent_run_id}", in_task.submit().result(), in_task()

    @flow
    def parent_flow() -> tuple:
        with runtime.tracking_context("sqlite:///p.db", "parent-1"):
            return stage_flow()

    want = "sqlite:///p.db|parent-1"
    assert parent_flow() == (want, want, want)  # subflow, task in the runner's thread pool, task called
    assert runtime.current_tracking() is None


@pytest.mark.slow  # ~1 min on 2 busy cores: a real curate on Ray is what shows the context reaching a subflow
def test_pipeline_nests_every_stage_in_the_run_root_store_and_leaves_the_environment(
        repo_data, tmp_path, prefect_api, ray_cluster, monkeypatch):
    from flows import pipeline

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    env = dict(os.environ)
    root = tmp_path / "run"
    summary = pipeline.llm_pipeline(preset="tiny", out=str(root), stages=["curate"],
                                    inputs=[str(repo_data / "samples" / WARC)])
    assert summary["stages"]["curate"]["status"] == "done"
    assert dict(os.environ) == env
    uri = f"sqlite:///{root}/mlflow.db"
    assert summary["mlflow_tracking_uri"] == uri
    runs = {r.info.run_name: r for r in _runs(uri)}
    assert set(runs) == {"llm-pipeline", "curate"}
    # curate's flow takes no mlflow_root: only the context sends its run to the pipeline's store
    assert runs["curate"].data.tags["mlflow.parentRunId"] == runs["llm-pipeline"].info.run_id
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("mlflow.db")) == ["mlflow.db"]
