"""Reward model: the GPT backbone plus a scalar head on the last real token.

Trained on preference pairs with the Bradley–Terry loss
`-log σ(r_chosen - r_rejected)` and on full rankings of K responses with the
Plackett–Luce loss `-Σ_i [r_i - logsumexp(r_i..r_K)]` (best first; K=2 is
Bradley–Terry), since people often rank several answers at once.

Preference data (HH-RLHF, DPO pairs, rankings, GENERATED pairs; its reading,
held-out split and rendering) has its one home in lm/datasets/preferences.py,
which DPO and RLHF read too.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from lm.checkpoint import load_extra, load_model
from lm.model import GPT
from lm.optim import train_step
from lm.runtime import Runtime, wrap_for_training
from lm.posttrain.loop import (LogFn, apply_schedule, batch_indices, checkpoint_if_due, make_optimizer, micro_batches,
                               rank_share, save_stage_checkpoint, stage_runtime, try_resume)
from lm.datasets.preferences import RenderedPref
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def pad_right(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (N, T) right-padded, lengths (N,))."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, torch.tensor([len(s) for s in seqs], dtype=torch.long)


# --------------------------------------------------------------------- model
class RewardModel(nn.Module):
    """GPT trunk + linear scalar head read at each sequence's last real token."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.head = nn.Linear(gpt.config.n_embd, 1, bias=True)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        return self.gpt.config

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores (N,) for right-padded ids (causal attention: padding after a row never affects it)."""
        h = self.gpt.hidden(ids)
        last = h[torch.arange(ids.size(0), device=ids.device), (lengths - 1).to(ids.device)]
        return self.head(last.float()).squeeze(-1)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean -log σ(r_c - r_r)."""
    return -F.logsigmoid(chosen - rejected).mean()


