"""The `evaluate` stage: score models, write `eval.json` + samples, then the report card.

    OUT/eval.json            {"main": name, "models": {name: metrics}, "config": {...}}
    OUT/samples.jsonl        sample generations of every model (prompt, reply, finish reason)
    OUT/report/report.md     the report card (tasks/report.py) + PNG plots
    OUT/manifest.json        written last by the flow

Metrics per model, by suite (`cfg.suite`, a comma list):
- basic (lm/evals/basic.py): val bits per byte on the held-out token shards, GSM8K
  pass@1 / pass@k on the held-out last 500 problems, GENERATED arithmetic with
  and without the calculator, chat-format compliance, samples;
- core (lm/evals/core.py): CORE-style multiple choice on real benchmark data,
  `eval/core/<task>` + `eval/core/core_score`, details under `core`;
- chat (lm/evals/chat.py): ARC lettered multiple choice, GSM8K, TriviaQA in the
  chat format, `eval/chat/<task>`, details under `chat`;
- and, for every model while `honesty_n` > 0, the hallucination eval
  (lm/evals/honesty.py): right / wrong / abstained rates on held-out TriviaQA,
  `honesty_{right,wrong,abstain}`, details under `honesty`;
- and, when `search_index` names a built index, the search eval (lm/datasets/search.py):
  questions about held-out passages with the search tool on, `search_{rate,grounded,
  cited,retrieved}`, details under `search`.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from conf.evaluate import EvalConfig, suites
from core.atomic import write_text
from tasks.prefect_task import prefect_task

log = logging.getLogger(__name__)

SAMPLE_PROMPTS = [
    "Hello! Who are you?",
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "What is 17*23? Use the calculator.",
    "Give me three tips for learning to cook.",
]


def val_tokens(tokens_dir: str | Path | None, max_tokens: int) -> np.ndarray | None:
    """Up to `max_tokens` held-out token ids from `<tokens_dir>/val_*.bin` (None when absent)."""
    if not tokens_dir:
        return None
    d = Path(tokens_dir)
    meta_path = d / "meta.json"
    if not meta_path.exists():
        log.warning("no token meta at %s: skipping bits per byte", meta_path)
        return None
    meta = json.loads(meta_path.read_text())
    dtype = np.dtype(meta.get("dtype", "uint16")).newbyteorder("<")
    shards = [s for s in meta.get("shards", []) if s.get("split") == "val" or "val_" in Path(s["path"]).name]
    parts, n = [], 0
    for s in shards:
        arr = np.fromfile(d / s["path"], dtype=dtype)
        parts.append(arr[:max_tokens - n])
        n += len(parts[-1])
        if n >= max_tokens:
            break
    if not parts:
        log.warning("no val shards listed in %s: skipping bits per byte", meta_path)
        return None
    return np.concatenate(parts).astype(np.int64)


def eval_parts(cfg: EvalConfig) -> list[str]:
    """The parts `evaluate_model` runs for this config, in order (a unit of evaluate's progress)."""
    wanted = suites(cfg.suite)
    return ([p for p in ("basic", "core", "chat") if p in wanted] + (["honesty"] if cfg.honesty_n else [])
            + (["search"] if cfg.search_n and cfg.search_index else []))


def evaluate_model(model: str, cfg: EvalConfig, tokens_dir: str | Path | None = None,
                   on_part: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every metric of one model (checkpoint dir or MLflow URI); `samples` holds its generations.

    `on_part(name)` is called after each part of `eval_parts(cfg)` (progress).
    """
    import torch

    from lm.engine import load_engine

    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    engine, meta = load_engine(model, device=cfg.device)
    out: dict[str, Any] = {"model": str(model), "kind": meta.get("kind"), "step": meta.get("step"),
                           "params": engine.model.num_params()}
    for part in eval_parts(cfg):
        if part == "basic":
            basic_metrics(engine, model, cfg, tokens_dir, out)
        elif part == "core":
            out.update(core_metrics(engine, cfg))
        elif part == "chat":
            out.update(chat_metrics(engine, cfg))
        elif part == "honesty":
            out.update(honesty_metrics(engine, meta, cfg))
        elif part == "search":
            out.update(search_metrics(engine, cfg))
        if on_part is not None:
            on_part(part)
    out["eval_seconds"] = round(time.perf_counter() - t0, 1)
    return out


def basic_metrics(engine, model: str, cfg: EvalConfig, tokens_dir: str | Path | None, out: dict[str, Any]) -> None:
    """Suite `basic` into `out`: bits per byte, GSM8K pass@k, arithmetic, chat format, samples."""
    from lm.datasets import arithmetic, gsm8k
    from lm.evals import basic as ev

    ids = val_tokens(tokens_dir, cfg.bpb_max_tokens)
    if ids is not None and len(ids) > 1:
        out["val_bpb"] = ev.bits_per_byte(engine.model, engine.tokenizer, ids, batch_size=cfg.batch_size)["bpb"]
        log.info("%s: val bpb %.4f", model, out["val_bpb"])
    if cfg.gsm8k_n and Path(cfg.gsm8k_path).exists():
        g = ev.gsm8k_eval(engine, gsm8k.heldout(cfg.gsm8k_path, cfg.gsm8k_n), k=cfg.gsm8k_k,
                          max_new_tokens=cfg.gsm8k_max_new_tokens, temperature=cfg.temperature, seed=cfg.seed,
                          batch_size=cfg.batch_size)
        out["gsm8k_pass@1"], out[f"gsm8k_pass@{cfg.gsm8k_k}"] = g["pass@1"], g[f"pass@{cfg.gsm8k_k}"]
        out["gsm8k_n"] = g["n"]
        log.info("%s: GSM8K pass@1 %.3f pass@%d %.3f (n=%d)", model, g["pass@1"], cfg.gsm8k_k,
                 g[f"pass@{cfg.gsm8k_k}"], g["n"])
    if cfg.arithmetic_n:
        probs = arithmetic_items(cfg)
        a = ev.arithmetic_eval(engine.model, engine.tokenizer, probs, batch_size=cfg.batch_size * 2)
        out["arith_acc_tool"] = a["with_tool"]["accuracy"]
        out["arith_acc_no_tool"] = a["no_tool"]["accuracy"]
        out["arith_tool_calls"] = a["with_tool"]["tool_calls"]
        # per item, for the report's paired sft → rl test (lists are not headline metrics)
        out["arith_correct_tool"], out["arith_correct_no_tool"] = a["with_tool"]["correct"], a["no_tool"]["correct"]
        log.info("%s: arithmetic %.3f with calculator, %.3f without", model, out["arith_acc_tool"],
                 out["arith_acc_no_tool"])
    if cfg.python_n:
        from lm.datasets.python_tool import python_eval, python_problems

        pe = python_eval(engine.model, engine.tokenizer, python_problems(cfg.python_n, seed=cfg.seed, heldout=True),
                         max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size * 2)
        out.update(python_acc_tool=pe["with_tool"]["accuracy"], python_acc_no_tool=pe["no_tool"]["accuracy"],
                   python_tool_calls=pe["with_tool"]["tool_calls"], python_n=pe["n"])
        log.info("%s: python items %.3f with the sandboxed tool, %.3f without", model, out["python_acc_tool"],
                 out["python_acc_no_tool"])
    if cfg.compliance_n:
        qs = [p["question"] for p in arithmetic.eval_problems(cfg.compliance_n, cfg.seed + 1, difficulty=3)]
        qs = (SAMPLE_PROMPTS + qs)[:cfg.compliance_n]
        c = ev.chat_compliance(engine, qs, max_new_tokens=cfg.max_new_tokens)
        out["chat_compliance"] = c["compliance"]
        # what the figure was measured with and which replies failed: the report card names them
        out["compliance"] = {"n": c["n"], "max_new_tokens": cfg.max_new_tokens, "finish_reasons": c["finish_reasons"],
                             "tools": list(engine.tools.names) if engine.tools is not None else [],
                             "failed": [r for r in c["rows"] if not r["ok"]]}
    if cfg.n_samples:
        out["samples"] = ev.sample_generations(engine, SAMPLE_PROMPTS[:cfg.n_samples],
                                               max_new_tokens=cfg.max_new_tokens, seed=cfg.seed)


def arithmetic_items(cfg: EvalConfig) -> list[dict]:
    """GENERATED arithmetic items at `arithmetic_difficulty`, from the stream no training draws."""
    from lm.datasets import arithmetic

    return arithmetic.eval_problems(cfg.arithmetic_n, cfg.seed, cfg.arithmetic_difficulty)


def core_metrics(engine, cfg: EvalConfig) -> dict[str, Any]:
    """Suite `core`: CORE-style multiple choice; one flat metric per task (`eval/core/<task>`) + the details."""
    from lm.evals.core import run_core

    r = run_core(engine.model, engine.tokenizer, tasks=cfg.core_tasks or None, limit=cfg.core_limit or None,
                 batch_size=cfg.core_batch_size)
    flat = {f"eval/core/{name}": m["score"] for name, m in r["tasks"].items()}
    flat.update({"eval/core/core_score": r["core"], "eval/core/centered_mean": r["centered_mean"]})
    log.info("core: CORE-style %.4f over %d DCLM tasks, centered mean %.4f", r["core"] or 0.0, r["core_tasks"],
             r["centered_mean"] or 0.0)
    return {**{k: v for k, v in flat.items() if v is not None}, "core": r}


def chat_metrics(engine, cfg: EvalConfig) -> dict[str, Any]:
    """Suite `chat`: ARC lettered multiple choice, GSM8K held-out, TriviaQA; `eval/chat/<task>` + details."""
    from lm.evals.chat import run_chat

    r = run_chat(engine, limit=cfg.chat_limit or None, gsm8k_path=cfg.gsm8k_path,
                 max_new_tokens=cfg.chat_max_new_tokens, batch_size=cfg.batch_size)
    flat = {f"eval/chat/{name}": m["score"] for name, m in r["tasks"].items()}
    for k in ("wrong_rate", "abstain_rate"):
        if "triviaqa" in r["tasks"]:
            flat[f"eval/chat/triviaqa_{k}"] = r["tasks"]["triviaqa"][k]
    return {**flat, "chat": r}


def honesty_metrics(engine, meta: dict, cfg: EvalConfig) -> dict[str, Any]:
    """Hallucination eval on held-out TriviaQA: `honesty_{right,wrong,abstain}` + details under `honesty`."""
    from lm.datasets import triviaqa
    from lm.evals.honesty import honesty_eval

    style = triviaqa.style_for(meta)
    shots = triviaqa.split()[0][:cfg.honesty_shots] if style == "fewshot" else []
    r = honesty_eval(engine, triviaqa.heldout_questions(cfg.honesty_n), style, shots,
                     max_new_tokens=cfg.honesty_max_new_tokens, batch_size=cfg.batch_size)
    log.info("honesty (%s prompts, n=%d): right %.3f wrong %.3f abstained %.3f", style, r["n"], r["right"],
             r["wrong"], r["abstain"])
    return {"honesty_right": r["right"], "honesty_wrong": r["wrong"], "honesty_abstain": r["abstain"],
            "honesty_n": r["n"], "honesty": r}


def search_metrics(engine, cfg: EvalConfig) -> dict[str, Any]:
    """Search eval on held-out passages: `search_{rate,grounded,cited,retrieved}` + details under `search`."""
    from lm.datasets.search import index_available, search_eval

    if not index_available(cfg.search_index):
        log.warning("no complete search index at %s: skipping the search eval", cfg.search_index)
        return {}
    r = search_eval(engine, cfg.search_index, cfg.search_n, max_new_tokens=cfg.search_max_new_tokens,
                    seed=cfg.seed, batch_size=cfg.batch_size)
    log.info("search (n=%d): searched %.3f grounded %.3f cited %.3f retrieved %.3f", r["n"],
             r["search_rate"] or 0, r["grounded_rate"] or 0, r["cite_rate"] or 0, r["retrieved_rate"] or 0)
    return {"search_rate": r["search_rate"], "search_grounded": r["grounded_rate"],
            "search_cited": r["cite_rate"], "search_retrieved": r["retrieved_rate"], "search_n": r["n"], "search": r}


def _model_cfg(cfg: EvalConfig, name: str) -> EvalConfig:
    """e.g. the base model gets `core`, chat models `chat` (cfg.suite_by_model; default cfg.suite)."""
    suite = cfg.suite_by_model.get(name, cfg.suite)
    return cfg if suite == cfg.suite else cfg.model_copy(update={"suite": suite})


def run_evaluate(models: dict[str, str], out: str | Path, cfg: EvalConfig, tokens: str | Path | None = None,
                 main: str | None = None, progress: Any = None) -> dict[str, Any]:
    """Evaluate each named model; write OUT/eval.json and OUT/samples.jsonl; return the results.

    A model that fails to load or evaluate is recorded with its error (the others still run).
    `progress.update(n)` (tasks/progress.StageProgress) is told the parts done, of `evaluation_units`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    samples = []
    todo = [(n, u) for n, u in models.items() if u]
    t0 = time.perf_counter()
    done = 0

    def part_done(part: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress.update(done)

    for i, (name, uri) in enumerate(todo, 1):
        # a progress line per model: the per-metric lines below can be tens of seconds apart on CPU
        log.info("evaluate %d/%d: %s (%s) ...", i, len(todo), name, uri)
        mcfg = _model_cfg(cfg, name)
        before = done
        try:
            r = evaluate_model(uri, mcfg, tokens, on_part=part_done)
        except Exception as e:  # one bad model must not hide the others' results
            log.error("evaluating %s (%s) failed: %s", name, uri, e)
            results[name] = {"model": str(uri), "error": f"{type(e).__name__}: {e}"}
            done = before
            for part in eval_parts(mcfg):  # its parts are over, done or not
                part_done(part)
            continue
        for s in r.pop("samples", []):
            samples.append({"model": name, **s})
        results[name] = r
        log.info("evaluate %d/%d: %s done in %.0fs (%.0fs in all)", i, len(todo), name, r.get("eval_seconds", 0),
                 time.perf_counter() - t0)
    if not results:
        raise ValueError("no models to evaluate: pass --model (a checkpoint directory or models:/ URI)")
    doc = {"main": main or next(iter(results)), "models": results, "config": cfg.model_dump(mode="json"),
           "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_text(out / "eval.json", json.dumps(doc, indent=2))
    write_text(out / "samples.jsonl", "".join(json.dumps(s) + "\n" for s in samples))
    return doc


# ------------------------------------------------------------------ Prefect wrappers
def evaluation_units(models: dict[str, str], cfg: EvalConfig) -> int:
    """How many parts `run_evaluate` does: each model's `eval_parts` (evaluate's progress total)."""
    return sum(len(eval_parts(_model_cfg(cfg, n))) for n, u in models.items() if u)


def evaluate_task(models: dict[str, str], out: str, cfg: dict[str, Any], tokens: str | None = None,
                  main: str | None = None) -> dict[str, Any]:
    """Prefect task: `run_evaluate`, with a progress line every 10 % in the flow run's log."""
    from tasks.progress import StageProgress

    ecfg = EvalConfig(**cfg)
    progress = StageProgress("evaluate", evaluation_units(models, ecfg), unit="part")
    return prefect_task(run_evaluate, name="evaluate-models", retries=0, no_cache=True)(
        models, out, ecfg, tokens, main, progress)


def report_task(root: str, out: str, evaluation: dict[str, Any] | None = None) -> str:
    """Prefect task: the report card (tasks/report.py); returns the markdown path."""
    from tasks.report import build_report

    return str(prefect_task(build_report, name="report-card")(root, out, evaluation))
