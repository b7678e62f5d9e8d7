"""`dpo` flow: SFT model → direct preference optimisation (frozen reference) → `crawl2chat-dpo`.

    dpo-train (task)    <out>/final, <out>/manifest.json (implicit-reward margins, accuracy)
    register            MLflow model `crawl2chat-dpo@current` (`@latest` = newest version)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.posttrain import DPOConfig
from flows._stage import tracked_stage
from tasks.posttrain import dpo_task


@flow(name="dpo")
def dpo(model: str, out: str, prefs: list[str] | None = None, preset: str | None = "tiny",
        overrides: dict[str, Any] | None = None, mlflow_root: str | None = None) -> dict[str, Any]:
    """DPO of `model` on `prefs` (default: the preset's files); registers `crawl2chat-dpo`."""
    cfg = load(DPOConfig, preset, overrides)
    files = list(prefs or cfg.prefs)
    datasets = [(p, "prefs-" + Path(p).name.split(".")[0]) for p in files]
    return tracked_stage("dpo", "crawl2chat-dpo", out, mlflow_root, cfg, preset, {"parent_model": model},
                         datasets, lambda log_fn: dpo_task(model, files, out, cfg, log_fn),
                         [f"- preference files: {files}, beta={cfg.beta}"])


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat dpo` prints."""
    val = m.get("val") or {}
    return [f"dpo: {m.get('model_uri')}; held-out margin {num(val.get('margin'))}, "
            f"accuracy {num(val.get('accuracy'), '.3f')}"]