def plackett_luce_loss(scores: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of rankings; scores (G, K) ordered best first."""
    K = scores.size(1)
    # logsumexp over the suffix i..K-1 for every position i
    rev = torch.flip(scores, dims=[1])
    suffix_lse = torch.flip(torch.logcumsumexp(rev, dim=1), dims=[1])
    nll = -(scores[:, :K - 1] - suffix_lse[:, :K - 1]).sum(dim=1)
    return nll.mean()


def head_tensors(rm: RewardModel) -> dict[str, torch.Tensor]:
    return {"reward_head.weight": rm.head.weight, "reward_head.bias": rm.head.bias}


class _HeadView(nn.Module):
    """Adapts the head's state_dict to the names saved in extra.safetensors."""

    def __init__(self, rm: RewardModel):
        super().__init__()
        self.rm = rm

    def load_state_dict(self, sd, strict=True):  # noqa: D102
        self.rm.head.weight.data.copy_(sd["reward_head.weight"])
        self.rm.head.bias.data.copy_(sd["reward_head.bias"])


def load_reward_model(path_or_uri: str | Path,
                      device: str | torch.device = "cpu") -> tuple[RewardModel, Tokenizer, dict]:
    """A trained reward model from a checkpoint directory or MLflow URI."""
    gpt, tok, meta = load_model(path_or_uri, device)
    extra = load_extra(meta["path"], device)
    if "reward_head.weight" not in extra:
        raise ValueError(f"{path_or_uri} is not a reward model (no reward_head in extra.safetensors); "
                         "train one with `crawl2chat reward`")
    rm = RewardModel(gpt).to(device)
    _HeadView(rm).load_state_dict(extra)
    return rm, tok, meta


@torch.no_grad()
def score_sequences(rm: RewardModel, seqs: list[list[int]], pad_id: int, batch_size: int = 32) -> torch.Tensor:
    """Reward scores for token sequences (each a full rendered conversation)."""
    dev = rm.head.weight.device
    out = []
    rm.eval()
    for s in range(0, len(seqs), batch_size):
        ids, lens = pad_right(seqs[s:s + batch_size], pad_id)
        out.append(rm(ids.to(dev), lens.to(dev)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


@torch.no_grad()
def pair_wins(rm: RewardModel, data: list[RenderedPref], pad_id: int) -> torch.Tensor:
    """Per preference: 1 when score(best) > score(worst), 0.5 on a tie, else 0."""
    best = score_sequences(rm, [d.seqs[0] for d in data], pad_id)
    worst = score_sequences(rm, [d.seqs[-1] for d in data], pad_id)
    rm.train()
    return (best > worst).float() + 0.5 * (best == worst).float()


def pairwise_accuracy(rm: RewardModel, data: list[RenderedPref], pad_id: int) -> float:
    """Fraction of held-out preferences with score(best) > score(worst); ties count half (chance = 0.5)."""
    return float(pair_wins(rm, data, pad_id).mean()) if data else float("nan")


def accuracy_by_source(rm: RewardModel, data: list[RenderedPref], pad_id: int) -> dict[str, dict[str, float]]:
    """{source: {"accuracy", "n"}} over held-out preferences (a weak source can hide behind a strong one)."""
    if not data:
        return {}
    wins = pair_wins(rm, data, pad_id)
    out: dict[str, dict[str, float]] = {}
    for src in sorted({d.source for d in data}):
        w = wins[torch.tensor([d.source == src for d in data])]
        out[src or "prefs"] = {"accuracy": float(w.mean()), "n": int(w.numel())}
    return out


def train_reward(rm: RewardModel, tokenizer: Tokenizer, train: list[RenderedPref], val: list[RenderedPref], cfg,
                 out_dir: str | Path, meta: dict[str, Any] | None = None, log_fn: LogFn | None = None) -> dict:
    """Train on pairs (Bradley–Terry) and K>2 rankings (Plackett–Luce); reports held-out accuracy."""
    out_dir = Path(out_dir)
    rt = stage_runtime(cfg)
    try:
        return _train_reward(rm, tokenizer, train, val, cfg, out_dir, meta, log_fn if rt.master else None, rt)
    finally:
        rt.close()


def _train_reward(rm, tokenizer, train, val, cfg, out_dir, meta, log_fn, rt: Runtime) -> dict:
    device = rt.device
    torch.manual_seed(cfg.seed)
    rm.to(device).train()
    opt = make_optimizer(rm, cfg.lr, cfg.weight_decay)
    start, state = try_resume(out_dir, rm.gpt, opt, device, extra_module=_HeadView(rm))
    run = wrap_for_training(rm, rt, getattr(cfg, "compile", False))
    pad = tokenizer.encode_special("<|pad|>")
    pairs = [d for d in train if len(d.seqs) == 2]
    ranks = [d for d in train if len(d.seqs) > 2]
    if not pairs and not ranks:
        raise ValueError("no reward-model training data survived; check --prefs and the skip counts")
    meta = {"kind": "reward", **(meta or {})}
    res: dict[str, Any] = dict(state.get("start") or {})  # step-0 figures, kept with the checkpoint
    if start == 0:
        res["val_accuracy_start"] = pairwise_accuracy(rm, val, pad)
        res["val_by_source_start"] = accuracy_by_source(rm, val, pad)
    start_state = {"start": {k: res.get(k) for k in ("val_accuracy_start", "val_by_source_start")}}
    t0 = time.time()
    for step in range(start, cfg.steps):
        apply_schedule(opt, cfg, step)
        # This rank's pairs and rankings, as micro-batches: pairs in groups of device_batch_size, each
        # micro-batch also taking its share of the rankings (which may differ in K: one at a time).
        my_pairs = rank_share([pairs[int(i)] for i in batch_indices(len(pairs), cfg.batch_size, step, cfg.seed)]
                              if pairs else [], rt)
        my_ranks = rank_share([ranks[int(i)] for i in batch_indices(len(ranks), max(1, cfg.batch_size // 2), step,
                                                                   cfg.seed + 1)] if ranks else [], rt)
        pair_mbs = micro_batches(my_pairs, cfg.device_batch_size) if my_pairs else []
        n_mb = max(1, len(pair_mbs))
        rank_mbs = [my_ranks[i::n_mb] for i in range(n_mb)]
        mbs = list(zip(pair_mbs or [[]] * n_mb, rank_mbs))

        def loss_fn(mb) -> torch.Tensor:
            # Mean Bradley–Terry over the step's pairs + mean Plackett–Luce over its rankings (normalizer 1).
            b, rk = mb
            loss = torch.zeros((), device=device)
            if b:
                ids, lens = pad_right([d.seqs[0] for d in b] + [d.seqs[1] for d in b], pad)
                sc = run(ids.to(device), lens.to(device))
                loss = loss + bradley_terry_loss(sc[:len(b)], sc[len(b):]) * len(b) / len(my_pairs)
            for d in rk:
                ids, lens = pad_right(d.seqs, pad)
                loss = loss + plackett_luce_loss(run(ids.to(device), lens.to(device))[None]) / len(my_ranks)
            return loss

        st = train_step(opt, run, mbs, loss_fn, cfg.grad_clip, normalizer=1.0, autocast=rt.autocast)
        done = step + 1
        if log_fn and (done % cfg.log_every == 0 or done == cfg.steps):
            log_fn({"train_loss": st["loss"], "grad_norm": st["grad_norm"],
                    "step_time_s": (time.time() - t0) / cfg.log_every}, done)
            t0 = time.time()
        if done % cfg.eval_every == 0 or done == cfg.steps:
            acc = pairwise_accuracy(rm, val, pad)
            res["val_accuracy"] = acc
            if rt.master:
                log.info("reward step %d/%d loss %.4f held-out accuracy %.3f", done, cfg.steps, st["loss"], acc)
            if log_fn:
                log_fn({"val_accuracy": acc}, done)
        checkpoint_if_due(rt, cfg, done, out_dir, rm.gpt, tokenizer, meta, opt, start_state, head_tensors(rm))
    if "val_accuracy" not in res:
        res["val_accuracy"] = pairwise_accuracy(rm, val, pad)
    res["val_by_source"] = accuracy_by_source(rm, val, pad)
    final = out_dir / "final"
    if rt.master:
        save_stage_checkpoint(out_dir / "latest", rm.gpt, tokenizer, meta, opt, cfg.steps, start_state,
                              extra_tensors=head_tensors(rm))
        final = save_stage_checkpoint(out_dir / "final", rm.gpt, tokenizer,
                                      {**meta, "val_accuracy": res["val_accuracy"], "n_val": len(val)}, None,
                                      cfg.steps, extra_tensors=head_tensors(rm))
    rt.barrier()
    res["checkpoint"] = str(final)
    return res
