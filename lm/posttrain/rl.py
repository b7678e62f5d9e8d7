"""RL with verifiable rewards: GRPO and the variants the field runs, under TRL's names (docs/RL.md).

Per step: take P prompts, sample k completions each with the inference engine
(KV cache, tools; tool outputs the engine forced are never trained on), score
them with a reward function, turn rewards into advantages within each prompt's
group (no value network), then minimise, per response token,

  -min(ρ·A, clip(ρ, 1-ε, 1+ε_high)·A) + β·KL,   ρ = π/π_old (per token, or per sequence: GSPO)
  KL = exp(ref - logπ) - (ref - logπ) - 1       (k3 estimator; β = 0 loads no reference)

averaged as `loss_type` says (grpo, bnpo, dr_grpo, dapo). The pieces — advantages,
ratios, per-token losses, aggregation, entropy — are lm/posttrain/policy_gradient.py; this
file is the loop: rollouts, micro-batched updates (`num_iterations` per batch),
resume, and the per-step diagnostics (entropy, clip fractions, KL, reward mean/std,
share of zero-variance groups, completion length, truncated share). The same loop
drives RLHF with a reward model's score.

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
from lm.datasets import arithmetic, gsm8k
from lm.datasets.answers import grade_reply
from lm.model import GPT
from lm.optim import train_step
from lm.runtime import Runtime, all_reduce_sum, wrap_for_training
from lm.posttrain.policy_gradient import (group_normalized_rewards, loss_normalizer, loss_sum, per_token_pg_loss,
                                response_log_probs, zero_std_fraction)
from lm.posttrain.loop import (LogFn, apply_schedule, checkpoint_if_due, make_optimizer, micro_batches, rank_share,
                               save_stage_checkpoint, stage_runtime, step_seed, token_logprobs, try_resume)
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Problem:
    conversation: list[dict]  # ends with the user turn
    answer: str = ""          # gold final number (verifiable tasks)
    meta: dict = field(default_factory=dict)


# ------------------------------------------------------------------- tasks
def as_problem(item: dict) -> Problem:
    """A dataset item {question, final} (lm/datasets: gsm8k, arithmetic) as an RL prompt with its gold number."""
    return Problem([{"role": "user", "content": item["question"]}], item["final"])


def task_prompts(cfg) -> tuple[Callable[[int], list[Problem]], list[Problem]]:
    """(the step's prompts as a function of the step, the held-out prompts) of `cfg.task`.

    Both come from the dataset's one home: arithmetic draws its training prompts
    from per-step seeds and its held-out set from its own stream
    (lm/datasets/arithmetic.heldout_problems); GSM8K trains on its training part
    and scores the first `eval_prompts` of its held-out part (lm/datasets/gsm8k.split).
    """
    if cfg.task == "arithmetic":
        def draw(step: int) -> list[Problem]:
            return [as_problem(p) for p in arithmetic.problems(cfg.prompts_per_step, step_seed(cfg.seed, step, 2),
                                                               cfg.difficulty)]

        return draw, [as_problem(p) for p in arithmetic.heldout_problems(cfg.eval_prompts, cfg.seed, cfg.difficulty)]
    if cfg.task == "gsm8k":
        train, test = gsm8k.split(cfg.gsm8k_path)
        train_p = [as_problem(p) for p in train]

        def sample(step: int) -> list[Problem]:
            return random.Random(step_seed(cfg.seed, step, 2)).sample(train_p, cfg.prompts_per_step)

        return sample, [as_problem(p) for p in test[:cfg.eval_prompts]]
    raise ValueError(f"unknown RL task {cfg.task!r}; choose arithmetic or gsm8k")


def exact_reward(problem: Problem, c: Completion, tokenizer: Tokenizer) -> float:
    """1.0 when the final number the model wrote equals the gold answer (lm/datasets/answers.grade_reply, as eval)."""
    return float(grade_reply(c, problem.answer, tokenizer))


RewardFn = Callable[[Sequence[Problem], Sequence[Completion]], list[float]]


# --------------------------------------------------------------- objective
def objective_settings(cfg) -> dict[str, Any]:
    """The objective's knobs (lm/posttrain/policy_gradient.py) from a stage config.

    `rl` names them as TRL's GRPOConfig does (conf/posttrain.py RLSettings);
    `rlhf` keeps PPO's names (clip_eps, kl_coef, ppo_epochs) and the defaults for the rest.
    """
    if hasattr(cfg, "loss_type"):
        return {k: getattr(cfg, k) for k in ("objective", "loss_type", "scale_rewards", "epsilon", "epsilon_high",
                                             "beta", "num_iterations", "importance_sampling_level",
                                             "mask_truncated_completions")}
    return {"objective": "grpo_clip", "loss_type": "dapo", "scale_rewards": "group", "epsilon": cfg.clip_eps,
            "epsilon_high": None, "beta": cfg.kl_coef, "num_iterations": cfg.ppo_epochs,
            "importance_sampling_level": "token", "mask_truncated_completions": False}


def reference_model(model: GPT, beta: float) -> GPT | None:
    """A frozen copy of the policy to measure KL against, only when the KL term counts (beta > 0)."""
    if not beta:
        return None
    import copy

    return copy.deepcopy(model).eval().requires_grad_(False)


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
    # The engine kept the end of a prompt too long for the context: train on what it actually saw.
    ctx = eng.max_context
    return [p[-(ctx - 1):] if len(p) >= ctx else p for p in prompts], comps


def verifiable_reward_fn(tokenizer: Tokenizer) -> RewardFn:
    return lambda probs, comps: [exact_reward(p, c, tokenizer) for p, c in zip(probs, comps)]


@torch.no_grad()
def evaluate_pass(model: GPT, tokenizer: Tokenizer, problems: Sequence[Problem], k: int, max_new_tokens: int,
                  temperature: float = 1.0, seed: int = 0, batch: int = 64,
                  per_prompt: bool = False) -> dict[str, Any]:
    """pass@1 (mean correctness over k samples), pass@k (any of k correct), mean response length;
    with `per_prompt`, also each prompt's fraction of correct samples (for a paired before/after test)."""
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
    out: dict[str, Any] = {"pass@1": sum(correct) / n, f"pass@{k}": sum(anyc) / max(1, len(anyc)),
                           "response_len": sum(lengths) / max(1, len(lengths))}
    if per_prompt:
        out["per_prompt"] = [sum(correct[i * k:(i + 1) * k]) / k for i in range(len(problems))]
    return out


# --------------------------------------------------------------------- loop
def train_grpo(model: GPT, tokenizer: Tokenizer, cfg, out_dir: str | Path,
               sample_problems: Callable[[int], list[Problem]], reward_fn: RewardFn,
               ref_model: GPT | None = None, evaluate: Callable[[GPT, int], dict[str, float]] | None = None,
               monitor: Callable[[dict[str, float], int], str | None] | None = None,
               meta: dict[str, Any] | None = None, log_fn: LogFn | None = None,
               kind: str = "rl") -> dict[str, Any]:
    """GRPO loop. `sample_problems(step)` gives the step's prompts; `monitor(metrics, step)` may
    return a reason to stop early (reward hacking, KL bound). Resumes from `<out_dir>/latest`.

    Under torchrun every rank draws the same prompts and rolls out its share
    (all k samples of its prompts in one batched engine call); the policy
    update averages over all ranks' tokens, in micro-batches of
    `cfg.device_batch_size` completions. Logged metrics cover all ranks.
    """
    rt = stage_runtime(cfg)
    try:
        return _train_grpo(model, tokenizer, cfg, Path(out_dir), sample_problems, reward_fn, ref_model, evaluate,
                           monitor, meta, log_fn if rt.master else None, kind, rt)
    finally:
        rt.close()


def _eval_metrics(ev: dict[str, Any]) -> dict[str, float]:
    """`eval/<name>` for the numbers of an eval (per-item lists stay in the history, not in the metric log)."""
    return {f"eval/{a}": b for a, b in ev.items() if isinstance(b, (int, float))}


# per-step diagnostic (metric key) ← per-token statistic of lm.posttrain.policy_gradient.per_token_pg_loss
DIAGNOSTICS = {"kl": "kl", "clip_frac_low": "clipped_low", "clip_frac_high": "clipped_high", "entropy": "entropy"}


TRACED = ("reward_mean", "entropy", "clip_frac", "frac_reward_zero_std")


def trace_summary(trace: list[dict[str, float]]) -> dict[str, float]:
    """Each traced diagnostic averaged over the first and the last tenth of the steps: `entropy_start`,
    `entropy_end`, `reward_mean_start`, ... (an entropy that falls to ~0 is a collapsed policy)."""
    if not trace:
        return {}
    w = max(1, len(trace) // 10)
    out: dict[str, float] = {"steps": len(trace), "window": w}
    for key in TRACED:
        for part, rows in (("start", trace[:w]), ("end", trace[-w:])):
            out[f"{key}_{part}"] = sum(r[key] for r in rows) / len(rows)
    return out


def _logprobs(model, inputs: torch.Tensor, targets: torch.Tensor, chunks: list[slice]) -> torch.Tensor:
    return torch.cat([token_logprobs(model, inputs[c], targets[c]) for c in chunks])


def _train_grpo(model, tokenizer, cfg, out_dir, sample_problems, reward_fn, ref_model, evaluate, monitor, meta,
                log_fn, kind, rt: Runtime) -> dict[str, Any]:
    device = rt.device
    model.to(device).train()
    if ref_model is not None:
        ref_model.to(device).eval().requires_grad_(False)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    start, state = try_resume(out_dir, model, opt, device)
    run = wrap_for_training(model, rt, getattr(cfg, "compile", False))
    pad = tokenizer.encode_special("<|pad|>")
    k = cfg.samples_per_prompt
    ob = objective_settings(cfg)
    meta = {"kind": kind, **(meta or {})}
    history: list[dict[str, float]] = list(state.get("history", []))
    stop_reason = state.get("stop_reason")
    trace: list[dict[str, float]] = list(state.get("trace", []))  # per-step diagnostics, for the stage's summary
    if start == 0 and evaluate is not None:
        with rt.autocast():
            ev = evaluate(model, 0)
        history.append({"step": 0, **ev})
        if log_fn:
            log_fn(_eval_metrics(ev), 0)
    steps_done = start
    for step in range(start, cfg.steps):
        if stop_reason:  # a resumed run that had already stopped early
            break
        t0 = time.time()
        problems = rank_share(sample_problems(step), rt)
        model.eval()
        t_gen = time.time()
        with rt.autocast():  # bf16 generation on GPU
            prompts, comps = rollout(model, tokenizer, problems, k, cfg.max_new_tokens, cfg.temperature,
                                     step_seed(cfg.seed, step, salt=rt.rank), getattr(cfg, "top_k", None))
        t_gen = time.time() - t_gen
        model.train()
        rewards = torch.tensor(reward_fn([problems[c.prompt_index] for c in comps], comps), dtype=torch.float32)
        r = rewards.view(len(problems), k)
        # no_baseline trains on the raw reward; the others on the group-normalised advantage
        adv = (rewards if ob["objective"] == "no_baseline"
               else group_normalized_rewards(r, ob["scale_rewards"]).flatten())
        truncated = torch.tensor([c.finish_reason != "stop" for c in comps])
        inputs, targets, tmask = build_batch(prompts, comps, pad, model.config.sequence_len)
        if ob["mask_truncated_completions"]:  # an answer cut off mid-way is not judged as if it were complete
            tmask = tmask & ~truncated[:, None]
            targets[~tmask] = -1
        inputs, targets, tmask, adv_d = inputs.to(device), targets.to(device), tmask.to(device), adv.to(device)
        chunks = micro_batches(list(range(len(comps))), getattr(cfg, "device_batch_size", None))
        chunks = [slice(c[0], c[-1] + 1) for c in chunks]
        clipped = ob["objective"] == "grpo_clip"
        iterations = max(1, ob["num_iterations"])
        with torch.no_grad(), rt.autocast():
            # One update per batch: π_old is the policy itself (ratio 1, TRL's shortcut), no extra forward.
            logp_old = _logprobs(model, inputs, targets, chunks) if clipped and iterations > 1 else None
            logp_ref = _logprobs(ref_model, inputs, targets, chunks) if ref_model is not None else None
        apply_schedule(opt, cfg, step)
        n_tok = float(tmask.sum())
        normalizer = sum(loss_normalizer(tmask[c], ob["loss_type"], cfg.max_new_tokens) for c in chunks)
        for _ in range(iterations):
            acc = dict.fromkeys(DIAGNOSTICS, 0.0)

            def loss_fn(c: slice) -> torch.Tensor:
                out = response_log_probs(run, inputs[c], targets[c], return_entropy=True)
                logp, mask = out["log_probs"], tmask[c]
                old = logp.detach() if logp_old is None else logp_old[c]
                per_tok, st = per_token_pg_loss(ob["objective"], logp, adv_d[c], mask, old, ob["epsilon"],
                                                ob["epsilon_high"], ob["importance_sampling_level"],
                                                None if logp_ref is None else logp_ref[c], ob["beta"])
                st = {"entropy": out["entropy"], **st}
                m_f = mask.float()
                for key, src in DIAGNOSTICS.items():  # token sums here, token means over the step below
                    if src in st:
                        acc[key] += float((st[src] * m_f).sum())
                return loss_sum(per_tok, mask, ob["loss_type"])

            res = train_step(opt, run, chunks, loss_fn, cfg.grad_clip, normalizer=normalizer, autocast=rt.autocast)
        gen_tokens = sum(len(c.tokens) for c in comps)
        group_std = r.std(dim=1, unbiased=True) if k > 1 else torch.zeros(len(problems))
        tot = all_reduce_sum([float(rewards.sum()), float((rewards ** 2).sum()), float((r > 0.5).sum()),
                              float((r > 0.5).any(dim=1).sum()), float(gen_tokens), float(len(comps)),
                              float(len(problems)), n_tok, acc["kl"], acc["clip_frac_low"], acc["clip_frac_high"],
                              acc["entropy"], float(group_std.sum()), zero_std_fraction(r) * len(problems),
                              float(truncated.sum())], rt)
        (r_sum, _, n_correct, n_any, g_tok, n_comp, n_prob, tok_all, kl_sum, low_sum, high_sum, ent_sum, std_sum,
         n_zero_std, n_trunc) = tot
        per_tok_mean = lambda x: x / max(tok_all, 1.0)  # noqa: E731
        m = {"reward_mean": r_sum / n_comp, "reward_std": std_sum / n_prob, "frac_reward_zero_std": n_zero_std / n_prob,
             "pass@1": n_correct / n_comp, f"pass@{k}": n_any / n_prob,
             "response_len": g_tok / n_comp, "truncated_frac": n_trunc / n_comp,
             "entropy": per_tok_mean(ent_sum), "clip_frac": per_tok_mean(low_sum + high_sum),
             "clip_frac_low": per_tok_mean(low_sum), "clip_frac_high": per_tok_mean(high_sum),
             "loss": res["loss"], "grad_norm": res["grad_norm"],
             "completions": n_comp, "update_skipped": res["skipped"], "gen_tokens_per_s": g_tok / max(t_gen, 1e-9), "gen_s": t_gen,
             "step_time_s": time.time() - t0}
        if ref_model is not None:  # beta = 0 loads no reference: there is no KL to report
            m["kl"] = per_tok_mean(kl_sum)
        done = steps_done = step + 1
        trace.append({"step": done, **{key: m[key] for key in TRACED}})
        if log_fn:
            log_fn(m, done)
        if rt.master and done % cfg.log_every == 0:
            log.info("%s step %d/%d reward %.3f entropy %.3f kl %.4f clip %.3f gen %.0f tok/s", kind, done,
                     cfg.steps, m["reward_mean"], m["entropy"], m.get("kl", 0.0), m["clip_frac"],
                     m["gen_tokens_per_s"])
        if evaluate is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            with rt.autocast():
                ev = evaluate(model, done)
            m.update(_eval_metrics(ev))
            history.append({"step": done, **ev})
            if log_fn:
                log_fn(_eval_metrics(ev), done)
        if monitor is not None:
            stop_reason = monitor(m, done)
            if rt.world > 1 and all_reduce_sum([1.0 if stop_reason else 0.0], rt)[0] and not stop_reason:
                stop_reason = "stopped by another rank's monitor"  # every rank must stop at the same step
            if stop_reason and rt.master:
                log.warning("%s: stopping early at step %d: %s", kind, done, stop_reason)
        if stop_reason:
            break
        checkpoint_if_due(rt, cfg, done, out_dir, model, tokenizer, meta, opt,
                          {"history": history, "stop_reason": stop_reason, "trace": trace})
    final_step = steps_done
    result: dict[str, Any] = {"history": history, "stop_reason": stop_reason, "steps_done": final_step,
                              "diagnostics": trace_summary(trace)}
    final = out_dir / "final"
    if rt.master:
        save_stage_checkpoint(out_dir / "latest", model, tokenizer, meta, opt, final_step,
                              {"history": history, "stop_reason": stop_reason, "trace": trace})
        final = save_stage_checkpoint(out_dir / "final", model, tokenizer,
                                      {**meta, "stop_reason": stop_reason, "history": history}, None, final_step)
    rt.barrier()
    result["checkpoint"] = str(final)
    return result


def train_rl(model: GPT, tokenizer: Tokenizer, cfg, out_dir: str | Path, meta: dict[str, Any] | None = None,
             log_fn: LogFn | None = None) -> dict[str, Any]:
    """RL on cfg.task ('arithmetic' generated, or 'gsm8k' with its held-out split for eval)."""
    sample, eval_set = task_prompts(cfg)
    ref = reference_model(model, cfg.beta)

    def evaluate(m: GPT, step: int) -> dict[str, Any]:
        return evaluate_pass(m, tokenizer, eval_set, cfg.eval_samples, cfg.max_new_tokens, cfg.temperature,
                             seed=cfg.seed + 99, per_prompt=True)

    res = train_grpo(model, tokenizer, cfg, out_dir, sample, verifiable_reward_fn(tokenizer), ref, evaluate,
                     meta={"task": cfg.task, **(meta or {})}, log_fn=log_fn, kind="rl")
    res["reference_model"] = ref is not None
    h = res["history"]
    if h:
        res["pass@1_before"], res["pass@1_after"] = h[0]["pass@1"], h[-1]["pass@1"]
        res["pass@1_paired"] = paired_pass(h[0], h[-1])
    return res


def paired_pass(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float] | None:
    """after − before pass@1 on the same held-out prompts: mean, paired-bootstrap 95% interval (lm/paired_stats).

    The prompts and the sampling seed are the same before and after, so each
    prompt is its own control; None when either eval lacks its per-prompt scores.
    """
    from lm.evals.paired_stats import paired_bootstrap

    b, a = before.get("per_prompt"), after.get("per_prompt")
    if not b or not a or len(a) != len(b) or before.get("step") == after.get("step"):
        return None
    return paired_bootstrap(b, a)
