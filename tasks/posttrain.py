"""Post-training stages as plain functions over paths (+ thin Prefect task wrappers).

Each `run_<stage>` loads its input model(s) (checkpoint dir or MLflow URI),
trains, writes `<out>/final` (+ resumable `<out>/latest`) and returns the
stage's result (checkpoint, scores, data counts). It never writes the manifest:
that is the flow's last act, after the MLflow run and the registration
(flows/_stage.tracked_stage). `log_fn(metrics, step)` receives training metrics
(the flows pass an MLflow logger). They run without Prefect, which is imported
only when a flow calls a `*_task` wrapper: the stage functions also run on a
bare GPU box (benchmarks/posttrain_gsm8k.py).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tasks.prefect_task import prefect_task

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]


def _parent(meta: dict[str, Any], source: str) -> dict[str, Any]:
    return {"source": str(source), "path": meta.get("path"), "kind": meta.get("kind"), "step": meta.get("step"),
            **({"hf_import": meta["hf_import"]} if "hf_import" in meta else {})}  # tokens a transformers base gained


def _device(cfg) -> str:
    from lm.runtime import resolve_device
    return str(resolve_device(cfg.device))


def sft_persona(cfg):
    """The persona SFT teaches: conf's, plus each tool its data trains the model to call.

    Otherwise the system message and the identity answers ("What can you do?") would
    say "Tools: calculator." to a model trained on python and search calls.
    """
    from lm.chat import Persona

    tools = list(cfg.persona.tools)
    tools += ["calculator"] if cfg.n_arithmetic > 0 and cfg.arithmetic_tool else []
    tools += ["python"] if cfg.n_python > 0 else []
    tools += ["search"] if cfg.search_index and cfg.search_ratio > 0 else []
    return Persona.from_meta({"persona": cfg.persona.model_dump()}, tools)


def run_sft(model: str, out: str, cfg, log_fn: LogFn | None = None) -> dict[str, Any]:
    """SFT `model` on the configured mixture; returns the manifest."""
    from lm.checkpoint import load_model
    from lm.posttrain.sft import train_sft
    from lm.posttrain.sft_data import SkipStats, build_sft_data, load_sources

    gpt, tok, meta = load_model(model, _device(cfg))
    persona = sft_persona(cfg)
    stats = SkipStats()
    refusals = None
    if cfg.refusal_data and cfg.refusal_ratio > 0:
        from tasks.probe import conversations_path

        refusals = str(conversations_path(cfg.refusal_data))  # a probe directory or its JSONL
    convs = load_sources({"alpaca": cfg.alpaca_path, "glaive": cfg.glaive_path}, stats,
                         n_identity=cfg.n_identity, n_arithmetic=cfg.n_arithmetic,
                         arithmetic_difficulty=cfg.arithmetic_difficulty, arithmetic_tool=cfg.arithmetic_tool,
                         max_per_source=cfg.max_per_source, seed=cfg.seed,
                         gsm8k_path=cfg.gsm8k_path if cfg.gsm8k else None,
                         refusal_path=refusals, refusal_ratio=cfg.refusal_ratio,
                         search_index=cfg.search_index, search_ratio=cfg.search_ratio, tokenizer=tok,
                         max_len=min(cfg.seq_len or gpt.config.sequence_len, gpt.config.sequence_len) + 1,
                         n_python=cfg.n_python, persona=persona,
                         persona_system_fraction=cfg.persona_system_fraction)
    seq_len = min(cfg.seq_len or gpt.config.sequence_len, gpt.config.sequence_len)
    data = build_sft_data(convs, tok, seq_len, cfg.val_fraction, stats, cfg.seed)
    # the persona travels in the checkpoint: `serve --persona` / `chat --persona` say what SFT said
    recorded = {**cfg.persona.model_dump(), "tools": list(persona.tools)}
    res = train_sft(gpt, tok, data, cfg, out, meta={"parent": _parent(meta, model), "persona": recorded},
                    log_fn=log_fn)
    manifest = {"stage": "sft", "parent": _parent(meta, model), "checkpoint": res["checkpoint"],
                "val_loss": res["val_loss"], "val_loss_start": res.get("val_loss_start"), "data": data.stats,
                "config": cfg.model_dump()}
    return manifest


def run_rl(model: str, out: str, cfg, log_fn: LogFn | None = None) -> dict[str, Any]:
    """GRPO on cfg.task; returns the manifest with pass@1 before/after on the held-out prompts."""
    from lm.checkpoint import load_model
    from lm.posttrain.rl import train_rl

    gpt, tok, meta = load_model(model, _device(cfg))
    res = train_rl(gpt, tok, cfg, out, meta={"parent": _parent(meta, model)}, log_fn=log_fn)
    manifest = {"stage": "rl", "parent": _parent(meta, model), "task": cfg.task, "checkpoint": res["checkpoint"],
                "pass@1_before": res.get("pass@1_before"), "pass@1_after": res.get("pass@1_after"),
                "pass@1_paired": res.get("pass@1_paired"),  # after − before on the same prompts, paired bootstrap
                "diagnostics": res.get("diagnostics"),  # entropy, reward, clip fraction: first/last tenth of steps
                "eval_history": res["history"], "stop_reason": res["stop_reason"], "config": cfg.model_dump()}
    return manifest


def _prefs(paths: list[str], tok, max_len: int, cfg, stats) -> tuple[list, list]:
    from lm.datasets.preferences import (generate_preferences, load_preferences, render_preferences,
                                         split_preferences)

    prefs = load_preferences(paths, stats, cfg.max_pairs)
    if getattr(cfg, "generated_prefs", 0):
        prefs += generate_preferences(cfg.generated_prefs, cfg.seed)
    train, val = split_preferences(prefs, cfg.val_fraction, getattr(cfg, "split_salt", ""))
    return render_preferences(train, tok, max_len, stats), render_preferences(val, tok, max_len, stats)


def run_reward(model: str, prefs: list[str], out: str, cfg, log_fn: LogFn | None = None) -> dict[str, Any]:
    """Train a reward model on preference files (pairs and rankings); held-out pairwise accuracy."""
    from lm.checkpoint import load_model
    from lm.posttrain.reward import RewardModel, train_reward
    from lm.datasets.records import SkipStats

    gpt, tok, meta = load_model(model, _device(cfg))
    stats = SkipStats()
    max_len = min(cfg.seq_len or gpt.config.sequence_len, gpt.rotary_len)
    train, val = _prefs(list(prefs) + list(cfg.rankings), tok, max_len, cfg, stats)
    res = train_reward(RewardModel(gpt), tok, train, val, cfg, out,
                       meta={"parent": _parent(meta, model), "data": stats.as_dict()}, log_fn=log_fn)
    manifest = {"stage": "reward", "parent": _parent(meta, model), "checkpoint": res["checkpoint"],
                "val_accuracy": res["val_accuracy"], "val_accuracy_start": res.get("val_accuracy_start"),
                "val_by_source": res.get("val_by_source"), "val_by_source_start": res.get("val_by_source_start"),
                "n_train": len(train), "n_val": len(val), "data": stats.as_dict(), "prefs": list(prefs),
                "config": cfg.model_dump()}
    return manifest


def run_dpo(model: str, prefs: list[str], out: str, cfg, log_fn: LogFn | None = None) -> dict[str, Any]:
    """DPO on preference pairs with the starting model as frozen reference."""
    from lm.checkpoint import load_model
    from lm.posttrain.dpo import train_dpo
    from lm.datasets.records import SkipStats

    gpt, tok, meta = load_model(model, _device(cfg))
    ref, _, _ = load_model(model, _device(cfg))
    stats = SkipStats()
    max_len = min(cfg.seq_len or gpt.config.sequence_len, gpt.rotary_len)
    train, val = _prefs(list(prefs), tok, max_len, cfg, stats)
    res = train_dpo(gpt, ref, tok, train, val, cfg, out,
                    meta={"parent": _parent(meta, model), "data": stats.as_dict()}, log_fn=log_fn)
    manifest = {"stage": "dpo", "parent": _parent(meta, model), "checkpoint": res["checkpoint"],
                "val_start": res.get("val_start"), "val": res.get("val"), "train": res.get("train"),
                "n_train": len(train), "n_val": len(val), "data": stats.as_dict(), "prefs": list(prefs),
                "config": cfg.model_dump()}
    return manifest


def run_rlhf(policy: str, reward: str, out: str, cfg, check_reward: str | None = None,
             prompts: list[str] | None = None, log_fn: LogFn | None = None) -> dict[str, Any]:
    """RLHF: GRPO of `policy` against reward model `reward` (+ optional independent `check_reward`)."""
    from lm.checkpoint import load_model
    from lm.posttrain.reward import load_reward_model
    from lm.posttrain.rlhf import load_prompts, train_rlhf
    from lm.datasets.records import SkipStats

    dev = _device(cfg)
    gpt, tok, meta = load_model(policy, dev)
    rm, rm_tok, rm_meta = load_reward_model(reward, dev)
    if rm_tok.sha256() != tok.sha256():
        raise ValueError(f"reward model {reward} uses a different tokenizer than policy {policy}; "
                         "train the reward model from the same base")
    check = load_reward_model(check_reward, dev)[0] if check_reward else None
    stats = SkipStats()
    probs = load_prompts(prompts or [cfg.prompts_path], tok, gpt.config.sequence_len - cfg.max_new_tokens, stats,
                         cfg.max_prompts)
    res = train_rlhf(gpt, tok, rm, probs, cfg, out, check, log_fn=log_fn,
                     meta={"parent": _parent(meta, policy), "reward_model": _parent(rm_meta, reward)})
    steps = res["steps"]
    first, last = steps[:max(1, cfg.eval_every)], steps[-max(1, cfg.eval_every):]
    mean = lambda rows, k: sum(r[k] for r in rows) / max(1, len(rows))  # noqa: E731
    manifest = {"stage": "rlhf", "parent": _parent(meta, policy), "reward_model": _parent(rm_meta, reward),
                "check_reward_model": check_reward, "checkpoint": res["checkpoint"],
                "stop_reason": res["stop_reason"], "steps_done": res["steps_done"],
                "rm_score_start": mean(first, "reward_mean") if steps else None,
                "rm_score_end": mean(last, "reward_mean") if steps else None,
                "kl_end": mean(last, "kl") if steps else None, "n_prompts": len(probs),
                "data": stats.as_dict(), "config": cfg.model_dump()}
    return manifest


# ----------------------------------------------------------- Prefect tasks
# Training is not cached by Prefect: resuming from <out>/latest is what makes a re-run cheap.
sft_task = prefect_task(run_sft, name="sft-train", no_cache=True)
rl_task = prefect_task(run_rl, name="rl-train", no_cache=True)
reward_task = prefect_task(run_reward, name="reward-train", no_cache=True)
dpo_task = prefect_task(run_dpo, name="dpo-train", no_cache=True)
rlhf_task = prefect_task(run_rlhf, name="rlhf-train", no_cache=True)
