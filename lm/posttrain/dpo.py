"""Direct Preference Optimisation against a frozen reference.

loss = -log σ(β·[(log π(y_c|x) - log π_ref(y_c|x)) - (log π(y_r|x) - log π_ref(y_r|x))])

Log-probabilities are summed over the response tokens only (the final
assistant turn). The reference is the starting policy; its log-probabilities
are computed once up front (it is frozen, and recomputing them on resume gives
the same numbers). Logged: implicit rewards β·(log π - log π_ref) of chosen and
rejected, their margin and the preference accuracy (margin > 0).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lm.model import GPT
from lm.optim import train_step
from lm.datasets.preferences import RenderedPref
from lm.posttrain.reward import pad_right
from lm.runtime import Runtime, wrap_for_training
from lm.posttrain.loop import (LogFn, apply_schedule, batch_indices, checkpoint_if_due, make_optimizer, micro_batches,
                               rank_share, save_stage_checkpoint, stage_runtime, token_logprobs, try_resume)
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def response_targets(seqs: list[list[int]], prompt_lens: list[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) where targets are -1 except on response tokens."""
    ids, lens = pad_right(seqs, pad_id)
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()
    pos = torch.arange(targets.size(1))[None]
    pl = torch.tensor(prompt_lens)[:, None]
    keep = (pos >= pl - 1) & (pos < lens[:, None] - 1)
    targets[~keep] = -1
    return inputs, targets


def sequence_logps(model: GPT, seqs: list[list[int]], prompt_lens: list[int], pad_id: int,
                   device: torch.device) -> torch.Tensor:
    """Sum of response-token log-probabilities per sequence (N,)."""
    x, y = response_targets(seqs, prompt_lens, pad_id)
    return token_logprobs(model, x.to(device), y.to(device)).sum(dim=1)


