"""`sft` flow: base model → supervised fine-tuning on chat data → `crawl2chat-sft`.

    sft-train (task)    <out>/final (+ <out>/latest, resumable), <out>/manifest.json
    register            MLflow model `crawl2chat-sft@current` (`@latest` = newest version)

Also holds `tracked_stage`, the wiring every post-training flow shares: an
MLflow run whose tags name the parent model (and its registry version), the
data as `mlflow.log_input`, per-step metrics, the manifest as an artifact, the
checkpoint registered under the stage's model name.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow

from conf import load
from conf.posttrain import SFTConfig
from flows.runtime import log_dataset, mlflow_run, publish_markdown, register_checkpoint, write_json_atomic
from tasks.posttrain import sft_task

log = logging.getLogger(__name__)


def model_lineage(uri: str, role: str = "parent_model") -> dict[str, str]:
    """Tags naming a model input: its URI/path and, for `models:/name@alias`, the registry version."""
    tags = {role: str(uri)}
    s = str(uri)
    if s.startswith("models:/"):
        from mlflow import MlflowClient

        name, _, ref = s[len("models:/"):].partition("@")
        try:
            client = MlflowClient()
            version = None
            if "/" in name:  # models:/name/version (or /latest)
                name, version = name.split("/", 1)
            if version and version != "latest":
                mv = client.get_model_version(name, version)
            elif ref == "latest" or version == "latest":  # MLflow reserves `latest`: the newest version
                mv = max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
            else:
                mv = client.get_model_version_by_alias(name, ref)
            if mv is not None:
                tags.update({f"{role}_name": mv.name, f"{role}_version": str(mv.version),
                             f"{role}_run_id": str(mv.run_id)})
        except Exception as e:  # lineage is metadata; the load itself will fail loudly if wrong
            log.warning("could not resolve %s in the model registry: %s", s, e)
    else:
        tags[f"{role}_path"] = str(Path(s).resolve())
    return tags


def mlflow_logger(run_id: str) -> Callable[[dict[str, float], int], None]:
    """Per-step metrics to one MLflow run by id (safe from any thread)."""
    import math
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()

    def log_fn(metrics: dict[str, float], step: int) -> None:
        ts = int(time.time() * 1000)
        ms = [Metric(k.replace("@", "_at_"), float(v), ts, int(step)) for k, v in metrics.items()
              if isinstance(v, (int, float)) and math.isfinite(float(v))]
        if ms:
            client.log_batch(run_id, metrics=ms)

    return log_fn


def tracked_stage(stage: str, register_as: str, out: str, mlflow_root: str | None, cfg, preset: str | None,
                  inputs: dict[str, str], datasets: list[tuple[str, str]],
                  train: Callable[[Callable], dict[str, Any]], summary: list[str]) -> dict[str, Any]:
    """Run `train(log_fn)` inside the stage's MLflow run; register its checkpoint; return the manifest."""
    import mlflow

    out_dir = Path(out).resolve()
    tags: dict[str, str] = {}
    for role, uri in inputs.items():
        if uri:
            tags.update(model_lineage(uri, role))
    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "out": str(out_dir), **inputs}
    with mlflow_run(stage, mlflow_root or out_dir, params=params, tags=tags) as run:
        for path, name in datasets:
            if path and (Path(path).exists() or "://" in path):
                log_dataset(path, name, context="training")
        manifest = train(mlflow_logger(run.info.run_id))
        finals = {k.replace("@", "_at_"): float(v) for k, v in manifest.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if finals:
            mlflow.log_metrics(finals)
        manifest["model_uri"] = register_checkpoint(manifest["checkpoint"], register_as,
                                                    tags={"stage": stage, **tags})
        manifest["mlflow_run_id"] = run.info.run_id
        write_json_atomic(out_dir / "manifest.json", manifest)
        mlflow.log_dict(manifest, "manifest.json")
        lines = [f"# {stage}", f"- model: `{manifest['model_uri']}`", f"- parent: `{inputs}`"] + summary
        lines += [f"- {k}: {manifest.get(k)}" for k in finals]
        publish_markdown(f"{stage}-summary", "\n".join(lines))
    log.info("%s done: %s", stage, manifest["model_uri"])
    return manifest


@flow(name="sft")
def sft(model: str, out: str, preset: str | None = "tiny", overrides: dict[str, Any] | None = None,
        mlflow_root: str | None = None) -> dict[str, Any]:
    """Fine-tune `model` (checkpoint dir or models:/ URI) on chat data; registers `crawl2chat-sft`."""
    cfg = load(SFTConfig, preset, overrides)
    datasets = [(cfg.alpaca_path, "sft-alpaca"), (cfg.glaive_path, "sft-glaive-toolcall")]
    return tracked_stage("sft", "crawl2chat-sft", out, mlflow_root, cfg, preset, {"parent_model": model}, datasets,
                         lambda log_fn: sft_task(model, out, cfg, log_fn),
                         [f"- generated: {cfg.n_identity} identity, {cfg.n_arithmetic} arithmetic conversations"])
