"""`rl` flow: SFT model → GRPO with verifiable rewards (GSM8K or generated arithmetic) → `crawl2chat-rl`.

    rl-train (task)     <out>/final, <out>/manifest.json (pass@1 before/after on held-out prompts)
    register            MLflow model `crawl2chat-rl@current` (`@latest` = newest version)
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.posttrain import RLConfig
from flows._stage import tracked_stage
from tasks.posttrain import rl_task


@flow(name="rl")
def rl(model: str, out: str, task: str | None = None, preset: str | None = "tiny",
       overrides: dict[str, Any] | None = None, mlflow_root: str | None = None) -> dict[str, Any]:
    """RL on `task` (gsm8k | arithmetic) from `model`; registers `crawl2chat-rl`."""
    cfg = load(RLConfig, preset, {**(overrides or {}), "task": task})
    datasets = [(cfg.gsm8k_path, "gsm8k")] if cfg.task == "gsm8k" else []
    return tracked_stage("rl", "crawl2chat-rl", out, mlflow_root, cfg, preset, {"parent_model": model}, datasets,
                         lambda log_fn: rl_task(model, out, cfg, log_fn),
                         [f"- task: {cfg.task}, k={cfg.samples_per_prompt}, steps={cfg.steps}"])


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat rl` prints."""
    return [f"rl ({m.get('task')}): {m.get('model_uri')}; held-out pass@1 {num(m.get('pass@1_before'), '.3f')} → "
            f"{num(m.get('pass@1_after'), '.3f')}"]
