"""`pretrain` flow: token shards → base GPT checkpoint, registered as `crawl2chat-base`.

    config (preset + overrides) ── resume? (a checkpoint under <out> and resume=None)
      └─ pretrain-train (task; on Ray with num_gpus when the preset wants a GPU)
           lm.train in the worker, or torchrun for nproc_per_node > 1
           <out>/latest, <out>/final (checkpoints), <out>/metrics.jsonl
      └─ register  <out>/final logged as artifacts → model `crawl2chat-base@current`
                   (`models:/crawl2chat-base@latest` resolves to the same newest version)
      └─ manifest  <out>/manifest.json, written last

Tracked in the MLflow run `pretrain`: config as params, git commit and Prefect
flow run as tags, the token dataset as input, per-step loss/lr/grad norm/
tokens per s/MFU and val loss/bpb (from the training loop's MLflowLogger),
system metrics, samples, the final checkpoint and the registered model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.pretrain import PretrainConfig
from core.run_root import clear_manifest, resolve_checkpoint, write_manifest
from flows.runtime import ensure_prefect_api, log_dataset, mlflow_run, publish_markdown, ray_runner, register_checkpoint
from lm.tokens import read_meta, resolve_tokens_dir
from tasks.pretrain import pretrain_task

log = logging.getLogger(__name__)

MODEL_NAME = "crawl2chat-base"


def _start_system_metrics(run_id: str):
    """MLflow's system metrics sampler (CPU, memory, disk, network, GPU) for this run."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, sampling_interval=5, resume_logging=True)
        monitor.start()
        return monitor
    except Exception as e:  # psutil missing or similar: metrics are a view, not the job
        log.warning("system metrics off: %s", e)
        return None


def _stop_system_metrics(monitor) -> None:
    """Log a last sample, then stop: MLflow's sampler publishes only after a full
    interval, so a run shorter than that would otherwise record none."""
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
    except Exception as e:
        log.warning("final system-metrics sample failed: %s", e)
    monitor.finish()


