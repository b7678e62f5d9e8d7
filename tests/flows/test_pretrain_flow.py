"""The `pretrain` flow on a real Prefect API and a real sqlite MLflow store.

Input: token shards GENERATED from the bundled tinyshakespeare (see
tests/support/token_data.py: make_generated_token_dataset).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.support.token_data import make_generated_token_dataset


MICRO = {"depth": 2, "sequence_len": 64, "device_batch_size": 8, "eval_every": 6, "eval_tokens": 2048,
         "checkpoint_every": 5, "sample_tokens": 8, "progress": False, "threads": 1, "warmup_steps": 2,
         "peak_flops": 1e11}


def test_pretrain_flow_tracks_run_and_registers_base_model(tmp_path, prefect_api, mlflow_uri, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from flows.pretrain import pretrain
    from lm.checkpoint import load_model

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
    tokens = make_generated_token_dataset(tmp_path / "tokenize")
    out = tmp_path / "pretrain"

    m = pretrain(str(tokens), str(out), preset="tiny", max_steps=12, overrides=MICRO)

    assert m["status"] == "completed" and m["step"] == 12
    assert m["model_uri"] == "models:/crawl2chat-base@current"
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(m, default=str))

    client = MlflowClient()
    runs = mlflow.search_runs(experiment_names=["crawl2chat"], output_format="list")
    assert [r.info.run_name for r in runs] == ["pretrain"]
    run = client.get_run(runs[0].info.run_id)
    assert run.info.run_id == m["mlflow_run_id"]
    p = run.data.params
    assert p["depth"] == "2" and p["max_steps"] == "12" and p["preset"] == "tiny" and p["optimizer"] == "muon"
    assert p["train.sequence_len"] == "64" and p["model.n_embd"] == "128"  # logged by the training loop
    tags = run.data.tags
    assert tags["stage"] == "pretrain" and tags["git_commit"] and tags.get("prefect_flow_run_id")
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(x.step for x in losses) == list(range(1, 13))
    for key in ("train/lr", "train/grad_norm", "throughput/tok_per_s", "throughput/mfu"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 12, key
    assert [x.step for x in client.get_metric_history(run.info.run_id, "val/bpb")] == [6, 12]
    assert run.data.metrics["val/loss"] == run.data.metrics["final/val_loss"] == m["val_loss"] < 6.0
    assert any(k.startswith("system/") for k in run.data.metrics), sorted(run.data.metrics)
    inputs = run.inputs.dataset_inputs
    assert inputs and inputs[0].dataset.name == "tokens"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"checkpoint", "metrics.jsonl", "samples"} <= arts
    ckpt_files = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= ckpt_files

    mv = client.get_model_version_by_alias("crawl2chat-base", "current")
    assert mv.run_id == run.info.run_id and mv.tags["stage"] == "pretrain"
    model, tok, meta = load_model("models:/crawl2chat-base@latest")
    local, _, _ = load_model(out / "final")
    assert meta["step"] == 12 and tok.vocab_size == local.config.vocab_size
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), local.state_dict().values()))
