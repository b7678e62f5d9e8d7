"""Where training metrics go: pluggable loggers for every training loop.

`TrainLogger` is the interface (and a no-op): `log_params`, `log_metrics`,
`log_text`, `log_artifact`, `close`. Implementations:
- `JsonlLogger`: one JSON line per call in a file (flushed each line, so a
  killed run keeps everything it logged); the default record of a run.
- `MLflowLogger`: MLflow, imported lazily. It logs to an explicit run id (or
  the run active when it is built) through `MlflowClient`, so it also works
  from a worker thread or a torchrun child that has no active run of its own.
  Without mlflow or without a run it is a no-op: lm/ runs on torch alone.
- `CallbackLogger`: wraps a plain `fn(metrics, step)`.
- `MultiLogger`: fans out to several.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

# The one scheme of MLflow metric names, shared by every training stage so MLflow's run
# comparison lines pretrain, SFT, RL, reward and DPO up (docs/CONTRACTS.md, "Metric names").
# Loops keep short keys in memory and in metrics.jsonl; every MLflow sink maps them here.
METRIC_NAMES = {
    "loss": "train/loss", "train_loss": "train/loss", "lr": "train/lr", "lr_mult": "train/lr_mult",
    "grad_norm": "train/grad_norm", "step_time_s": "train/step_time_s", "tokens_seen": "train/tokens_seen",
    "tokens_per_s": "throughput/tok_per_s", "mfu": "throughput/mfu",
    "gen_tokens_per_s": "throughput/gen_tok_per_s", "gen_s": "throughput/gen_s",
    "val_loss": "val/loss", "val_bpb": "val/bpb", "val_accuracy": "val/accuracy",
    "reward_mean": "rl/reward_mean", "response_len": "rl/response_len", "kl": "rl/kl", "clip_frac": "rl/clip_frac",
    # GRPO diagnostics (lm/posttrain/rl.py; TRL logs the same quantities as entropy, clip_ratio/*, frac_reward_zero_std, ...)
    "reward_std": "rl/reward_std", "frac_reward_zero_std": "rl/frac_reward_zero_std", "entropy": "rl/entropy",
    "clip_frac_low": "rl/clip_frac_low", "clip_frac_high": "rl/clip_frac_high", "truncated_frac": "rl/truncated_frac",
    "completions": "rl/completions", "update_skipped": "rl/update_skipped", "check_rm": "rl/check_rm_score",
}


def metric_name(key: str) -> str:
    """The MLflow name of a loop's metric key: `train/loss`, `val/bpb`, `rl/pass_at_1`, ...

    A key that already has a namespace (`val/...`, `eval/...`) keeps it; `pass@k` becomes
    `rl/pass_at_k` (MLflow refuses `@`); any other per-step key is a training series, `train/<key>`.
    """
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    if key.startswith("pass@"):
        return "rl/" + key.replace("@", "_at_")
    key = key.replace("@", "_at_")
    return key if "/" in key else f"train/{key}"


class TrainLogger:
    """Logger interface; the base class ignores everything."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_text(self, text: str, name: str, step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlLogger(TrainLogger):
    """Append `{"step", "kind", ...}` records to a JSON-lines file."""

    def __init__(self, path: str | Path, append: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a" if append else "w", encoding="utf-8")

    def _write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()

    def log_params(self, params: dict[str, Any]) -> None:
        self._write({"kind": "params", **params})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._write({"kind": "metrics", "step": step, **metrics})

    def log_text(self, text: str, name: str, step: int | None = None) -> None:
        self._write({"kind": "text", "name": name, "step": step, "text": text})

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def read_jsonl_metrics(path: str | Path) -> dict[int, dict[str, float]]:
    """Metrics records of a JsonlLogger file by step (a later record of a step wins)."""
    out: dict[int, dict[str, float]] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("kind") == "metrics":
            out.setdefault(int(rec["step"]), {}).update({k: v for k, v in rec.items() if k not in ("kind", "step")})
    return out


class CallbackLogger(TrainLogger):
    """Call `fn(metrics, step)` for every metrics record."""

    def __init__(self, fn: Callable[[dict[str, float], int], None]):
        self.fn = fn

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.fn(metrics, step)


class MultiLogger(TrainLogger):
    """Send every call to each logger in order."""

    def __init__(self, *loggers: TrainLogger | None):
        self.loggers = [lg for lg in loggers if lg is not None]

    def log_params(self, params):
        for lg in self.loggers:
            lg.log_params(params)

    def log_metrics(self, metrics, step):
        for lg in self.loggers:
            lg.log_metrics(metrics, step)

    def log_text(self, text, name, step=None):
        for lg in self.loggers:
            lg.log_text(text, name, step)

    def log_artifact(self, path, artifact_path=None):
        for lg in self.loggers:
            lg.log_artifact(path, artifact_path)

    def close(self):
        for lg in self.loggers:
            lg.close()


class MLflowLogger(TrainLogger):
    """Log to an MLflow run if mlflow is importable and a run is given or active."""

    def __init__(self, run_id: str | None = None, tracking_uri: str | None = None):
        self.client = None
        self.run_id = None
        try:
            import mlflow
            from mlflow import MlflowClient
        except ImportError:
            log.info("mlflow not installed: MLflow logging off")
            return
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        if run_id is None:
            active = mlflow.active_run()
            run_id = active.info.run_id if active else os.environ.get("MLFLOW_RUN_ID")
        if not run_id:
            log.info("no active MLflow run: MLflow logging off")
            return
        self.client = MlflowClient(tracking_uri=uri or mlflow.get_tracking_uri())
        self.run_id = run_id

    @property
    def enabled(self) -> bool:
        return self.client is not None

    def log_params(self, params: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        # MLflow refuses to change a logged param; a resumed run re-logs the same ones.
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), 90):
            self.client.log_batch(self.run_id, params=items[i:i + 90])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(metric_name(k), float(v), ts, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_text(self, text: str, name: str, step: int | None = None) -> None:
        if not self.enabled:
            return
        fname = f"{name}/step_{step:06d}.txt" if step is not None else f"{name}.txt"
        self.client.log_text(self.run_id, text, fname)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(p), artifact_path)