def dpo_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO loss and stats from policy (pc, pr) and reference (rc, rr) log-probs of chosen/rejected."""
    chosen_r, rejected_r = beta * (pc - rc), beta * (pr - rr)
    margin = chosen_r - rejected_r
    loss = -F.logsigmoid(margin).mean()
    c, r, m = chosen_r.detach(), rejected_r.detach(), margin.detach()
    return loss, {"reward_chosen": c.mean().item(), "reward_rejected": r.mean().item(),
                  "margin": m.mean().item(), "accuracy": (m > 0).float().mean().item()}


@torch.no_grad()
def _all_logps(model: GPT, data: list[RenderedPref], pad: int, device, bs: int = 16) -> torch.Tensor:
    """(N, 2) chosen/rejected log-probs for every pair."""
    model.eval()
    out = []
    for s in range(0, len(data), bs):
        b = data[s:s + bs]
        seqs = [d.seqs[0] for d in b] + [d.seqs[-1] for d in b]
        pls = [d.prompt_len[0] for d in b] + [d.prompt_len[-1] for d in b]
        lp = sequence_logps(model, seqs, pls, pad, device).cpu()
        out.append(torch.stack([lp[:len(b)], lp[len(b):]], dim=1))
    model.train()
    return torch.cat(out) if out else torch.zeros(0, 2)


def evaluate_dpo(model: GPT, data: list[RenderedPref], ref_logps: torch.Tensor, beta: float, pad: int,
                 device) -> dict[str, float]:
    """Margin and accuracy of the implicit reward on a set of pairs."""
    if not data:
        return {}
    lp = _all_logps(model, data, pad, device)
    _, st = dpo_loss(lp[:, 0], lp[:, 1], ref_logps[:, 0], ref_logps[:, 1], beta)
    margins = beta * ((lp[:, 0] - ref_logps[:, 0]) - (lp[:, 1] - ref_logps[:, 1]))
    # standard error of the mean margin: the report card's 95% interval is margin ± 1.96·se
    st["margin_se"] = float(margins.std(unbiased=True) / len(data) ** 0.5) if len(data) > 1 else float("nan")
    st["n"] = len(data)
    sources = sorted({d.source for d in data})
    if len(sources) > 1:  # a source the model cannot learn can hide behind one it can
        for src in sources:
            m = margins[torch.tensor([d.source == src for d in data])]
            st[f"margin/{src or 'prefs'}"] = float(m.mean())
            se = float(m.std(unbiased=True) / m.numel() ** 0.5) if m.numel() > 1 else float("nan")
            st[f"margin_se/{src or 'prefs'}"] = se
            st[f"n/{src or 'prefs'}"] = int(m.numel())
    return st


def train_dpo(model: GPT, ref_model: GPT, tokenizer: Tokenizer, train: list[RenderedPref],
              val: list[RenderedPref], cfg, out_dir: str | Path, meta: dict[str, Any] | None = None,
              log_fn: LogFn | None = None) -> dict[str, Any]:
    """DPO; resumes from `<out_dir>/latest`, writes `<out_dir>/final`."""
    if not train:
        raise ValueError("no DPO training pairs survived; check --prefs and the skip counts")
    out_dir = Path(out_dir)
    rt = stage_runtime(cfg)
    try:
        return _train_dpo(model, ref_model, tokenizer, train, val, cfg, out_dir, meta,
                          log_fn if rt.master else None, rt)
    finally:
        rt.close()


def _train_dpo(model, ref_model, tokenizer, train, val, cfg, out_dir, meta, log_fn, rt: Runtime) -> dict[str, Any]:
    device = rt.device
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    ref_model.to(device).eval().requires_grad_(False)
    pad = tokenizer.encode_special("<|pad|>")
    ref_train, ref_val = _all_logps(ref_model, train, pad, device), _all_logps(ref_model, val, pad, device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start, state = try_resume(out_dir, model, opt, device)
    run = wrap_for_training(model, rt, getattr(cfg, "compile", False))
    meta = {"kind": "dpo", "beta": cfg.beta, **(meta or {})}
    res: dict[str, Any] = dict(state.get("start") or {})  # the margin at start, kept with the checkpoint
    if start == 0:
        res["val_start"] = evaluate_dpo(model, val, ref_val, cfg.beta, pad, device)
    start_state = {"start": {"val_start": res.get("val_start")}}
    for step in range(start, cfg.steps):
        apply_schedule(opt, cfg, step)
        mine = rank_share(batch_indices(len(train), cfg.batch_size, step, cfg.seed), rt)
        stats: dict[str, float] = {}

        def loss_fn(idx: torch.Tensor) -> torch.Tensor:
            b = [train[int(i)] for i in idx]
            seqs = [d.seqs[0] for d in b] + [d.seqs[-1] for d in b]
            pls = [d.prompt_len[0] for d in b] + [d.prompt_len[-1] for d in b]
            lp = sequence_logps(run, seqs, pls, pad, device)
            ref = ref_train[idx].to(device)
            loss, st = dpo_loss(lp[:len(b)], lp[len(b):], ref[:, 0], ref[:, 1], cfg.beta)
            for key, v in st.items():  # pair-weighted means over the step's micro-batches
                stats[key] = stats.get(key, 0.0) + v * len(b) / len(mine)
            return loss * len(b)  # dpo_loss is a mean over pairs; train_step wants the sum

        out = train_step(opt, run, micro_batches(mine, cfg.device_batch_size), loss_fn, cfg.grad_clip,
                         normalizer=len(mine), autocast=rt.autocast)
        done = step + 1
        if log_fn and (done % cfg.log_every == 0 or done == cfg.steps):
            log_fn({"loss": out["loss"], "grad_norm": out["grad_norm"], **stats}, done)
        if done % cfg.eval_every == 0 or done == cfg.steps:
            ev = evaluate_dpo(model, val, ref_val, cfg.beta, pad, device)
            res["val"] = ev
            if rt.master:
                log.info("dpo step %d/%d loss %.4f val %s", done, cfg.steps, out["loss"], ev)
            if log_fn and ev:
                log_fn({f"val/{k}": v for k, v in ev.items()}, done)
        checkpoint_if_due(rt, cfg, done, out_dir, model, tokenizer, meta, opt, start_state)
    res["train"] = evaluate_dpo(model, train, ref_train, cfg.beta, pad, device)
    final = out_dir / "final"
    if rt.master:
        save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, cfg.steps, start_state)
        final = save_stage_checkpoint(out_dir / "final", model, tokenizer, {**meta, "val": res.get("val")}, None,
                                      cfg.steps)
    rt.barrier()
    res["checkpoint"] = str(final)
    return res
