"""The `llm-pipeline` flow: its plan (skip complete stages, block on missing ones),
and a real failing stage followed by a resume (real Prefect API, Ray, MLflow).

Curated Parquet used for the resume is GENERATED from real C4 text
(tests/support/curated_data.py: write_generated_curated)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.atomic import write_json
from flows import pipeline, runtime



def _complete(root: Path, name: str, **extra) -> Path:
    m = pipeline.stage(name).manifest(root)
    write_json(m, {"stage": name, **extra})
    return m


def test_plan_skips_complete_stages_and_runs_the_rest(tmp_path):
    actions = dict((st.name, a) for st, a in pipeline.plan(tmp_path))
    assert list(actions)[:3] == ["curate", "tokenize", "pretrain"]
    assert actions["curate"] == "run" and actions["tokenize"] == "run"
    _complete(tmp_path, "curate")
    _complete(tmp_path, "tokenize")
    actions = dict((st.name, a) for st, a in pipeline.plan(tmp_path))
    assert actions["curate"] == actions["tokenize"] == "skip"
    # a forced stage runs again; an unknown one is refused by name
    assert dict((st.name, a) for st, a in pipeline.plan(tmp_path, force=["tokenize"]))["tokenize"] == "run"
    with pytest.raises(ValueError, match="unknown stage 'tokenise'"):
        pipeline.plan(tmp_path, only=["tokenise"])


def test_half_written_manifest_is_not_complete(tmp_path):
    m = pipeline.stage("curate").manifest(tmp_path)
    m.parent.mkdir(parents=True)
    m.write_text('{"stage": "cur')  # a crash mid-write (should not happen with os.replace, but never trust it)
    assert not pipeline.stage("curate").done(tmp_path)
    assert dict((st.name, a) for st, a in pipeline.plan(tmp_path))["curate"] == "run"


def test_every_stage_args_fit_its_flow_exactly(tmp_path):
    """The stage table names each flow's arguments itself: nothing is dropped or guessed by signature."""
    import inspect

    for name in ("pretrain", "sft", "reward"):
        _complete(tmp_path, name, checkpoint=str(tmp_path / "ckpt"))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    for st in pipeline.STAGES:
        params = inspect.signature(st.flow().fn).parameters
        kwargs = st.args(tmp_path, "tiny", {"inputs": ["x.warc.gz"]})
        assert set(kwargs) <= set(params), (st.name, sorted(set(kwargs) - set(params)))
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        assert required <= set(kwargs), (st.name, sorted(required - set(kwargs)))



def test_posttrain_args_read_the_checkpoint_from_the_previous_manifest(tmp_path):
    from core.run_root import CheckpointError

    _complete(tmp_path, "pretrain", checkpoint=str(tmp_path / "pretrain" / "final"))
    with pytest.raises(CheckpointError, match="missing or incomplete"):  # the manifest names no checkpoint yet
        pipeline.stage("sft").args(tmp_path, "tiny", {})
    (tmp_path / "pretrain" / "final").mkdir(parents=True)
    (tmp_path / "pretrain" / "final" / "config.json").write_text("{}")
    args = pipeline.stage("sft").args(tmp_path, "tiny", {})
    assert args["model"] == str(tmp_path / "pretrain" / "final")
    assert args["out"] == str(tmp_path / "sft") and args["mlflow_root"] == str(tmp_path)
    (tmp_path / "sft" / "latest").mkdir(parents=True)  # sft started but did not finish
    (tmp_path / "sft" / "latest" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"sft is not complete: .*manifest.json is missing"):
        pipeline.stage("rl").args(tmp_path, "tiny", {})


