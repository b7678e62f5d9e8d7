"""Pretraining as a task: run `lm.train` in this worker, or torchrun for >1 process.

`run_pretrain` is the plain function (no Prefect needed); `pretrain_task` is
its Prefect wrapper. One process trains in-process, logging to MLflow through
`lm.tracking.MLflowLogger` with an explicit run id (works from a worker
thread or a Ray worker). `nproc_per_node > 1` launches
`torchrun -m lm.train` (the same script) and passes the run id along; rank 0
logs.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import task

from core.atomic import write_text

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_pretrain(tokens: str, out: str, config: dict[str, Any], resume: bool = False,
                 mlflow_run_id: str | None = None, tracking_uri: str | None = None,
                 progress: Callable[[dict[str, float], int], None] | None = None) -> dict[str, Any]:
    """Train on `tokens` into `out` with a PretrainSettings dict; returns the run summary.

    `mlflow_run_id` + `tracking_uri` name the MLflow run to log to; pass the URI
    explicitly, since a Ray worker or torchrun child does not share the
    driver's `mlflow.set_tracking_uri`. `progress(metrics, step)` also gets every
    metrics record (one process only: tasks/progress.StageProgress).
    """
    from lm.tracking import CallbackLogger, MLflowLogger, MultiLogger
    from conf.pretrain import PretrainSettings
    from lm.train import train

    cfg = PretrainSettings.from_dict(config)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.nproc_per_node <= 1:
        logger = MLflowLogger(mlflow_run_id, tracking_uri) if mlflow_run_id else None
        if progress is not None:
            logger = MultiLogger(logger, CallbackLogger(progress))
        return train(cfg, tokens, out_dir, resume=resume, logger=logger)
    return _run_torchrun(tokens, out_dir, cfg, resume, mlflow_run_id, tracking_uri)


def _run_torchrun(tokens: str, out_dir: Path, cfg, resume: bool, mlflow_run_id: str | None,
                  tracking_uri: str | None) -> dict[str, Any]:
    cfg_path = out_dir / "train_config.json"
    write_text(cfg_path, json.dumps(cfg.model_dump(), indent=2))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc_per_node}",
           "-m", "lm.train", "--tokens", str(tokens), "--out", str(out_dir), "--config", str(cfg_path)]
    if resume:
        cmd.append("--resume")
    if mlflow_run_id:
        cmd += ["--mlflow-run-id", mlflow_run_id]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    log.info("launching %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 143:
        return json.loads(lines[-1]) if lines else {"status": "interrupted"}
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"torchrun training failed with exit code {proc.returncode} (see the log above); "
                           f"resume with --resume once fixed: {' '.join(cmd)}")
    return json.loads(lines[-1])


@task(name="pretrain-train", retries=0, log_prints=True)
def pretrain_task(tokens: str, out: str, config: dict[str, Any], resume: bool = False,
                  mlflow_run_id: str | None = None, tracking_uri: str | None = None) -> dict[str, Any]:
    """Prefect wrapper of `run_pretrain` (on Ray, the flow asks for GPUs via remote_options).

    Step progress goes to this run's Prefect log and a progress artifact (tasks/progress.py).
    """
    from tasks.progress import StageProgress

    progress = StageProgress("pretrain", int(config.get("max_steps") or 0))
    return run_pretrain(tokens, out, config, resume=resume, mlflow_run_id=mlflow_run_id, tracking_uri=tracking_uri,
                        progress=progress)
