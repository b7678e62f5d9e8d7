"""`reward` flow: model → reward model on preference pairs and rankings → `crawl2chat-reward`.

    reward-train (task) <out>/final (GPT + extra.safetensors head), <out>/manifest.json (held-out accuracy)
    register            MLflow model `crawl2chat-reward@current` (`@latest` = newest version)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.posttrain import RewardConfig
from flows._stage import tracked_stage
from tasks.posttrain import reward_task


@flow(name="reward")
def reward(model: str, out: str, prefs: list[str] | None = None, preset: str | None = "tiny",
           overrides: dict[str, Any] | None = None, mlflow_root: str | None = None) -> dict[str, Any]:
    """Train a reward model from `model` on `prefs` (default: the preset's files); registers `crawl2chat-reward`."""
    cfg = load(RewardConfig, preset, overrides)
    files = list(prefs or cfg.prefs)
    datasets = [(p, "prefs-" + Path(p).name.split(".")[0]) for p in files + list(cfg.rankings)]
    return tracked_stage("reward", "crawl2chat-reward", out, mlflow_root, cfg, preset, {"parent_model": model},
                         datasets, lambda log_fn: reward_task(model, files, out, cfg, log_fn),
                         [f"- preference files: {files}"])


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat reward` prints."""
    return [f"reward: {m.get('model_uri')}; held-out accuracy {num(m.get('val_accuracy'), '.3f')} on "
            f"{m.get('n_val', 'n/a')} pairs"]
