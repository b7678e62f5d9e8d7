"""The base-model suite: CORE-style multiple choice by log-likelihood ranking.

For each item every (context, continuation) pair is scored with
`lm.evals.loglik.score_requests`; the prediction is the continuation with the
highest summed log-probability (`acc`) or the highest log-probability per
character (`acc_norm`, OLMo's acc_per_char). Language-modelling items
(LAMBADA, Jeopardy, SQuAD, CoQA) are right when greedy decoding reproduces
the continuation (`em`).

Each task's primary metric (see lm/datasets/benchmarks.CORE_TASKS) is centered as
DCLM and nanochat do, `(acc - chance) / (1 - chance)` with chance the mean of
1/#choices over the items (0 for `em`), and the CORE-style score is the mean
centered value over the DCLM CORE tasks we cover (`core`), beside the mean
over every task scored (`centered_mean`). DCLM's CORE averages 22 tasks;
ours covers the ones the data wheel has (`lm.datasets.benchmarks.CORE_NOT_COVERED`
lists the rest), so `core` is comparable in spirit, not digit for digit.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from lm.datasets import benchmarks as bd
from lm.evals.loglik import Score, score_requests

log = logging.getLogger(__name__)

Scorer = Callable[[list[tuple[list[int], list[int]]]], list[Score]]


def centered(acc: float, chance: float) -> float:
    """(acc − chance) / (1 − chance): 0 at chance, 1 when perfect."""
    if not 0 <= chance < 1:
        raise ValueError(f"chance must be in [0, 1), got {chance}")
    return (acc - chance) / (1 - chance)


def encode_items(items: Sequence[bd.Item], tokenizer) -> list[tuple[list[int], list[int]]]:
    """(context ids with BOS, continuation ids) for every choice of every item, in order."""
    pairs = [p for it in items for p in it.pairs()]
    ctxs = sorted({c for c, _ in pairs})
    conts = sorted({c for _, c in pairs})
    ctx_ids = dict(zip(ctxs, tokenizer.encode_batch(ctxs, prepend_bos=True)))
    cont_ids = dict(zip(conts, tokenizer.encode_batch(conts)))
    return [(ctx_ids[c], cont_ids[k]) for c, k in pairs]


def model_scorer(model, batch_size: int = 32) -> Scorer:
    """A Scorer that runs `model` (batched log-likelihoods)."""
    return lambda reqs: score_requests(model, reqs, batch_size=batch_size)


def task_metrics(name: str, graded: Sequence[dict]) -> dict:
    """acc, acc_norm, chance, the primary metric and its centered value for one task."""
    spec = bd.CORE_TASKS[name]
    n = len(graded)
    if not n:
        raise ValueError(f"task {name} has no items to score")
    acc = sum(g["correct"] for g in graded) / n
    acc_norm = sum(g["correct_norm"] for g in graded) / n
    chance = sum(g["chance"] for g in graded) / n
    score = acc_norm if spec.metric == "acc_norm" else acc
    return {"n": n, "acc": acc, "acc_norm": acc_norm, "chance": chance, "metric": spec.metric, "score": score,
            "centered": centered(score, chance), "shots": spec.shots, "dclm": spec.dclm,
            # binomial standard error of the score, so readers see what a difference means
            "stderr": math.sqrt(max(score * (1 - score), 1e-12) / n)}


def aggregate(per_task: dict[str, dict]) -> dict:
    """CORE-style means of centered scores: over DCLM tasks (`core`) and over all (`centered_mean`)."""
    dclm = [m["centered"] for m in per_task.values() if m.get("dclm")]
    every = [m["centered"] for m in per_task.values()]
    return {"core": sum(dclm) / len(dclm) if dclm else None, "core_tasks": len(dclm),
            "centered_mean": sum(every) / len(every) if every else None}


def run_core(model=None, tokenizer=None, tasks: Sequence[str] | None = None, limit: int | None = None,
             batch_size: int = 32, scorer: Scorer | None = None, root=None) -> dict:
    """Score a model (or any `scorer`) on the CORE suite: {"tasks": {name: metrics}, "core", ...}."""
    if scorer is None:
        if model is None:
            raise ValueError("run_core needs a model or a scorer")
        scorer = model_scorer(model, batch_size)
    names = list(tasks or bd.CORE_TASKS)
    per_task: dict[str, dict] = {}
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        t = time.perf_counter()
        items = bd.load_task(name, limit, root)
        graded = bd.grade_items(items, scorer(encode_items(items, tokenizer)))
        per_task[name] = task_metrics(name, graded)
        m = per_task[name]
        log.info("core %d/%d %s: %s %.4f (chance %.3f, centered %+.4f, n=%d, %.1fs)", i, len(names), name,
                 m["metric"], m["score"], m["chance"], m["centered"], m["n"], time.perf_counter() - t)
    return {"tasks": per_task, **aggregate(per_task), "limit": limit, "seconds": round(time.perf_counter() - t0, 1),
            "not_covered": list(bd.CORE_NOT_COVERED)}


class InLoopEval:
    """A fixed small CORE subset scored every N pretraining steps (OLMo-style in-loop curves).

    Items are chosen and tokenized once; each call scores them with the
    batched scorer and returns `eval/core_inloop/<task>` scores plus the
    centered mean and the seconds it took (its share of step time).
    """

    def __init__(self, tokenizer, tasks: Sequence[str] = ("hellaswag_zeroshot", "arc_easy", "piqa"),
                 items_per_task: int = 100, batch_size: int = 32, root=None):
        self.items = {name: bd.load_task(name, items_per_task, root) for name in tasks}
        self.requests = {name: encode_items(its, tokenizer) for name, its in self.items.items()}
        self.batch_size = batch_size

    def __call__(self, model) -> dict[str, float]:
        t = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            per_task = {name: task_metrics(name, bd.grade_items(self.items[name],
                                                             score_requests(model, reqs, self.batch_size)))
                        for name, reqs in self.requests.items()}
        finally:
            model.train(was_training)
        out = {f"eval/core_inloop/{n}": m["score"] for n, m in per_task.items()}
        out["eval/core_inloop/centered_mean"] = aggregate(per_task)["centered_mean"]
        out["eval/core_inloop/seconds"] = time.perf_counter() - t
        return out
