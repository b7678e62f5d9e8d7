"""RLHF: optimise a policy against a reward model, with a KL penalty to the reference.

The optimiser is GRPO (lm/posttrain/rl.py) with the reward model's score as the reward
and a k3 KL penalty to the frozen starting policy. Reward hacking watch: every
`eval_every` steps the monitor compares windows of the RM score with an
independent signal —
- `rm2`: a second reward model trained on a different split: the run stops when
  the RM score keeps rising while the second RM's score falls;
- `length`: the mean response length: the run stops when it drifts more than
  2× from its start while the RM score rises (a classic exploit);
and stops when the mean KL to the reference exceeds `kl_max`.
"""
from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from core.atomic import write_text
from lm.chat import ChatError, ChatRenderer
from lm.datasets.preferences import load_preferences
from lm.datasets.records import SkipStats
from lm.engine import Completion
from lm.model import GPT
from lm.posttrain.reward import RewardModel, score_sequences
from lm.posttrain.rl import Problem, train_grpo
from lm.posttrain.loop import LogFn, resume_step, step_seed
from lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)

MONITOR_ROWS = "monitor_rows.json"  # the hacking monitor's per-step inputs, for an exact resume


def load_prompts(paths: Sequence[str], tokenizer: Tokenizer, max_prompt_len: int, stats: SkipStats,
                 max_prompts: int | None = None) -> list[Problem]:
    """Prompt conversations from preference files; oldest turns dropped to fit, else skipped (counted)."""
    r = ChatRenderer(tokenizer)
    out = []
    for p in load_preferences(list(paths), stats):
        prompt = p.prompt
        while True:
            try:
                ids = r.render_for_completion(prompt)
            except ChatError as e:
                stats.skip(p.source, "prompt_" + e.reason)
                break
            if len(ids) <= max_prompt_len:
                out.append(Problem(prompt))
                break
            users = [i for i, m in enumerate(prompt) if m["role"] == "user"]
            if len(users) < 2:
                stats.skip(p.source, "prompt_too_long")
                break
            prompt = prompt[users[1]:]
        if max_prompts and len(out) >= max_prompts:
            break
    return out


def rm_scores(rm: RewardModel, tokenizer: Tokenizer, problems: Sequence[Problem],
              completions: Sequence[Completion]) -> torch.Tensor:
    """RM score of prompt + completion, closed with <|assistant_end|> if the sample was cut off."""
    r = ChatRenderer(tokenizer)
    end = tokenizer.encode_special("<|assistant_end|>")
    seqs = []
    for p, c in zip(problems, completions):
        toks = list(c.tokens)
        if not toks or toks[-1] != end:
            toks.append(end)
        seqs.append(r.render_for_completion(p.conversation) + toks)
    return score_sequences(rm, seqs, tokenizer.encode_special("<|pad|>"))


class HackingMonitor:
    """Stops RLHF on a KL bound or when the RM score and the independent signal diverge."""

    def __init__(self, kl_max: float, window: int, patience: int, signal: str):
        self.kl_max, self.window, self.patience, self.signal = kl_max, window, patience, signal
        self.rows: list[dict[str, float]] = []
        self.prev: tuple[float, float] | None = None
        self.start_len: float | None = None
        self.strikes = 0

    def __call__(self, m: dict[str, float], step: int) -> str | None:
        self.rows.append(m)
        if m.get("kl", 0.0) > self.kl_max:
            return f"kl_bound: mean KL {m['kl']:.3f} > kl_max {self.kl_max}"
        if step % self.window:
            return None
        w = self.rows[-self.window:]
        rm = sum(r["reward_mean"] for r in w) / len(w)
        length = sum(r["response_len"] for r in w) / len(w)
        if self.signal == "rm2":
            check = sum(r["check_rm"] for r in w) / len(w)
            if self.prev is not None and rm > self.prev[0] and check < self.prev[1]:
                self.strikes += 1
            else:
                self.strikes = 0
            self.prev = (rm, check)
        else:
            if self.start_len is None:
                self.start_len = max(1.0, length)
            drift = length / self.start_len
            rising = self.prev is not None and rm > self.prev[0]
            self.strikes = self.strikes + 1 if rising and (drift > 2 or drift < 0.5) else 0
            self.prev = (rm, length)
        if self.strikes >= self.patience:
            return (f"reward_hacking: RM score rose while the independent check ({self.signal}) "
                    f"diverged for {self.strikes} windows")
        return None


def train_rlhf(policy: GPT, tokenizer: Tokenizer, rm: RewardModel, prompts: list[Problem], cfg,
               out_dir: str | Path, check_rm: RewardModel | None = None, meta: dict[str, Any] | None = None,
               log_fn: LogFn | None = None) -> dict[str, Any]:
    """GRPO against `rm` with a KL penalty to the starting policy; hacking monitor as above."""
    if not prompts:
        raise ValueError("no RLHF prompts survived; check --prompts and the skip counts")
    device = policy.lm_head.weight.device
    rm.to(device).eval().requires_grad_(False)
    if check_rm is not None:
        check_rm.to(device).eval().requires_grad_(False)
    ref = copy.deepcopy(policy)
    last: dict[str, float] = {}

    def sample(step: int) -> list[Problem]:
        return random.Random(step_seed(cfg.seed, step, 3)).sample(prompts, min(cfg.prompts_per_step, len(prompts)))

    def reward_fn(probs, comps) -> list[float]:
        s = rm_scores(rm, tokenizer, probs, comps)
        if check_rm is not None:
            last["check_rm"] = float(rm_scores(check_rm, tokenizer, probs, comps).mean())
        return s.tolist()

    monitor = HackingMonitor(cfg.kl_max, cfg.eval_every, cfg.divergence_patience,
                             "rm2" if check_rm is not None else "length")
    # The monitor's windows span steps: its rows are kept beside the checkpoints, and a resumed
    # run replays those up to the checkpoint's step, so it judges (and reports) as if never stopped.
    rows_path = Path(out_dir) / MONITOR_ROWS
    seen: list[dict[str, float]] = []
    start = resume_step(out_dir)
    if start and rows_path.exists():
        for row in json.loads(rows_path.read_text()):
            if row["step"] <= start:
                m = {k: v for k, v in row.items() if k != "step"}
                monitor(m, row["step"])
                seen.append(row)

    def logged(m: dict[str, float], step: int) -> None:
        m = {**m, **last}
        if log_fn:
            log_fn(m, step)

    def mon(m: dict[str, float], step: int) -> str | None:
        row = {**m, **last}
        seen.append({"step": step, **row})
        write_text(rows_path, json.dumps(seen))  # before the step's checkpoint: never behind it
        return monitor(row, step)

    res = train_grpo(policy, tokenizer, cfg, out_dir, sample, reward_fn, ref, None, mon,
                     meta={"kind": "rlhf", **(meta or {})}, log_fn=logged, kind="rlhf")
    res["steps"] = monitor.rows
    return res
