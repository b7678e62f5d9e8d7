"""RL with verifiable rewards: GRPO with a clipped policy-gradient objective.

Per step: take P prompts, sample k completions each with the inference engine
(KV cache, tools; tool outputs the engine forced are never trained on), score
them with a reward function, normalise rewards within each prompt's group
(advantage = (r - mean) / (std + eps), no value network), then minimise

  L = mean over sampled tokens of  -min(ρ·A, clip(ρ, 1-ε, 1+ε)·A) + β·KL
  ρ = π(t)/π_old(t),   KL = exp(ref - logπ) - (ref - logπ) - 1   (k3 estimator)

with a token-level mean over the whole batch (long answers are not
down-weighted per token). `ppo_epochs > 1` reuses a batch, which is where the
ratio clipping bites. The same loop drives RLHF with a reward model's score.

Tasks: GSM8K (exact match of the final number) and GENERATED arithmetic of
adjustable difficulty (small enough for CPU models to show learning).
"""
from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lm.chat import ChatRenderer
from lm.engine import Completion, Engine
from lm.gsm8k import extract_number, gsm8k_split, same_number
from lm.model import GPT
from lm.optim import optimizer_step
from lm.sft import (LogFn, apply_schedule, autocast, make_optimizer, pick_device, save_stage_checkpoint, step_seed,
                    token_logprobs, try_resume)
from lm.sft_data import arithmetic_problem, arithmetic_question
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Problem:
    conversation: list[dict]  # ends with the user turn
    answer: str = ""          # gold final number (verifiable tasks)
    meta: dict = field(default_factory=dict)


# ------------------------------------------------------------------- tasks
def arithmetic_problems(n: int, seed: int, difficulty: int = 1) -> list[Problem]:
    """GENERATED arithmetic problems (see lm.sft_data.arithmetic_problem)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        expr, value = arithmetic_problem(rng, difficulty)
        out.append(Problem([{"role": "user", "content": arithmetic_question(expr, rng)}], str(value), {"expr": expr}))
    return out


def gsm8k_problems(path: str | Path, heldout: int = 500) -> tuple[list[Problem], list[Problem]]:
    """GSM8K (train, held-out) as Problems; the gold answer is the number after '####'."""
    train, test = gsm8k_split(path, heldout)
    conv = lambda p: Problem([{"role": "user", "content": p["question"]}], p["gold"])  # noqa: E731
    return [conv(p) for p in train], [conv(p) for p in test]


def answer_text(c: Completion, tokenizer: Tokenizer) -> str:
    """What the model itself wrote as its answer: sampled tokens minus tool calls and forced outputs."""
    sp = tokenizer.encode_special
    tool_start, tool_end = sp("<|tool_start|>"), sp("<|tool_end|>")
    keep, in_tool = [], False
    specials = tokenizer.special_ids
    for t, forced in zip(c.tokens, c.forced_mask):
        if forced:
            continue
        if t == tool_start:
            in_tool = True
        elif t == tool_end:
            in_tool = False
        elif not in_tool and t not in specials:
            keep.append(t)
    return tokenizer.decode(keep)


def exact_reward(problem: Problem, c: Completion, tokenizer: Tokenizer) -> float:
    """1.0 when the final number the model wrote equals the gold answer, else 0.0."""
    return float(same_number(extract_number(answer_text(c, tokenizer)), problem.answer))


RewardFn = Callable[[Sequence[Problem], Sequence[Completion]], list[float]]


# --------------------------------------------------------------- objective
def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """(P, k) rewards → (P, k) advantages (r - group mean) / (group std + eps), population std."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + eps)


