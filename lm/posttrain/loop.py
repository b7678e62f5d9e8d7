"""What every post-training loop (sft, rl, reward, rlhf, dpo) shares: runtime, deterministic
batch order, the optimizer and its schedule, and resumable checkpoints.

Randomness in every loop is derived from (seed, step), so resuming at step s replays
exactly what an uninterrupted run would have done: the only state to restore is the
weights, the optimizer moments and the step. Which checkpoint to resume from is the one
resolver's answer (core.run_root.resolve_checkpoint).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from core.run_root import resolve_checkpoint
from lm.checkpoint import load_extra, load_train_state, load_weights, save_checkpoint
from lm.model import GPT
from lm.optim import build_optimizer, set_lr
from lm.runtime import Runtime, autocast_context, resolve_dtype, setup_runtime
from lm.schedule import lr_multiplier
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]


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


def checkpoint_if_due(rt: Runtime, cfg, done: int, out_dir: Path, model: torch.nn.Module, tokenizer: Tokenizer,
                      meta: dict, opt, state: dict | None = None,
                      extra_tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Every `cfg.checkpoint_every` steps short of the last (the end writes `final/`): rank 0 saves
    a resumable `latest/`, and every rank waits for it, so no rank runs ahead of a checkpoint."""
    if done % cfg.checkpoint_every == 0 and done < cfg.steps:
        if rt.master:
            save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, done, state, extra_tensors)
        rt.barrier()


def resume_step(out_dir: str | Path) -> int:
    """The step a re-run in `out_dir` resumes at (0: starts afresh), without loading the state."""
    from lm.checkpoint import read_meta

    directory = resolve_checkpoint(out_dir, purpose="resume")
    return int(read_meta(directory).get("step", 0)) if directory is not None else 0


def try_resume(out_dir: Path, model: torch.nn.Module, opt, device: torch.device,
               extra_module: torch.nn.Module | None = None) -> tuple[int, dict]:
    """Restore weights + optimizer from the stage's resumable checkpoint, if any; returns (step, state).

    `out_dir` is the stage's output directory; which checkpoint in it to resume from
    is the one resolver's answer (core.run_root.resolve_checkpoint).
    """
    directory = resolve_checkpoint(out_dir, purpose="resume")
    ts = load_train_state(directory) if directory is not None else None
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