@flow(name="pretrain")
def pretrain(tokens: str, out: str, preset: str | None = "tiny", max_steps: int | None = None,
             resume: bool | None = None, overrides: dict[str, Any] | None = None,
             mlflow_root: str | None = None, model_name: str = MODEL_NAME) -> dict[str, Any]:
    """Pretrain a GPT on the token shards in `tokens` (a tokenize output dir) into `out`.

    resume: True continues from <out>'s checkpoint exactly, False starts fresh,
    None (default) resumes when a checkpoint is there. Returns the manifest.
    """
    cfg = load(PretrainConfig, preset, {**(overrides or {}), **({"max_steps": max_steps} if max_steps is not None else {})})
    out_dir = Path(out).resolve()
    clear_manifest(out_dir)  # complete again only when this run writes it, last
    tokens_dir = resolve_tokens_dir(tokens)
    tmeta = read_meta(tokens_dir)
    if resume is None:
        resume = resolve_checkpoint(out_dir, purpose="resume") is not None
    params = {**cfg.model_dump(exclude={"section"}), "preset": preset, "tokens": str(tokens_dir),
              "out": str(out_dir), "resume": resume, "dataset_tokens": tmeta["n_tokens"],
              "vocab_size": tmeta["vocab_size"]}
    with mlflow_run("pretrain", mlflow_root or out_dir, params=params, tags={"preset": str(preset)}) as run:
        import mlflow

        log_dataset(tokens_dir, "tokens", context="training", digest=str(tmeta.get("tokenizer_sha256", ""))[:16])
        monitor = _start_system_metrics(run.info.run_id)
        try:
            # A plain dict crosses to the task (and a Ray worker or torchrun child), which rebuilds
            # PretrainSettings from it (the settings the pydantic config was derived from).
            args = (str(tokens_dir), str(out_dir), cfg.model_dump(mode="json", exclude={"section"}))
            kwargs = {"resume": resume, "mlflow_run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()}
            if cfg.num_gpus > 0:
                from prefect_ray.context import remote_options

                with remote_options(num_gpus=cfg.num_gpus):
                    summary = pretrain_task.submit(*args, **kwargs).result()
            else:
                # Called, not submitted: the task runs in the flow's thread, which is the
                # process's main thread under `crawl2chat pipeline|pretrain` and a deployment
                # run, so lm.train's SIGTERM handler (checkpoint, then stop) can be installed.
                summary = pretrain_task(*args, **kwargs)
        finally:
            if monitor is not None:
                _stop_system_metrics(monitor)
        if summary.get("status") != "completed":
            raise RuntimeError(f"pretraining stopped at step {summary.get('step')} ({summary.get('status')}); "
                               f"checkpoint in {out_dir / 'latest'}: run the flow again to resume")
        final = out_dir / "final"
        # Run-level totals under their own names: per-step series keep one point per step.
        mlflow.log_metrics({f"final/{k}": float(summary[k]) for k in ("val_loss", "val_bpb", "tokens_seen", "step")
                            if isinstance(summary.get(k), (int, float))})
        for name in ("metrics.jsonl", "summary.json"):
            if (out_dir / name).exists():
                mlflow.log_artifact(str(out_dir / name))
        # Alias `current` (MLflow reserves `latest`, which resolves to the newest version anyway).
        model_uri = register_checkpoint(final, model_name, artifact_path="checkpoint",
                                        tags={"stage": "pretrain", "preset": str(preset),
                                              "step": str(summary["step"])})
        manifest = {**summary, "stage": "pretrain", "checkpoint": str(final), "model_uri": model_uri,
                    "model_name": model_name, "mlflow_run_id": run.info.run_id, "tokens": str(tokens_dir),
                    "preset": preset, "config": cfg.model_dump(exclude={"section"})}
        publish_markdown("pretrain-summary", _summary_markdown(manifest), description="pretraining result")
    write_manifest(out_dir, manifest)  # last, after the MLflow run closed cleanly: marks the stage complete
    return manifest


def _summary_markdown(m: dict[str, Any]) -> str:
    rows = [("steps", m["step"]), ("tokens seen", m.get("tokens_seen")), ("params", m.get("n_params")),
            ("val loss", m.get("val_loss")), ("val bits/byte", m.get("val_bpb")),
            ("tokens/s (last step)", m.get("tokens_per_s")), ("model", m["model_uri"])]
    body = "\n".join(f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in rows)
    return f"# pretrain\n\n| | |\n|---|---|\n{body}\n"


def run_pretrain_flow(tokens: str, out: str, preset: str | None = "tiny", max_steps: int | None = None,
                      resume: bool | None = None, overrides: dict[str, Any] | None = None,
                      mlflow_root: str | None = None, ray_address: str | None = None) -> dict[str, Any]:
    """Run the `pretrain` flow; on Ray when a cluster is named or the preset wants GPUs."""
    cfg = load(PretrainConfig, preset, {**(overrides or {}), **({"max_steps": max_steps} if max_steps is not None else {})})
    ensure_prefect_api()  # a real local API (90 s start budget), not a 20 s ephemeral one
    flow_ = pretrain
    if ray_address or cfg.num_gpus > 0:
        flow_ = pretrain.with_options(task_runner=ray_runner(ray_address))
    return flow_(tokens=tokens, out=out, preset=preset, max_steps=max_steps, resume=resume, overrides=overrides,
                 mlflow_root=mlflow_root)


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat pretrain` prints."""
    bpb = m.get("val_bpb")
    return [f"pretrain: {m.get('model_uri')} ({m.get('checkpoint')}), {m.get('step', 'n/a')} steps, "
            f"val loss {num(m.get('val_loss'), '.4f')}" + (f", {num(bpb, '.3f')} bits/byte" if bpb is not None else "")]
