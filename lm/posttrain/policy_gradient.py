"""Policy-gradient building blocks for RL on language models: small, pure, each tested by hand.

The RL loop (lm/posttrain/rl.py) is assembled from these; the names and meanings of the
knobs follow TRL's GRPOConfig (https://huggingface.co/docs/trl/main/grpo_trainer,
"GRPOConfig"), so a recipe written for TRL reads the same here:

- advantages: `group_normalized_rewards` — r minus its group's mean, divided by
  the group's std (`scale_rewards="group"`), the batch's std (`"batch"`) or
  nothing (`"none"`, Dr. GRPO: the std division up-weights groups that are
  nearly all right or all wrong). TRL divides by the sample std (unbiased);
  `unbiased=False` gives the population std of the GRPO paper's code.
- per-token loss: `per_token_pg_loss` for the objectives
  `grpo_clip` (PPO's clipped surrogate, with DAPO's clip-higher `epsilon_high`
  and GSPO's sequence-level ratio), `reinforce_with_baseline` (−A·log π,
  A the group-normalised advantage) and `no_baseline` (−r·log π); plus β·KL to a
  reference with the k3 estimator.
- aggregation: `loss_sum` / `loss_normalizer` by TRL's `loss_type`:
  `grpo` (mean over each sequence's tokens, then over sequences: long answers
  weigh less per token — Dr. GRPO's length bias), `bnpo` (token mean of each
  micro-batch), `dr_grpo` (token sum / (sequences × max_completion_length), a
  constant), `dapo` (token mean over the whole step's tokens).
- `masked_mean`, `masked_normalize`, `entropy_from_logits`, `response_log_probs`.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
ScaleRewards = Literal["group", "batch", "none"]
Objective = Literal["grpo_clip", "reinforce_with_baseline", "no_baseline"]
ImportanceSamplingLevel = Literal["token", "sequence"]
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
OBJECTIVES = ("grpo_clip", "reinforce_with_baseline", "no_baseline")


# ------------------------------------------------------------------ masks
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is set, over `dim` (None: all elements); 0/0 gives NaN, as a mean of nothing is."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum()
    return (x * m).sum(dim) / m.sum(dim)


def masked_normalize(x: torch.Tensor, mask: torch.Tensor, constant: float, dim: int | None = None) -> torch.Tensor:
    """Sum of x where mask is set, over `dim` (None: all), divided by a constant (Dr. GRPO's fixed normaliser)."""
    m = mask.to(x.dtype)
    return ((x * m).sum() if dim is None else (x * m).sum(dim)) / constant


# --------------------------------------------------------------- policies
def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution at each position: (..., V) logits → (...)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def log_probs_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per position (B, T); 0 where target == -1 (prompt, padding, forced tokens)."""
    return -F.cross_entropy(logits.flatten(0, -2).float(), targets.reshape(-1), ignore_index=-1,
                            reduction="none").view(targets.shape)


def response_log_probs(model, inputs: torch.Tensor, targets: torch.Tensor,
                       return_entropy: bool = False) -> dict[str, torch.Tensor]:
    """Per-token log-probabilities of the response given the prompt (and, optionally, the policy's entropy).

    inputs/targets: (B, T) prompt+response shifted by one, targets −1 outside the
    response (lm.posttrain.rl.build_batch). Returns {"log_probs": (B, T)} and, with
    `return_entropy`, {"entropy": (B, T)} — computed without gradient: it is a
    diagnostic (collapse to ~0 means the policy stopped exploring), not a loss term.
    """
    logits = model(inputs)
    out = {"log_probs": log_probs_from_logits(logits, targets)}
    if return_entropy:
        with torch.no_grad():
            out["entropy"] = entropy_from_logits(logits.detach())
    return out


# ------------------------------------------------------------- advantages
def group_normalized_rewards(rewards: torch.Tensor, scale_rewards: ScaleRewards = "group", unbiased: bool = True,
                             eps: float = 1e-4) -> torch.Tensor:
    """(P, k) rewards, k samples per prompt → (P, k) advantages (r − group mean) / (std + eps).

    scale_rewards: "group" divides by each group's std, "batch" by the std of all
    P·k rewards, "none" not at all (Dr. GRPO). `unbiased`: sample std (TRL) or
    population std. A group whose samples all score the same gets advantage 0.
    """
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_rewards == "none":
        return centred
    if scale_rewards == "group":
        std = rewards.std(dim=1, keepdim=True, unbiased=unbiased) if rewards.shape[1] > 1 else torch.zeros_like(
            rewards[:, :1])
    elif scale_rewards == "batch":
        std = rewards.flatten().std(unbiased=unbiased) if rewards.numel() > 1 else torch.zeros(())
    else:
        raise ValueError(f"scale_rewards must be group, batch or none, not {scale_rewards!r}")
    return centred / (std + eps)


def zero_std_fraction(rewards: torch.Tensor) -> float:
    """Share of groups (rows of (P, k) rewards) whose samples all scored the same: they teach nothing."""
    return float((rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean())


# ------------------------------------------------------------- the losses
def importance_ratio(logp: torch.Tensor, logp_old: torch.Tensor, mask: torch.Tensor,
                     level: ImportanceSamplingLevel = "token") -> torch.Tensor:
    """π/π_old per token, or per sequence (GSPO): exp(mean over the sequence's tokens of log π − log π_old),
    the geometric mean of the token ratios, broadcast over the sequence's tokens. (N, T) → (N, T) or (N, 1)."""
    log_ratio = logp - logp_old
    if level == "token":
        return torch.exp(log_ratio)
    if level == "sequence":
        m = mask.to(log_ratio.dtype)
        return torch.exp((log_ratio * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0))
    raise ValueError(f"importance_sampling_level must be token or sequence, not {level!r}")


def per_token_pg_loss(objective: Objective, logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                      logp_old: torch.Tensor | None = None, epsilon: float = 0.2, epsilon_high: float | None = None,
                      importance_sampling_level: ImportanceSamplingLevel = "token",
                      logp_ref: torch.Tensor | None = None, beta: float = 0.0
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The per-token policy-gradient loss (N, T) of one objective, + β·KL(π‖π_ref) (k3) where β > 0.

    advantages: (N,) — for `no_baseline`, the raw rewards. `grpo_clip`:
    −min(ρA, clip(ρ, 1−ε, 1+ε_high)A) with ρ = π/π_old per token or per sequence.
    The others are on-policy: −A·log π (no ratio, no clip). Returns the loss and
    the per-token diagnostics (no gradient): `clipped_low` (ρ < 1−ε with A < 0),
    `clipped_high` (ρ > 1+ε_high with A > 0), `kl` where a reference is given.
    """
    adv = advantages[:, None].to(logp.dtype)
    stats: dict[str, torch.Tensor] = {}
    if objective == "grpo_clip":
        if logp_old is None:
            raise ValueError("grpo_clip needs logp_old, the log-probabilities under the policy that sampled")
        eps_high = epsilon if epsilon_high is None else epsilon_high
        ratio = importance_ratio(logp, logp_old, mask, importance_sampling_level)
        per_tok = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - epsilon, 1 + eps_high) * adv)
        with torch.no_grad():
            r = ratio.expand_as(logp)
            stats["clipped_low"] = ((r < 1 - epsilon) & (adv < 0)).to(logp.dtype)
            stats["clipped_high"] = ((r > 1 + eps_high) & (adv > 0)).to(logp.dtype)
    elif objective in ("reinforce_with_baseline", "no_baseline"):
        per_tok = -adv * logp
    else:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    if logp_ref is not None:
        d = logp_ref - logp
        kl = torch.exp(d) - d - 1  # k3: unbiased, ≥ 0, low variance (Schulman's "approximating KL")
        stats["kl"] = kl.detach()
        if beta:
            per_tok = per_tok + beta * kl
    return per_tok, stats


def loss_sum(per_token: torch.Tensor, mask: torch.Tensor, loss_type: LossType) -> torch.Tensor:
    """The numerator of a step's loss over these rows: per-sequence token means summed (`grpo`), the token mean
    (`bnpo`: each micro-batch its own mean) or the token sum (`dr_grpo`, `dapo`)."""
    m = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).sum()
    if loss_type == "bnpo":
        return (per_token * m).sum() / m.sum().clamp(min=1.0)
    if loss_type in ("dr_grpo", "dapo"):
        return (per_token * m).sum()
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {loss_type!r}")


def loss_normalizer(mask: torch.Tensor, loss_type: LossType, max_completion_length: int | None = None) -> float:
    """What `loss_sum` of these rows is divided by: sequences (`grpo`), 1 per micro-batch (`bnpo`),
    sequences × max_completion_length (`dr_grpo`), response tokens (`dapo`)."""
    if loss_type == "grpo":
        return float(mask.shape[0])
    if loss_type == "bnpo":
        return 1.0
    if loss_type == "dr_grpo":
        if not max_completion_length:
            raise ValueError("dr_grpo divides by max_completion_length: give it")
        return float(mask.shape[0] * max_completion_length)
    if loss_type == "dapo":
        return float(mask.sum())
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {loss_type!r}")


def aggregate_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: LossType,
                   max_completion_length: int | None = None) -> torch.Tensor:
    """One batch's scalar loss under `loss_type` (the loop splits it into micro-batches with the two parts above)."""
    return loss_sum(per_token, mask, loss_type) / max(loss_normalizer(mask, loss_type, max_completion_length), 1e-9)
