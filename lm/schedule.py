"""Learning-rate schedules as pure functions of the step.

The schedule returns a multiplier in [0, 1] that the training loop applies to
each parameter group's `initial_lr` (see `lm.optim.set_lr`). Keeping it a
function of the step alone means resuming needs no scheduler state beyond the
step itself, and post-training loops reuse it as is.

- `cosine`: linear warmup, then cosine decay to `min_lr_ratio`.
- `wsd` (warmup-stable-decay, "warmdown"): warmup, a constant plateau, then
  a decay to `min_lr_ratio` over the last `decay_frac` of training, of shape
  `decay_shape`: `linear` (modded-nanogpt, nanochat), `sqrt` (1 − √progress,
  Hägele et al. 2024) or `cosine`.
- `constant`: warmup, then flat.

`wd_multiplier` schedules weight decay the same way (`constant`, or `linear`
to zero over training as nanochat does for Muon).
"""
from __future__ import annotations

import math

SCHEDULES = ("cosine", "wsd", "constant")
DECAY_SHAPES = ("linear", "sqrt", "cosine")
WD_SCHEDULES = ("constant", "linear")


def lr_multiplier(step: int, total_steps: int, warmup_steps: int = 0, schedule: str = "cosine",
                  min_lr_ratio: float = 0.1, decay_frac: float = 0.2, decay_shape: str = "linear") -> float:
    """LR multiplier for optimizer step `step` (0-based) of `total_steps`."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")
    if decay_shape not in DECAY_SHAPES:
        raise ValueError(f"unknown decay_shape {decay_shape!r}; choose one of {DECAY_SHAPES}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # wsd
    decay_steps = max(1, round(decay_frac * total_steps))
    decay_start = max(warmup_steps, total_steps - decay_steps)
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
    if decay_shape == "sqrt":
        left = 1.0 - math.sqrt(progress)
    elif decay_shape == "cosine":
        left = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        left = 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * left


def wd_multiplier(step: int, total_steps: int, schedule: str = "constant") -> float:
    """Weight-decay multiplier for step `step`: 1, or falling linearly to 0 at the last step."""
    if schedule not in WD_SCHEDULES:
        raise ValueError(f"unknown weight-decay schedule {schedule!r}; choose one of {WD_SCHEDULES}")
    if schedule == "constant":
        return 1.0
    return max(0.0, 1.0 - step / max(1, total_steps))