def grpo_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              clip_eps: float = 0.2, logp_ref: torch.Tensor | None = None,
              kl_coef: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped policy-gradient loss (token mean over `mask`) + optional k3 KL to a reference.

    logp, logp_old, logp_ref, mask: (N, T); advantages: (N,).
    """
    mask = mask.float()
    n_tok = mask.sum().clamp(min=1)
    ratio = torch.exp(logp - logp_old)
    adv = advantages[:, None]
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv
    per_tok = -torch.minimum(unclipped, clipped)
    stats: dict[str, float] = {}
    with torch.no_grad():
        was_clipped = ((ratio > 1 + clip_eps) & (adv > 0)) | ((ratio < 1 - clip_eps) & (adv < 0))
        stats["clip_frac"] = float((was_clipped.float() * mask).sum() / n_tok)
        stats["ratio_mean"] = float((ratio * mask).sum() / n_tok)
    if logp_ref is not None:
        d = logp_ref - logp
        kl = torch.exp(d) - d - 1
        stats["kl"] = float((kl.detach() * mask).sum() / n_tok)
        if kl_coef:
            per_tok = per_tok + kl_coef * kl
    loss = (per_tok * mask).sum() / n_tok
    stats["pg_loss"] = loss.item()
    return loss, stats


def build_batch(prompts: Sequence[Sequence[int]], completions: Sequence[Completion], pad_id: int,
                max_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (inputs, targets, train_mask) over prompt+completion; the mask covers sampled tokens only."""
    seqs, masks = [], []
    for c in completions:
        p = list(prompts[c.prompt_index])
        seqs.append(p + list(c.tokens))
        masks.append([0] * len(p) + [1 - f for f in c.forced_mask])
    T = min(max_len + 1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    m = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, (s, mk) in enumerate(zip(seqs, masks)):
        s, mk = s[:T], mk[:T]
        ids[i, :len(s)] = torch.tensor(s)
        m[i, :len(mk)] = torch.tensor(mk, dtype=torch.bool)
    inputs, targets, tmask = ids[:, :-1], ids[:, 1:].clone(), m[:, 1:]
    targets[~tmask] = -1
    return inputs, targets, tmask


# ----------------------------------------------------------------- rollouts
def rollout(model: GPT, tokenizer: Tokenizer, problems: Sequence[Problem], k: int, max_new_tokens: int,
            temperature: float, seed: int, top_k: int | None = None) -> tuple[list[list[int]], list[Completion]]:
    """Prompt ids and k completions per problem (prompt-major)."""
    r = ChatRenderer(tokenizer)
    prompts = [r.render_for_completion(p.conversation) for p in problems]
    eng = Engine(model, tokenizer)
    comps = eng.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                         seed=seed, num_samples=k, truncate="left")
    return prompts, comps


def verifiable_reward_fn(tokenizer: Tokenizer) -> RewardFn:
    return lambda probs, comps: [exact_reward(p, c, tokenizer) for p, c in zip(probs, comps)]


@torch.no_grad()
def evaluate_pass(model: GPT, tokenizer: Tokenizer, problems: Sequence[Problem], k: int, max_new_tokens: int,
                  temperature: float = 1.0, seed: int = 0, batch: int = 64) -> dict[str, float]:
    """pass@1 (mean correctness over k samples), pass@k (any of k correct), mean response length."""
    correct, anyc, lengths = [], [], []
    for s in range(0, len(problems), batch):
        chunk = problems[s:s + batch]
        _, comps = rollout(model, tokenizer, chunk, k, max_new_tokens, temperature, seed + s)
        rs = [exact_reward(chunk[c.prompt_index], c, tokenizer) for c in comps]
        correct += rs
        lengths += [len(c.tokens) for c in comps]
        anyc += [max(rs[i * k:(i + 1) * k]) for i in range(len(chunk))]
    model.train()
    n = max(1, len(correct))
    return {"pass@1": sum(correct) / n, f"pass@{k}": sum(anyc) / max(1, len(anyc)),
            "response_len": sum(lengths) / max(1, len(lengths))}


