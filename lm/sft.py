"""Supervised fine-tuning on rendered, packed conversations (loss on assistant tokens only).

Also holds the small pieces every post-training loop shares: device choice,
deterministic batch order, and resumable checkpoints. Randomness in every loop
is derived from (seed, step), so resuming at step s replays exactly what an
uninterrupted run would have done: the only state to restore is the weights,
the optimizer moments and the step.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lm.checkpoint import load_extra, load_train_state, load_weights, save_checkpoint
from lm.model import GPT
from lm.optim import build_optimizer, set_lr, train_step
from lm.runtime import Runtime, autocast_context, resolve_device, resolve_dtype, setup_runtime, wrap_for_training
from lm.schedule import lr_multiplier
from lm.sft_data import SFTData
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]


# ------------------------------------------------------------------ shared
def pick_device(name: str = "auto") -> torch.device:
    return resolve_device(name)


def _autocast_dtype(device: torch.device, dtype: str) -> torch.dtype:
    """bf16 on GPU when asked; fp32 on CPU always (exact, reproducible tests)."""
    return resolve_dtype(dtype, device) if device.type == "cuda" else torch.float32


def autocast(device: torch.device, dtype: str):
    """bf16 autocast on GPU when asked; a no-op on CPU (exact, reproducible tests)."""
    return autocast_context(device, _autocast_dtype(device, dtype))


def stage_runtime(cfg) -> Runtime:
    """Device, autocast dtype and (under torchrun) the process group of a post-training stage."""
    rt = setup_runtime(cfg.device, "float32")
    rt.dtype = _autocast_dtype(rt.device, cfg.dtype)
    return rt


def rank_share(items, rt: Runtime):
    """This rank's contiguous share of a step's items (all of them alone); the count must divide evenly."""
    n = len(items)
    if n % rt.world:
        raise ValueError(f"a step's {n} items do not split evenly over {rt.world} ranks; "
                         "make the batch size a multiple of the number of processes")
    per = n // rt.world
    return items[rt.rank * per:(rt.rank + 1) * per]


def micro_batches(items, device_batch_size: int | None) -> list:
    """Cut items into micro-batches of `device_batch_size` (None: one micro-batch)."""
    mb = device_batch_size or len(items)
    return [items[i:i + mb] for i in range(0, len(items), mb)]


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
    start, _ = try_resume(out_dir / "latest", model, opt, device)
    run = wrap_for_training(model, rt, getattr(cfg, "compile", False))
    X, Y = data.train
    Xv, Yv = data.val
    meta = {"kind": "sft", **(meta or {}), "data": data.stats}
    metrics: dict[str, Any] = {}
    if start == 0:
        metrics["val_loss_start"] = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
        if log_fn:
            log_fn({"val_loss": metrics["val_loss_start"]}, 0)

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:
        return run(X[rows].to(device), targets=Y[rows].to(device), loss_reduction="sum")

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
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            if rt.master:
                save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, done)
            rt.barrier()
    if "val_loss" not in metrics:
        metrics["val_loss"] = evaluate_loss(model, Xv, Yv, cfg.batch_size, cfg.eval_batches, device, cfg.dtype)
    final = out_dir / "final"
    if rt.master:
        save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, cfg.steps)
        final = save_stage_checkpoint(out_dir / "final", model, tokenizer, {**meta, **metrics}, None, cfg.steps)
    rt.barrier()
    metrics["checkpoint"] = str(final)
    if not math.isfinite(metrics["val_loss"]):
        raise FloatingPointError("SFT validation loss is not finite")
    return metrics
