"""MLflow that compares: two real `llm-pipeline` runs (real Prefect API, MLflow sqlite store, an
`mlflow ui` server like `make mlflow-ui`), their Compare page opened in headless Chromium.

The stage outputs are GENERATED (manifests with made-up figures, nothing trained): both runs
find every stage complete, so each run does only what this test is about — the parent run's
few headline metrics and params, read from the stage outputs — in seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from core.atomic import write_json
from tests.support.services import free_port

CHROMIUM = os.environ.get("CRAWL2CHAT_CHROMIUM", "/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage"]
SCREENS = os.environ.get("CRAWL2CHAT_SCREENSHOTS")  # a folder: the test saves what it saw there


def write_generated_stage_outputs(root: Path, bpb: float, margin: float) -> None:
    """GENERATED outputs of every stage, as each stage writes them (the figures are made up)."""
    write_json(root / "curate" / "curated" / "manifest.json", {"stage": "curate", "documents": 812, "shards": 4})
    write_json(root / "tokenize" / "tokens" / "meta.json", {"n_tokens": 531_000, "vocab_size": 4096,
                                                            "splits": {"val": {"n_tokens": 9000, "n_bytes": 40000}}})
    write_json(root / "pretrain" / "manifest.json", {"stage": "pretrain", "val_bpb": bpb, "n_params": 1_966_144,
                                                     "tokens_seen": 1_228_800, "checkpoint": "x"})
    write_json(root / "index" / "manifest.json", {"passages": 2400, "documents": 812})
    write_json(root / "probe" / "manifest.json", {"n_questions": 100})
    write_json(root / "sft" / "manifest.json", {"val_loss": 1.9, "checkpoint": "x"})
    write_json(root / "rl" / "manifest.json", {"pass@1_before": 0.23, "pass@1_after": 0.55, "checkpoint": "x"})
    write_json(root / "reward" / "manifest.json", {"val_accuracy": 0.62, "n_val": 170, "checkpoint": "x"})
    write_json(root / "rlhf" / "manifest.json", {"rm_score_start": 0.1, "rm_score_end": 0.4, "kl_end": 0.3})
    write_json(root / "dpo" / "manifest.json", {"val": {"margin": margin, "accuracy": 0.7}, "n_val": 130})
    write_json(root / "evaluate" / "eval.json", {"models": {
        "pretrain": {"val_bpb": bpb + 0.05, "core": {"core": 0.01}},
        "sft": {"chat_compliance": 1.0, "arith_acc_no_tool": 0.3, "gsm8k_pass@1": 0.0},
        "rl": {"arith_acc_no_tool": 0.5}}})
    write_json(root / "evaluate" / "manifest.json", {"stage": "evaluate"})


def _serve_mlflow_ui(uri: str, port: int) -> subprocess.Popen:
    """`mlflow ui` as `make mlflow-ui` starts it."""
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow_bin, "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"],
                            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # ~10 s idle; a minute and more on a loaded 2-core machine
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow ui exited: {proc.stderr.read()[-2000:]}")
    proc.terminate()
    raise TimeoutError("mlflow ui did not answer /health in 300 s")


@pytest.mark.skipif(not (os.path.exists(CHROMIUM) or shutil.which("chromium")),
                    reason="headless browser missing: apt-get install -y chromium")
def test_two_pipeline_runs_compare_on_their_headline_metrics(tmp_path, prefect_api, mlflow_uri):
    sync_api = pytest.importorskip("playwright.sync_api")
    from mlflow import MlflowClient

    from flows import pipeline
    from tasks.headline import HEADLINE_NAMES, compare_url, pipeline_runs, runs_url, ui_links

    root = tmp_path / "run"
    write_generated_stage_outputs(root, bpb=2.45, margin=0.4)
    first = pipeline.llm_pipeline(preset="tiny", out=str(root))
    write_generated_stage_outputs(root, bpb=2.31, margin=0.9)  # a second, different run (another seed)
    second = pipeline.llm_pipeline(preset="tiny", out=str(root), overrides={"pretrain": {"seed": 1}})
    assert all(s["status"] == "skipped" for s in second["stages"].values())

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = [client.get_run(s["mlflow_run_id"]) for s in (first, second)]
    for run in runs:  # few, named headline metrics; flat, few params
        assert set(run.data.metrics) <= set(HEADLINE_NAMES) | {"pipeline.wall_minutes"}, sorted(run.data.metrics)
        assert 20 <= len(run.data.metrics) <= 25
        assert len(run.data.params) <= 8 and all(not v.startswith("{") for v in run.data.params.values())
    assert runs[0].data.metrics["pretrain.val_bpb"] == 2.45 and runs[1].data.metrics["pretrain.val_bpb"] == 2.31
    assert runs[0].data.params["seed"] == "0" and runs[1].data.params["seed"] == "1"
    assert runs[1].data.params["pretrain.seed"] == "1"  # the knob this run turned

    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    exp_id, ids = pipeline_runs(mlflow_uri)
    assert ids == [s["mlflow_run_id"] for s in (first, second)]
    url = compare_url(ui, exp_id, ids)
    assert f"compare the last two llm-pipeline runs: {url}" in ui_links(mlflow_uri, ui)  # what `make mlflow-ui` says
    server = _serve_mlflow_ui(mlflow_uri, port)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.goto(url, timeout=120_000)
                for name in ("pretrain.val_bpb", "dpo.val_margin", "evaluate.sft.chat_compliance", "curate.documents"):
                    page.wait_for_function(f"document.body.innerText.includes({name!r})", timeout=120_000)
                text = page.inner_text("body")
                assert "2.45" in text and "2.31" in text  # both runs' values side by side
                if SCREENS:
                    Path(SCREENS).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(SCREENS) / "mlflow-compare-generated.png"), full_page=True)
                # the runs table `make mlflow-ui` prints first lists both pipeline runs
                page.goto(runs_url(ui, exp_id), timeout=120_000)
                page.wait_for_function("document.body.innerText.includes('llm-pipeline')", timeout=120_000)
                assert "Model training" in page.inner_text("body")
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
