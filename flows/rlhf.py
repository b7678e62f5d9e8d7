"""`rlhf` flow: policy + reward model → GRPO against the RM with a KL penalty → `crawl2chat-rlhf`.

    rlhf-train (task)   <out>/final, <out>/manifest.json (RM score start/end, KL, stop reason)
    register            MLflow model `crawl2chat-rlhf@current` (`@latest` = newest version)

Reward hacking watch: an optional second reward model (`check_reward`, trained
on a different split) or the response length is tracked beside the RM score;
the run stops early when they diverge or the KL bound is crossed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.posttrain import RLHFConfig
from flows._stage import tracked_stage
from tasks.posttrain import rlhf_task


@flow(name="rlhf")
def rlhf(policy: str, reward: str, out: str, check_reward: str | None = None, prompts: list[str] | None = None,
         preset: str | None = "tiny", overrides: dict[str, Any] | None = None,
         mlflow_root: str | None = None) -> dict[str, Any]:
    """Optimise `policy` against reward model `reward`; registers `crawl2chat-rlhf`."""
    cfg = load(RLHFConfig, preset, overrides)
    files = list(prompts or [cfg.prompts_path])
    datasets = [(p, "prompts-" + Path(p).name.split(".")[0]) for p in files]
    inputs = {"parent_model": policy, "reward_model": reward, "check_reward_model": check_reward or ""}
    return tracked_stage("rlhf", "crawl2chat-rlhf", out, mlflow_root, cfg, preset, inputs, datasets,
                         lambda log_fn: rlhf_task(policy, reward, out, cfg, check_reward, files, log_fn),
                         [f"- kl_coef={cfg.kl_coef}, kl_max={cfg.kl_max}"])


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat rlhf` prints."""
    return [f"rlhf: {m.get('model_uri')}; RM score {num(m.get('rm_score_start'))} → {num(m.get('rm_score_end'))}, "
            f"KL {num(m.get('kl_end'))}, stop: {m.get('stop_reason', 'n/a')}"]