@pytest.mark.slow
def test_failing_stage_fails_clearly_then_resumes(repo_data, tmp_path, prefect_api, ray_cluster, mlflow_uri):
    import conf

    if "tiny" not in conf.preset_names():
        pytest.fail("conf/presets/tiny.yaml is missing: the pipeline's tiny preset must exist")
    from tests.support.curated_data import write_generated_curated

    root = tmp_path / "run"
    # curate "finished" but its output holds no Parquet: tokenize must fail
    curate_manifest = _complete(root, "curate", documents=0)
    before = curate_manifest.stat().st_mtime_ns

    state = pipeline.llm_pipeline(preset="tiny", out=str(root), stages=["curate", "tokenize"], return_state=True)
    assert state.is_failed()
    msg = str(state.result(raise_on_failure=False))
    assert "stage 'tokenize' failed" in msg and "resume from 'tokenize'" in msg and str(root) in msg
    assert curate_manifest.stat().st_mtime_ns == before  # earlier output untouched

    import mlflow

    runs = mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")
    parent = [r for r in runs if r.info.run_name == "llm-pipeline"][0]
    assert parent.info.status == "FAILED" and parent.data.tags["stage.tokenize"] == "failed"
    assert parent.data.tags["stage.curate"] == "skipped"

    # fix the cause (curated Parquet appears), re-run: curate is skipped, tokenize runs
    write_generated_curated(repo_data, root / "curate", n_files=2, per_file=30)
    summary = pipeline.llm_pipeline(preset="tiny", out=str(root), stages=["curate", "tokenize"])
    assert summary["stages"]["curate"]["status"] == "skipped"
    assert summary["stages"]["tokenize"]["status"] == "done"
    assert (root / "tokenize" / "tokens" / "meta.json").exists()
    runs = mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")
    parent2 = [r for r in runs if r.info.run_name == "llm-pipeline" and r.info.status == "FINISHED"][0]
    child = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent2.info.run_id]
    assert [r.info.run_name for r in child] == ["tokenize"]
    assert child[0].data.tags["prefect_flow_run_id"] and child[0].data.metrics
    summary_file = json.loads((root / "pipeline.json").read_text())
    assert summary_file["mlflow_run_id"] == parent2.info.run_id
    # the parent run carries each stage's headline numbers, the skipped stage's too
    meta = json.loads((root / "tokenize" / "tokens" / "meta.json").read_text())
    assert parent2.data.metrics["tokenize.n_tokens"] == meta["n_tokens"] > 0
    assert parent2.data.metrics["curate.documents"] == 0
    assert summary_file["stages"]["tokenize"]["headline"]["tokenize.n_tokens"] == meta["n_tokens"]
    # no broken Prefect link ("None/flow-runs/..."): a real URL of the API's server, or none
    for tags in (parent2.data.tags, child[0].data.tags, summary_file):
        url = tags.get("prefect_flow_run_url")
        assert url is None or (url.startswith("http://127.0.0.1:") and url.endswith(tags["prefect_flow_run_id"]))


def test_overrides_reach_the_stage_config(tmp_path):
    _complete(tmp_path, "pretrain", checkpoint=str(tmp_path / "ckpt"))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    over = {"overrides": {"sft": {"steps": 3}, "curate": {"dedup": False}, "pretrain": {"max_steps": 7}}}
    kw = pipeline.stage("sft").args(tmp_path, "tiny", over)
    assert kw["overrides"] == {"steps": 3} and kw["model"] == str(tmp_path / "ckpt")
    kw = pipeline.stage("curate").args(tmp_path, "tiny", over)
    assert kw["config"]["dedup"] is False and kw["config"]["minhash_buckets"] > 0
    assert pipeline.stage("pretrain").args(tmp_path, "tiny", over)["overrides"] == {"max_steps": 7}
    # `--set curate.generated_docs=0` changes the default inputs, not only the config
    kw = pipeline.stage("curate").args(tmp_path, "tiny", {"overrides": {"curate": {"generated_docs": 0}}})
    assert kw["inputs"] == pipeline.sample_inputs()
    with pytest.raises(ValueError, match="unknown stage"):
        pipeline.llm_pipeline.fn(preset="tiny", out=str(tmp_path), overrides={"pretrian": {}})


def test_cli_set_parses_stage_overrides():
    from crawl2chat.stage_cli import parse_sets

    assert parse_sets(["pretrain.max_steps=20", "curate.languages=[en, fr]", "sft.steps=3"]) == {
        "pretrain": {"max_steps": 20}, "curate": {"languages": ["en", "fr"]}, "sft": {"steps": 3}}
    with pytest.raises(ValueError, match="STAGE.KEY=VALUE"):
        parse_sets(["pretrain=3"])


def test_prefect_ui_url_is_real_or_absent(monkeypatch):
    monkeypatch.delenv("PREFECT_UI_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.delenv(runtime.EMBEDDED_API_ENV, raising=False)
    assert runtime.prefect_ui_url() == "http://127.0.0.1:4200"  # what `prefect server start` serves
    monkeypatch.setenv(runtime.EMBEDDED_API_ENV, "http://127.0.0.1:4200/api")
    assert runtime.prefect_ui_url() is None  # the embedded server serves no UI
    monkeypatch.setenv("PREFECT_UI_URL", "https://prefect.example.org")
    assert runtime.prefect_ui_url() == "https://prefect.example.org"


def test_the_end_of_a_run_says_where_the_report_is_and_what_to_run_next(tmp_path, monkeypatch):
    from crawl2chat.commands.pipeline import next_steps

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs" / "demo"
    _complete(root, "sft", checkpoint=str(root / "sft" / "final"))
    _complete(root, "evaluate", report=str(root / "evaluate" / "report" / "report.md"))
    text = next_steps({"root": str(root), "mlflow_run_id": "abc", "mlflow_experiment_id": "1",
                       "mlflow_tracking_uri": f"sqlite:///{root}/mlflow.db"})
    assert "report card: runs/demo/evaluate/report/report.md" in text
    assert "chat  --model runs/demo/sft" in text and "serve --model runs/demo/sft" in text
    assert f"ui --backend-store-uri sqlite:///{root}/mlflow.db" in text
    assert "http://127.0.0.1:5001/#/experiments/1/runs" in text and "make chat" in text
    served = next_steps({"root": str(root), "mlflow_experiment_id": "1",
                         "mlflow_tracking_uri": "http://127.0.0.1:5000"})
    assert "http://127.0.0.1:5000/#/experiments/1/runs" in served
