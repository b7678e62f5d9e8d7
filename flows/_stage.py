"""What every training stage's flow shares: its MLflow run, lineage, registration — then the manifest.

`tracked_stage` is the contract of docs/CONTRACTS.md in one place: it removes a stale
manifest when the stage starts, runs the stage's task (which writes data and
checkpoints, never the manifest) inside an MLflow run whose tags name the parent
model(s) and whose inputs are the datasets, logs the final scalars, registers the
checkpoint under the stage's model name, and only then writes `<out>/manifest.json`.
A failure anywhere before leaves no manifest, so the pipeline re-runs the stage
(training resumes from `<out>/latest`) instead of skipping a stage whose model was
never registered.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.run_root import clear_manifest, write_manifest
from flows.runtime import (carry_over_history, delete_run_versions, log_dataset, mlflow_run, publish_markdown,
                           register_checkpoint)
from lm.posttrain.loop import resume_step
from tasks.progress import StageProgress, chain

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


def mlflow_logger(run_id: str, uri: str) -> Callable[[dict[str, float], int], None]:
    """Per-step metrics to one MLflow run by id in store `uri` (safe from any thread), under the one naming scheme."""
    from lm.tracking import MLflowLogger

    return MLflowLogger(run_id, uri).log_metrics


def tracked_stage(stage: str, register_as: str, out: str, mlflow_root: str | None, cfg, preset: str | None,
                  inputs: dict[str, str], datasets: list[tuple[str, str]],
                  train: Callable[[Callable], dict[str, Any]], summary: list[str]) -> dict[str, Any]:
    """Run `train(log_fn)` inside the stage's MLflow run; register its checkpoint; write the manifest last."""
    import mlflow

    out_dir = Path(out).resolve()
    clear_manifest(out_dir)
    tags: dict[str, str] = {}
    for role, uri in inputs.items():
        if uri:
            tags.update(model_lineage(uri, role))
    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "out": str(out_dir), **inputs}
    # One key per stage output: a re-run after a kill closes the killed run (KILLED) and takes
    # over its per-step history up to the checkpoint it resumes from (docs/CONTRACTS.md).
    key = f"{stage}:{out_dir}"
    with mlflow_run(stage, mlflow_root or out_dir, params=params, tags=tags, key=key) as run:
        client = mlflow.MlflowClient()
        carry_over_history(client, run.info.run_id, key, resume_step(out_dir) if (out_dir / "latest").exists()
                           or (out_dir / "final").exists() else -1)
        for path, name in datasets:
            if path and (Path(path).exists() or "://" in path):
                log_dataset(path, name, context="training")
        # per-step metrics to the store mlflow_run chose, and a progress line every 10 % to this flow run's log
        progress = StageProgress(stage, int(getattr(cfg, "steps", 0) or 0))
        manifest = train(chain(mlflow_logger(run.info.run_id, mlflow.get_tracking_uri()), progress))
        progress.finish()  # a loop that stopped early (RL's hacking monitor) still ends its progress at 100 %
        # Run-level results under `final/` (per-step series keep their own names, one point per step).
        finals = {"final/" + k.replace("@", "_at_"): float(v) for k, v in manifest.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if finals:
            mlflow.log_metrics(finals)
        manifest["model_uri"] = register_checkpoint(manifest["checkpoint"], register_as,
                                                    tags={"stage": stage, **tags})
        try:
            manifest["mlflow_run_id"] = run.info.run_id
            mlflow.log_dict(manifest, "manifest.json")
            lines = [f"# {stage}", f"- model: `{manifest['model_uri']}`", f"- parent: `{inputs}`"] + summary
            lines += [f"- {k}: {v:.4g}" for k, v in finals.items()]
            publish_markdown(f"{stage}-summary", "\n".join(lines))
        except BaseException:  # registered but not finished: the registry must not show it
            delete_run_versions(client, run.info.run_id)
            raise
    write_manifest(out_dir, manifest)  # last: the stage is complete only now (the MLflow run has ended cleanly)
    log.info("%s done: %s", stage, manifest["model_uri"])
    return manifest
