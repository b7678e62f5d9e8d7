"""Batched log-likelihood of continuations given contexts — the one scorer behind
the CORE suite, in-loop eval and the lm-eval adapter.

Each request is (context ids, continuation ids). Requests are sorted by length
(little padding), packed `batch_size` rows per forward pass, RIGHT-padded:
with causal attention a real token never attends to a later pad, so no
attention mask is needed and a row's logits are those it gets alone; only the
targets of pads are masked out. One code path for CPU (fp32) and CUDA (bf16
autocast, fp32 log-softmax).

A request longer than the model's context keeps its continuation and the end
of its context (left truncation), as lm-eval does.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Score:
    logprob: float  # sum of log p(continuation token | everything before it)
    n_tokens: int
    greedy: bool  # every continuation token is the argmax (exact greedy match)


def _autocast(device: torch.device):
    # bf16 matmuls on GPU; CPU stays fp32 so CPU results are exact and reproducible
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def truncate(ctx: Sequence[int], cont: Sequence[int], max_len: int) -> tuple[list[int], list[int]]:
    """Fit ctx+cont into max_len tokens: drop the start of the context (and of an over-long continuation)."""
    ctx, cont = list(ctx), list(cont)
    if not cont:
        raise ValueError("a continuation must have at least one token")
    if len(cont) >= max_len:
        return ctx[-1:] if ctx else [], cont[-(max_len - 1):] if ctx else cont[-max_len:]
    keep = max_len - len(cont)
    return ctx[-keep:] if ctx else [], cont


@torch.inference_mode()
def score_requests(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int = 32,
                   max_len: int | None = None, pad_id: int = 0) -> list[Score]:
    """Log-likelihood of each continuation after its context, `batch_size` requests per forward pass.

    The context must be non-empty (start it with BOS): the first continuation
    token needs a position to be predicted from.
    """
    device = next(model.parameters()).device
    max_len = max_len or model.config.sequence_len
    reqs = []
    for i, (ctx, cont) in enumerate(requests):
        if not ctx:
            raise ValueError(f"request {i} has an empty context; prepend BOS")
        reqs.append(truncate(ctx, cont, max_len))
    order = sorted(range(len(reqs)), key=lambda i: -(len(reqs[i][0]) + len(reqs[i][1])))
    out: list[Score | None] = [None] * len(reqs)
    for start in range(0, len(order), max(1, batch_size)):
        rows = order[start:start + batch_size]
        seqs = [reqs[i][0] + reqs[i][1] for i in rows]
        width = max(len(s) for s in seqs) - 1  # inputs: all but the last token
        x = torch.full((len(rows), width), pad_id, dtype=torch.long)
        y = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: not scored
        for r, (i, s) in enumerate(zip(rows, seqs)):
            n_ctx = len(reqs[i][0])
            x[r, :len(s) - 1] = torch.tensor(s[:-1])
            y[r, n_ctx - 1:len(s) - 1] = torch.tensor(s[n_ctx:])
        x, y = x.to(device), y.to(device)
        with _autocast(device):
            logits = model(x)
        logp = F.log_softmax(logits.float(), dim=-1)
        scored = y >= 0
        tgt = y.clamp(min=0)
        # summed in float64: a 500-token continuation's float32 sum would drift by ~1e-4
        tok_lp = logp.gather(-1, tgt[..., None])[..., 0].double() * scored
        hit = (logp.argmax(-1) == tgt) | ~scored
        sums, counts, greedy = tok_lp.sum(1).tolist(), scored.sum(1).tolist(), hit.all(1).tolist()
        for r, i in enumerate(rows):
            out[i] = Score(sums[r], int(counts[r]), bool(greedy[r]))
    return out  # type: ignore[return-value]
