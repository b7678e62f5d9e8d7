"""Supervised fine-tuning on rendered, packed conversations (loss on assistant tokens only).

Also holds the small pieces every post-training loop shares: device choice,
deterministic batch order, and resumable checkpoints. Randomness in every loop
is derived from (seed, step), so resuming at step s replays exactly what an
uninterrupted run would have done: the only state to restore is the weights,
the optimizer moments and the step.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lm.checkpoint import load_extra, load_train_state, load_weights, save_checkpoint
from lm.model import GPT
from lm.optim import build_optimizer, optimizer_step, set_lr
from lm.schedule import lr_multiplier
from lm.sft_data import SFTData
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]


# ------------------------------------------------------------------ shared
def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, dtype: str):
    """bf16 autocast on GPU when asked; a no-op on CPU (exact, reproducible tests)."""
    if device.type == "cuda" and dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A per-step seed: the same step always draws the same randomness (exact resume)."""
    return (seed * 1_000_003 + step * 7919 + salt * 104_729) % (2**31 - 1)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of batch `step` walking shuffled epochs of n items (pure function of step)."""
    out = []
    start = step * batch_size
    for pos in range(start, start + batch_size):
        epoch, i = divmod(pos, n)
        g = torch.Generator().manual_seed(step_seed(seed, epoch, salt=1))
        out.append(int(torch.randperm(n, generator=g)[i]))
    return torch.tensor(out, dtype=torch.long)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 0.0):
    return build_optimizer(model, optimizer="adamw", lr=lr, weight_decay=weight_decay)


def apply_schedule(opt, cfg, step: int) -> float:
    m = lr_multiplier(step, cfg.steps, cfg.warmup_steps, cfg.schedule)
    set_lr(opt, m)
    return m


def save_stage_checkpoint(directory: Path, model: torch.nn.Module, tokenizer: Tokenizer, meta: dict,
                          opt=None, step: int = 0, state: dict | None = None,
                          extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """A checkpoint; with `opt`, resumable (optimizer state + step + loop state)."""
    train_state = None
    if opt is not None:
        train_state = {"step": step, "optimizer": opt.state_dict(), "state": state or {}}
    return save_checkpoint(directory, model, tokenizer, {**meta, "step": step}, train_state, extra_tensors)


def try_resume(directory: Path, model: torch.nn.Module, opt, device: torch.device,
               extra_module: torch.nn.Module | None = None) -> tuple[int, dict]:
    """Restore weights + optimizer from `directory` if it holds a resumable checkpoint; returns (step, state)."""
    ts = load_train_state(directory) if (directory / "config.json").exists() else None
    if ts is None:
        return 0, {}
    model.load_state_dict(load_weights(directory, device))
    if extra_module is not None:
        extra_module.load_state_dict(load_extra(directory, device))
    opt.load_state_dict(ts["optimizer"])
    log.info("resumed from %s at step %d", directory, ts["step"])
    return int(ts["step"]), dict(ts.get("state") or {})


def token_logprobs(model: GPT, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target | prefix) per position (B, T); 0 where targets == -1."""
    return -model(inputs, targets=targets, loss_reduction="none")


# --------------------------------------------------------------------- SFT
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
    """Fine-tune on packed conversations; resumes from `<out_dir>/latest`; writes `<out_dir>/final`."""
    out_dir = Path(out_dir)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start, _ = try_resume(out_dir / "latest", model, opt, device)
    X, Y = data.train
    Xv, Yv = data.val
    meta = {"kind": "sft", **(meta or {}), "data": data.stats}
    metrics: dict[str, Any] = {}
    if start == 0:
        metrics["val_loss_start"] = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
        if log_fn:
            log_fn({"val_loss": metrics["val_loss_start"]}, 0)
    t0 = time.time()
    for step in range(start, cfg.steps):
        idx = batch_indices(X.shape[0], cfg.batch_size, step, cfg.seed)
        x, y = X[idx].to(device), Y[idx].to(device)
        lr_mult = apply_schedule(opt, cfg, step)
        with autocast(device, cfg.dtype):
            loss = model(x, targets=y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SFT loss is {loss.item()} at step {step}; lower the learning rate")
        gnorm = optimizer_step(opt, loss, model.parameters(), cfg.grad_clip)
        done = step + 1
        if log_fn and (done % cfg.log_every == 0 or done == cfg.steps):
            log_fn({"train_loss": loss.item(), "grad_norm": gnorm, "lr_mult": lr_mult,
                    "tokens_per_s": float((y >= 0).sum()) / max(1e-9, time.time() - t0)}, done)
        t0 = time.time()
        if done % cfg.eval_every == 0 or done == cfg.steps:
            vl = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
            metrics["val_loss"] = vl
            log.info("sft step %d/%d train_loss %.4f val_loss %.4f", done, cfg.steps, loss.item(), vl)
            if log_fn:
                log_fn({"val_loss": vl}, done)
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, done)
    if "val_loss" not in metrics:
        metrics["val_loss"] = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
    save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, cfg.steps)
    final = save_stage_checkpoint(out_dir / "final", model, tokenizer, {**meta, **{k: v for k, v in metrics.items()}},
                                  None, cfg.steps)
    metrics["checkpoint"] = str(final)
    if not math.isfinite(metrics["val_loss"]):
        raise FloatingPointError("SFT validation loss is not finite")
    return metrics