# --------------------------------------------------------------------- loop
def train_grpo(model: GPT, tokenizer: Tokenizer, cfg, out_dir: str | Path,
               sample_problems: Callable[[int], list[Problem]], reward_fn: RewardFn,
               ref_model: GPT | None = None, evaluate: Callable[[GPT, int], dict[str, float]] | None = None,
               monitor: Callable[[dict[str, float], int], str | None] | None = None,
               meta: dict[str, Any] | None = None, log_fn: LogFn | None = None,
               kind: str = "rl") -> dict[str, Any]:
    """GRPO loop. `sample_problems(step)` gives the step's prompts; `monitor(metrics, step)` may
    return a reason to stop early (reward hacking, KL bound). Resumes from `<out_dir>/latest`."""
    out_dir = Path(out_dir)
    device = pick_device(cfg.device)
    model.to(device).train()
    if ref_model is not None:
        ref_model.to(device).eval().requires_grad_(False)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start, state = try_resume(out_dir / "latest", model, opt, device)
    pad = tokenizer.encode_special("<|pad|>")
    k = cfg.samples_per_prompt
    meta = {"kind": kind, **(meta or {})}
    history: list[dict[str, float]] = list(state.get("history", []))
    stop_reason = state.get("stop_reason")
    if start == 0 and evaluate is not None:
        ev = evaluate(model, 0)
        history.append({"step": 0, **ev})
        if log_fn:
            log_fn({f"eval/{a}": b for a, b in ev.items()}, 0)
    steps_done = start
    for step in range(start, cfg.steps):
        if stop_reason:  # a resumed run that had already stopped early
            break
        t0 = time.time()
        problems = sample_problems(step)
        model.eval()
        prompts, comps = rollout(model, tokenizer, problems, k, cfg.max_new_tokens, cfg.temperature,
                                 step_seed(cfg.seed, step), getattr(cfg, "top_k", None))
        model.train()
        rewards = torch.tensor(reward_fn([problems[c.prompt_index] for c in comps], comps), dtype=torch.float32)
        adv = group_advantages(rewards.view(len(problems), k)).flatten()
        inputs, targets, tmask = build_batch(prompts, comps, pad, model.config.sequence_len)
        inputs, targets, tmask, adv_d = inputs.to(device), targets.to(device), tmask.to(device), adv.to(device)
        with torch.no_grad(), autocast(device, cfg.dtype):
            logp_old = token_logprobs(model, inputs, targets)
            logp_ref = token_logprobs(ref_model, inputs, targets) if ref_model is not None else None
        apply_schedule(opt, cfg, step)
        for _ in range(max(1, cfg.ppo_epochs)):
            with autocast(device, cfg.dtype):
                logp = token_logprobs(model, inputs, targets)
            loss, st = grpo_loss(logp, logp_old, adv_d, tmask, cfg.clip_eps, logp_ref, cfg.kl_coef)
            gnorm = optimizer_step(opt, loss, model.parameters(), cfg.grad_clip)
        r = rewards.view(len(problems), k)
        m = {"reward_mean": float(rewards.mean()), "pass@1": float((r > 0.5).float().mean()),
             f"pass@{k}": float((r > 0.5).any(dim=1).float().mean()),
             "response_len": float(sum(len(c.tokens) for c in comps) / len(comps)),
             "kl": st.get("kl", 0.0), "clip_frac": st["clip_frac"], "loss": loss.item(), "grad_norm": gnorm,
             "step_time_s": time.time() - t0}
        done = steps_done = step + 1
        if log_fn:
            log_fn(m, done)
        if done % cfg.log_every == 0:
            log.info("%s step %d/%d reward %.3f kl %.4f clip %.3f", kind, done, cfg.steps, m["reward_mean"],
                     m["kl"], m["clip_frac"])
        if evaluate is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            ev = evaluate(model, done)
            m.update({f"eval/{a}": b for a, b in ev.items()})
            history.append({"step": done, **ev})
            if log_fn:
                log_fn({f"eval/{a}": b for a, b in ev.items()}, done)
        if monitor is not None:
            stop_reason = monitor(m, done)
            if stop_reason:
                log.warning("%s: stopping early at step %d: %s", kind, done, stop_reason)
        if stop_reason:
            break
        if done % cfg.checkpoint_every == 0 and done < cfg.steps:
            save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, done,
                                  {"history": history, "stop_reason": stop_reason})
    final_step = steps_done
    result: dict[str, Any] = {"history": history, "stop_reason": stop_reason, "steps_done": final_step}
    save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, final_step,
                          {"history": history, "stop_reason": stop_reason})
    final = save_stage_checkpoint(out_dir / "final", model, tokenizer,
                                  {**meta, "stop_reason": stop_reason, "history": history}, None, final_step)
    result["checkpoint"] = str(final)
    return result


def train_rl(model: GPT, tokenizer: Tokenizer, cfg, out_dir: str | Path, meta: dict[str, Any] | None = None,
             log_fn: LogFn | None = None) -> dict[str, Any]:
    """RL on cfg.task ('arithmetic' generated, or 'gsm8k' with its held-out split for eval)."""
    if cfg.task == "arithmetic":
        eval_set = arithmetic_problems(cfg.eval_prompts, seed=10_000 + cfg.seed, difficulty=cfg.difficulty)
        sample = lambda step: arithmetic_problems(cfg.prompts_per_step, step_seed(cfg.seed, step, 2),  # noqa: E731
                                                  cfg.difficulty)
    elif cfg.task == "gsm8k":
        train, held = gsm8k_problems(cfg.gsm8k_path, cfg.gsm8k_heldout)
        eval_set = held[:cfg.eval_prompts]

        def sample(step: int) -> list[Problem]:
            rng = random.Random(step_seed(cfg.seed, step, 2))
            return rng.sample(train, cfg.prompts_per_step)
    else:
        raise ValueError(f"unknown RL task {cfg.task!r}; choose arithmetic or gsm8k")
    ref = None
    if cfg.kl_coef > 0:
        import copy
        ref = copy.deepcopy(model)

    def evaluate(m: GPT, step: int) -> dict[str, float]:
        return evaluate_pass(m, tokenizer, eval_set, cfg.eval_samples, cfg.max_new_tokens, cfg.temperature,
                             seed=cfg.seed + 99)

    res = train_grpo(model, tokenizer, cfg, out_dir, sample, verifiable_reward_fn(tokenizer), ref, evaluate,
                     meta={"task": cfg.task, **(meta or {})}, log_fn=log_fn, kind="rl")
    h = res["history"]
    if h:
        res["pass@1_before"], res["pass@1_after"] = h[0]["pass@1"], h[-1]["pass@1"]
    return res
