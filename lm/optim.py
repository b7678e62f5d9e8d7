"""Optimizers for the GPT: AdamW (fused on GPU) and Muon for hidden matrices.

Parameter groups (`param_groups`):
- `embedding`: the token embedding. No weight decay (decaying rows of tokens
  that are rarely seen only shrinks them), its own learning rate.
- `head`: the output projection. Weight decay, AdamW even under Muon (Muon is
  meant for hidden matrices, not for the input/output layers).
- `matrix`: the 2-D weights inside the blocks. Weight decay; Muon when asked.
- `other`: anything of fewer than two dimensions (gains, biases, scalars), no
  weight decay. The stock model has none, but subclasses (reward heads) may.

Every group carries `initial_lr` and `initial_weight_decay`; `set_lr(opt,
multiplier, wd_multiplier)` applies the schedules to all of them, so resuming
needs only the step (see lm/schedule.py).

Hyperparameter transfer (`hparam_scales`, docs/DESIGN.md "Learning rates
across batch and width"): learning rates and weight decays are tuned at a
reference batch (tokens per step) and width, and scaled to the run's:
AdamW lr × √(batch/ref_batch) × (width/ref_width)^-½; Muon lr × √(batch/
ref_batch) (its update is orthogonalised and shape-scaled, so its spectral
size does not depend on width); weight decay × √(batch/ref_batch), so lr·wd
grows with the batch and the decay per *token* is unchanged; AdamW weight
decay also × (width/ref_width)^½, so lr·wd per step is unchanged by width.
A reference of 0 means "no scaling" for that axis.
`build_optimizer` is what SFT/DPO/RL reuse, and `train_step` is their one
update: gradient accumulation over micro-batches, loss scaling, DDP sync on
the last micro-batch, clipping, step.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, Iterable

import torch
import torch.nn as nn

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "muon")


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def param_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Split trainable parameters into embedding / head / matrix / other."""
    base = _unwrap(model)
    embedding_ids = {id(m.weight) for m in base.modules() if isinstance(m, nn.Embedding)}
    head = getattr(base, "lm_head", None)
    head_ids = {id(head.weight)} if head is not None else set()
    groups: dict[str, list[nn.Parameter]] = {"embedding": [], "head": [], "matrix": [], "other": []}
    seen: set[int] = set()
    for p in base.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))  # tied weights appear once
        if id(p) in embedding_ids:
            groups["embedding"].append(p)
        elif id(p) in head_ids:
            groups["head"].append(p)
        elif p.dim() >= 2:
            groups["matrix"].append(p)
        else:
            groups["other"].append(p)
    return groups


