"""`sft` flow: base model → supervised fine-tuning on chat data → `crawl2chat-sft`.

    sft-train (task)    <out>/final (+ <out>/latest, resumable)
    register            MLflow model `crawl2chat-sft@current` (`@latest` = newest version)
    manifest            <out>/manifest.json, written last (flows/_stage.tracked_stage)
"""
from __future__ import annotations

from typing import Any

from prefect import flow

from core.fmt import num
from conf import load
from conf.posttrain import SFTConfig
from flows._stage import tracked_stage
from tasks.posttrain import sft_task


@flow(name="sft")
def sft(model: str, out: str, preset: str | None = "tiny", overrides: dict[str, Any] | None = None,
        mlflow_root: str | None = None) -> dict[str, Any]:
    """Fine-tune `model` (checkpoint dir or models:/ URI) on chat data; registers `crawl2chat-sft`."""
    cfg = load(SFTConfig, preset, overrides)
    datasets = [(cfg.alpaca_path, "sft-alpaca"), (cfg.glaive_path, "sft-glaive-toolcall"),
                (cfg.refusal_data if cfg.refusal_ratio > 0 else None, "sft-refusal-generated")]  # the probe's output
    if cfg.search_index and cfg.search_ratio > 0:  # GENERATED search conversations come from this index
        datasets.append((cfg.search_index, "search-index"))
    return tracked_stage("sft", "crawl2chat-sft", out, mlflow_root, cfg, preset, {"parent_model": model}, datasets,
                         lambda log_fn: sft_task(model, out, cfg, log_fn),
                         [f"- generated: {cfg.n_identity} identity, {cfg.n_arithmetic} arithmetic, "
                          f"{cfg.n_python} python-tool conversations; persona {cfg.persona.name!r} "
                          f"as system message in {cfg.persona_system_fraction:.0%}"])


def summary(m: dict[str, Any]) -> list[str]:
    """What `crawl2chat sft` prints (every figure optional: see core/fmt.py)."""
    data = m.get("data") or {}
    return [f"sft: {m.get('model_uri')} ({m.get('checkpoint')}), val loss {num(m.get('val_loss_start'), '.4f')} → "
            f"{num(m.get('val_loss'), '.4f')}",
            f"data: kept {data.get('kept', 'n/a')}, skipped {data.get('skipped', 'n/a')}"]
