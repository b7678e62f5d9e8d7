"""Supervised fine-tuning on rendered, packed conversations (loss on assistant tokens only).

The pieces every post-training loop shares (runtime, batch order, optimizer schedule,
resumable checkpoints) live in lm/posttrain/loop.py.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from lm.model import GPT
from lm.optim import train_step
from lm.posttrain.policy_gradient import masked_normalize, response_log_probs
from lm.posttrain.loop import (LogFn, apply_schedule, autocast, batch_indices, checkpoint_if_due, make_optimizer,
                               micro_batches, rank_share, save_stage_checkpoint, stage_runtime, try_resume)
from lm.runtime import Runtime, wrap_for_training
from lm.posttrain.sft_data import SFTData
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


# --------------------------------------------------------------------- SFT
def sft_microbatch_loss(log_probs: torch.Tensor, response_mask: torch.Tensor, normalize_constant: float = 1.0,
                        gradient_accumulation_steps: int = 1) -> torch.Tensor:
    """One SFT micro-batch's loss: −Σ log p over response tokens / normalize_constant / accumulation steps.

    Backpropagating it for every micro-batch of a step accumulates the step's
    gradient. The loop passes the constant 1 and lets lm.optim.train_step divide
    by the step's response-token count (over all micro-batches and ranks), so the
    update is the token mean however the rows are split.
    """
    return -masked_normalize(log_probs, response_mask, normalize_constant) / gradient_accumulation_steps


@torch.no_grad()
def evaluate_loss(model: GPT, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int,
                  max_batches: int | None, device: torch.device, dtype: str = "float32") -> float:
    """Token-weighted mean loss over masked targets."""
    model.eval()
    total, count = 0.0, 0
    n = inputs.shape[0]
    for b, s in enumerate(range(0, n, batch_size)):
        if max_batches is not None and b >= max_batches:
            break
        x, y = inputs[s:s + batch_size].to(device), targets[s:s + batch_size].to(device)
        with autocast(device, dtype):
            loss = model(x, targets=y, loss_reduction="none")
        total += float(loss.sum())
        count += int((y >= 0).sum())
    model.train()
    return total / max(1, count)


def train_sft(model: GPT, tokenizer: Tokenizer, data: SFTData, cfg, out_dir: str | Path,
              meta: dict[str, Any] | None = None, log_fn: LogFn | None = None) -> dict[str, Any]:
    """Fine-tune on packed conversations; resumes from `<out_dir>/latest`; writes `<out_dir>/final`.

    A step takes `cfg.batch_size` rows over all ranks (torchrun: each rank its
    share), in micro-batches of `cfg.device_batch_size`; the loss is the mean
    over the step's assistant tokens, however the rows are split.
    """
    out_dir = Path(out_dir)
    rt = stage_runtime(cfg)
    try:
        return _train_sft(model, tokenizer, data, cfg, out_dir, meta, log_fn if rt.master else None, rt)
    finally:
        rt.close()


def _train_sft(model, tokenizer, data, cfg, out_dir, meta, log_fn, rt: Runtime) -> dict[str, Any]:
    device = rt.device
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start, state = try_resume(out_dir, model, opt, device)
    run = wrap_for_training(model, rt, getattr(cfg, "compile", False))
    X, Y = data.train
    Xv, Yv = data.val
    meta = {"kind": "sft", **(meta or {}), "data": data.stats}
    # The figure measured before training travels with the checkpoint: a resumed run reports it too.
    metrics: dict[str, Any] = dict(state.get("start") or {})
    if start == 0:
        metrics["val_loss_start"] = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
        if log_fn:
            log_fn({"val_loss": metrics["val_loss_start"]}, 0)
    start_state = {"start": {"val_loss_start": metrics.get("val_loss_start")}}

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:
        y = Y[rows].to(device)
        return sft_microbatch_loss(response_log_probs(run, X[rows].to(device), y)["log_probs"], y >= 0)

    t0 = time.time()
    for step in range(start, cfg.steps):
        mine = rank_share(batch_indices(X.shape[0], cfg.batch_size, step, cfg.seed), rt)
        lr_mult = apply_schedule(opt, cfg, step)
        n_tok = int((Y[mine] >= 0).sum())
        st = train_step(opt, run, micro_batches(mine, cfg.device_batch_size), loss_fn, cfg.grad_clip,
                        normalizer=n_tok, autocast=rt.autocast)
        if not math.isfinite(st["loss"]):
            raise FloatingPointError(f"SFT loss is {st['loss']} at step {step}; lower the learning rate")
        done = step + 1
        if log_fn and (done % cfg.log_every == 0 or done == cfg.steps):
            log_fn({"train_loss": st["loss"], "grad_norm": st["grad_norm"], "lr_mult": lr_mult,
                    "tokens_per_s": n_tok * rt.world / max(1e-9, time.time() - t0)}, done)
        t0 = time.time()
        if done % cfg.eval_every == 0 or done == cfg.steps:
            vl = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
            metrics["val_loss"] = vl
            if rt.master:
                log.info("sft step %d/%d train_loss %.4f val_loss %.4f", done, cfg.steps, st["loss"], vl)
            if log_fn:
                log_fn({"val_loss": vl}, done)
        checkpoint_if_due(rt, cfg, done, out_dir, model, tokenizer, meta, opt, start_state)
    if "val_loss" not in metrics:
        metrics["val_loss"] = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
    final = out_dir / "final"
    if rt.master:
        save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, cfg.steps, start_state)
        final = save_stage_checkpoint(out_dir / "final", model, tokenizer, {**meta, **metrics}, None, cfg.steps)
    rt.barrier()
    metrics["checkpoint"] = str(final)
    if not math.isfinite(metrics["val_loss"]):
        raise FloatingPointError("SFT validation loss is not finite")
    return metrics