def zeropower_via_newtonschulz5(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise a matrix (quintic Newton–Schulz, as in Muon).

    Runs in bf16 on GPU (fast, and the iteration tolerates it); float32 on CPU,
    where bf16 matmuls are slow and we want bit-reproducible tests.
    """
    a, b, c = (3.4445, -4.7750, 2.0315)
    x = g.bfloat16() if g.is_cuda else g.float()
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = x @ x.mT
        B = b * A + c * A @ A
        x = a * x + B @ x
    if transposed:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """MomentUm Orthogonalized by Newton–Schulz, for 2-D hidden weights.

    SGD-momentum (Nesterov) whose update is replaced by its nearest semi-
    orthogonal matrix, scaled by sqrt(max(1, rows/cols)). Under DDP every rank
    holds the same averaged gradients, so every rank computes the same update.
    """

    def __init__(self, params: Iterable[nn.Parameter] | Iterable[dict], lr: float = 0.02,
                 momentum: float = 0.95, nesterov: bool = True, weight_decay: float = 0.0, ns_steps: int = 5):
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.dim() < 2 for p in params):
                raise ValueError("Muon only takes parameters with ≥2 dims; put others in AdamW")
            # Same-shape matrices are orthogonalised as one batch: a GPT has a
            # handful of shapes, so this is a few large matmuls instead of
            # hundreds of small kernel launches.
            by_shape: dict[tuple[int, ...], list[nn.Parameter]] = {}
            for p in params:
                by_shape.setdefault(tuple(p.shape), []).append(p)
            for shape, ps in by_shape.items():
                bufs = []
                for p in ps:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    bufs.append(state["momentum_buffer"])
                grads = [p.grad for p in ps]
                torch._foreach_lerp_(bufs, grads, 1 - group["momentum"])
                if group["nesterov"]:
                    g = torch.stack(grads).lerp_(torch.stack(bufs), group["momentum"])
                else:
                    g = torch.stack(bufs)
                g = g.reshape(len(ps), shape[0], -1)
                update = zeropower_via_newtonschulz5(g, group["ns_steps"])
                scale = max(1.0, g.size(-2) / g.size(-1)) ** 0.5
                if group["weight_decay"]:
                    torch._foreach_mul_(ps, 1 - group["lr"] * group["weight_decay"])
                torch._foreach_add_(ps, list(update.view(len(ps), *shape).unbind(0)), alpha=-group["lr"] * scale)
        return loss


class MultiOptimizer:
    """Several optimizers stepped together, with one `param_groups` view.

    Duck-types the parts of `torch.optim.Optimizer` the training loops use:
    `step`, `zero_grad`, `param_groups`, `state_dict`, `load_state_dict`.
    """

    def __init__(self, optimizers: list[torch.optim.Optimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("optimizers")
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            raise ValueError("optimizer state does not match this optimizer setup "
                             "(was the checkpoint written with a different `optimizer` setting?)")
        for o, s in zip(self.optimizers, parts):
            o.load_state_dict(s)


def hparam_scales(batch_tokens: int = 0, ref_batch_tokens: int = 0, width: int = 0,
                  ref_width: int = 0) -> dict[str, float]:
    """Factors that carry lrs and weight decays tuned at (ref_batch_tokens, ref_width) to (batch_tokens, width).

    Keys: `adamw_lr`, `muon_lr`, `adamw_wd`, `muon_wd` (see the module
    docstring for the rules). An axis whose reference (or run value) is 0 is
    not scaled, so every factor is exactly 1.0 when the references match the
    run or are unset.
    """
    for name, v in (("batch_tokens", batch_tokens), ("ref_batch_tokens", ref_batch_tokens),
                    ("width", width), ("ref_width", ref_width)):
        if v < 0:
            raise ValueError(f"{name} must be ≥ 0 (0: no scaling), got {v}")
    b = batch_tokens / ref_batch_tokens if batch_tokens and ref_batch_tokens else 1.0
    w = width / ref_width if width and ref_width else 1.0
    return {"adamw_lr": b ** 0.5 * w ** -0.5, "muon_lr": b ** 0.5,
            "adamw_wd": b ** 0.5 * w ** 0.5, "muon_wd": b ** 0.5}


def build_optimizer(model: nn.Module, *, optimizer: str = "adamw", lr: float = 3e-3,
                    embedding_lr: float | None = None, muon_lr: float = 0.02, weight_decay: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, muon_momentum: float = 0.95,
                    fused: bool | None = None, batch_tokens: int = 0, ref_batch_tokens: int = 0,
                    ref_width: int = 0):
    """AdamW over all groups, or Muon for block matrices + AdamW for the rest.

    `fused=None` picks the fused CUDA AdamW kernel when the model is on a GPU
    (one kernel launch for all parameters) and the plain foreach one on CPU.
    `batch_tokens`/`ref_batch_tokens`/`ref_width` scale the given lrs and
    weight decays by `hparam_scales` (the model's width is `config.n_embd`);
    all 0 (the default): used as given. Returns a `torch.optim.Optimizer`
    (adamw) or a `MultiOptimizer` (muon); every param group has `name`,
    `initial_lr`, `initial_weight_decay` and `lr_scale` (the factor applied).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    groups = param_groups(model)
    width = int(getattr(getattr(_unwrap(model), "config", None), "n_embd", 0) or 0)
    if ref_width and not width:
        raise ValueError("ref_width is set but the model has no config.n_embd to scale from")
    sc = hparam_scales(batch_tokens, ref_batch_tokens, width, ref_width)
    embedding_lr = lr if embedding_lr is None else embedding_lr
    on_cuda = any(p.is_cuda for ps in groups.values() for p in ps)
    if fused is None:
        fused = on_cuda
    adam_specs = [("embedding", embedding_lr, 0.0), ("head", lr, weight_decay), ("other", lr, 0.0)]
    if optimizer == "adamw":
        adam_specs.insert(2, ("matrix", lr, weight_decay))
    adam_groups = [_group(groups[n], n, g_lr * sc["adamw_lr"], wd * sc["adamw_wd"], sc["adamw_lr"])
                   for n, g_lr, wd in adam_specs if groups[n]]
    adamw = torch.optim.AdamW(adam_groups, lr=lr, betas=betas, eps=eps, fused=fused,
                              foreach=None if fused else True)
    if optimizer == "adamw":
        return adamw
    muon = Muon([_group(groups["matrix"], "matrix", muon_lr * sc["muon_lr"], weight_decay * sc["muon_wd"],
                        sc["muon_lr"])], lr=muon_lr, momentum=muon_momentum)
    return MultiOptimizer([adamw, muon])


def _group(params: list[nn.Parameter], name: str, lr: float, weight_decay: float, lr_scale: float) -> dict[str, Any]:
    return {"params": params, "name": name, "lr": lr, "initial_lr": lr, "weight_decay": weight_decay,
            "initial_weight_decay": weight_decay, "lr_scale": lr_scale}


def set_lr(opt, multiplier: float, wd_multiplier: float = 1.0) -> None:
    """Set every group's lr to `initial_lr` × multiplier and weight decay to `initial_weight_decay` × wd_multiplier."""
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] * multiplier
        if "initial_weight_decay" in g:
            g["weight_decay"] = g["initial_weight_decay"] * wd_multiplier


def train_step(opt, model: nn.Module, micro_batches: Sequence[Any], loss_fn: Callable[[Any], torch.Tensor],
               grad_clip: float | None, normalizer: float = 1.0, autocast=None) -> dict[str, float]:
    """One optimizer update over several micro-batches (gradient accumulation), DDP-aware.

    `loss_fn(micro_batch)` returns that micro-batch's loss as a SUM over its
    items (tokens, sequences, pairs); `normalizer` is this rank's item count in
    the whole step. Each micro-batch backprops `sum × world / global_count`
    (the count summed over ranks), and DDP averages over ranks, so the update
    equals one big batch's `mean` loss exactly — whatever the split into
    micro-batches and ranks. A loss_fn that already returns a mean over the
    full batch's items passes normalizer=1 (and equal-size ranks).

    `model` is what loss_fn calls (possibly compiled and/or DDP-wrapped): under
    DDP, gradients are all-reduced only on the last micro-batch (`no_sync`).
    `autocast` is a zero-argument context factory (bf16 on GPU). Returns
    `loss` (the step's mean loss over all ranks' items) and `grad_norm`
    (before clipping; 0.0 when not clipping).
    """
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    total = torch.tensor(float(normalizer), dtype=torch.float64)
    if world > 1:
        device = next(model.parameters()).device
        total = total.to(device)
        dist.all_reduce(total)
    total_f = float(total)
    if total_f <= 0:
        # Nothing to learn from on any rank (e.g. every completion cut off by the context): no update, said so.
        log.warning("train_step: no items to learn from in this step (normalizer 0 on every rank); update skipped")
        return {"loss": 0.0, "grad_norm": 0.0, "skipped": 1.0}
    scale = world / total_f
    opt.zero_grad(set_to_none=True)
    loss_sum = torch.zeros((), dtype=torch.float64)
    n = len(micro_batches)
    for i, mb in enumerate(micro_batches):
        sync = model.no_sync() if world > 1 and hasattr(model, "no_sync") and i < n - 1 else nullcontext()
        with sync:
            with (autocast() if autocast is not None else nullcontext()):
                loss = loss_fn(mb)
            (loss * scale).backward()
        loss_sum = loss_sum.to(loss.device) + loss.detach().double()  # no host sync per micro-batch
    params = [p for p in _unwrap(model).parameters() if p.grad is not None]
    gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip else None
    opt.step()
    if world > 1:  # the logged loss is the whole step's, over all ranks
        loss_sum = loss_sum.to(total.device)
        dist.all_reduce(loss_sum)
    return {"loss": float(loss_sum) / total_f, "grad_norm": float(gnorm) if gnorm is not None else 0.0, "skipped": 0.0}
