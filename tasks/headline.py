"""The headline of a pipeline run: a few numbers with stable names, one per stage outcome.

The parent MLflow run `llm-pipeline` carries these and nothing else, so MLflow's Compare
of two runs is a short table (and a parallel-coordinates plot) that means something:

    curate.documents      tokenize.n_tokens     pretrain.val_bpb   ...   evaluate.sft.chat_compliance

Each is read from what its stage wrote (manifest, stats.json, eval.json): a skipped
stage reports the same number as when it ran. A number a stage did not produce is
left out, never logged as 0. `HEADLINES` is the list (and docs/MLFLOW.md explains it);
the params are as short: the preset, the seed and the settings this run changed.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _eval(model: str, key: str) -> Callable[[Path], Any]:
    return lambda root: _get(_read(root / "evaluate" / "eval.json"), "models", model, key)


def _eval_best_arith(model: str) -> Callable[[Path], Any]:
    """Arithmetic accuracy with the calculator or without, whichever the model was better at."""
    def get(root: Path) -> Any:
        m = _get(_read(root / "evaluate" / "eval.json"), "models", model) or {}
        vals = [m[k] for k in ("arith_acc_tool", "arith_acc_no_tool") if isinstance(m.get(k), (int, float))]
        return max(vals) if vals else None
    return get


def _manifest(stage: str, *keys: str) -> Callable[[Path], Any]:
    return lambda root: _get(_read(root / stage / "manifest.json"), *keys)


# (metric name, stage, how to read it from the run root, what it says). Stable names: two runs
# compare only on names they share; rename one and the comparison loses it.
HEADLINES: list[tuple[str, str, Callable[[Path], Any], str]] = [
    ("curate.documents", "curate", _manifest("curate/curated", "documents"),
     "documents kept after filtering and dedup"),
    ("tokenize.n_tokens", "tokenize", lambda r: _read(r / "tokenize" / "tokens" / "meta.json").get("n_tokens"),
     "tokens in the train + val shards"),
    ("tokenize.vocab_size", "tokenize", lambda r: _read(r / "tokenize" / "tokens" / "meta.json").get("vocab_size"),
     "BPE vocabulary size"),
    ("pretrain.val_bpb", "pretrain", _manifest("pretrain", "val_bpb"),
     "held-out bits per byte of the base model (lower is better)"),
    ("pretrain.n_params", "pretrain", _manifest("pretrain", "n_params"), "model parameters"),
    ("pretrain.tokens_seen", "pretrain", _manifest("pretrain", "tokens_seen"), "tokens trained on"),
    ("index.passages", "index", _manifest("index", "passages"), "passages in the search index"),
    ("sft.val_loss", "sft", _manifest("sft", "val_loss"), "held-out loss on chat replies"),
    ("rl.pass_at_1_before", "rl", _manifest("rl", "pass@1_before"), "RL task solved, sampled, before RL"),
    ("rl.pass_at_1_after", "rl", _manifest("rl", "pass@1_after"), "the same prompts after RL"),
    ("reward.val_accuracy", "reward", _manifest("reward", "val_accuracy"),
     "held-out preference pairs ranked right (chance 0.5)"),
    ("rlhf.rm_score_end", "rlhf", _manifest("rlhf", "rm_score_end"), "reward-model score of the policy at the end"),
    ("rlhf.kl_end", "rlhf", _manifest("rlhf", "kl_end"), "KL from the SFT model at the end"),
    ("dpo.val_margin", "dpo", _manifest("dpo", "val", "margin"), "held-out implicit-reward margin (> 0: prefers chosen)"),
    ("dpo.val_accuracy", "dpo", _manifest("dpo", "val", "accuracy"), "held-out pairs with a positive margin"),
    ("evaluate.pretrain.val_bpb", "evaluate", _eval("pretrain", "val_bpb"), "base model, held-out bits per byte"),
    ("evaluate.pretrain.core", "evaluate", lambda r: _get(_read(r / "evaluate" / "eval.json"), "models", "pretrain",
                                                         "core", "core"),
     "base model, CORE-style score (0 = chance)"),
    ("evaluate.sft.chat_compliance", "evaluate", _eval("sft", "chat_compliance"), "chat model answers in the format"),
    ("evaluate.sft.arith_acc", "evaluate", _eval_best_arith("sft"), "chat model, held-out sums right"),
    ("evaluate.rl.arith_acc", "evaluate", _eval_best_arith("rl"), "after RL, the same sums right"),
    ("evaluate.sft.gsm8k_pass_at_1", "evaluate", _eval("sft", "gsm8k_pass@1"), "chat model, GSM8K held-out"),
    ("evaluate.sft.python_acc_tool", "evaluate", _eval("sft", "python_acc_tool"),
     "chat model, python-tool items right"),
    ("evaluate.sft.honesty_wrong", "evaluate", _eval("sft", "honesty_wrong"),
     "chat model, trivia answered wrong (lower is better)"),
    ("evaluate.sft.search_grounded", "evaluate", _eval("sft", "search_grounded"),
     "chat model, answers grounded in a search hit"),
]
HEADLINE_NAMES = [h[0] for h in HEADLINES]
# The one figure each stage's end-of-stage log line names (the pipeline's log).
STAGE_FIGURE = {"curate": "curate.documents", "tokenize": "tokenize.n_tokens", "pretrain": "pretrain.val_bpb",
                "index": "index.passages", "sft": "sft.val_loss", "rl": "rl.pass_at_1_after",
                "reward": "reward.val_accuracy", "rlhf": "rlhf.rm_score_end", "dpo": "dpo.val_margin",
                "evaluate": "evaluate.sft.chat_compliance"}


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def headline_metrics(root: str | Path, stage: str) -> dict[str, float]:
    """The headline numbers of `stage` found under the run root (those it did not produce are left out)."""
    root = Path(root)
    out = {}
    for name, st, get, _ in HEADLINES:
        if st == stage:
            v = _number(get(root))
            if v is not None:
                out[name] = v
    return out


def headline_line(stage: str, headline: dict[str, float]) -> str:
    """'; pretrain.val_bpb 2.412: held-out bits per byte of the base model (lower is better)' (a stage's end line)."""
    name = STAGE_FIGURE.get(stage)
    if not name or name not in headline:
        return ""
    what = next(h[3] for h in HEADLINES if h[0] == name)
    v = headline[name]
    shown = f"{v:,.0f}" if v == int(v) and abs(v) >= 100 else f"{v:.4g}"
    return f"; {name} {shown}: {what}"


def pretrain_seed(preset: str, overrides: dict[str, dict[str, Any]]) -> int | None:
    """The seed of the base model (the preset's, or `--set pretrain.seed=N`): what makes two runs differ."""
    try:
        import conf
        from conf.pretrain import PretrainConfig

        return int(conf.load(PretrainConfig, preset if preset in conf.preset_names() else None,
                             dict((overrides or {}).get("pretrain") or {})).seed)
    except Exception:  # a bad override fails in the stage itself, with its own message
        return None


def headline_params(preset: str, stages: list[str], overrides: dict[str, dict[str, Any]],
                    inputs: list[str] | None) -> dict[str, Any]:
    """The parent run's params: flat and few — the preset, the seed, the stages run, the inputs,
    and each setting this run changed as `<stage>.<key>` (the knobs a user turns)."""
    params: dict[str, Any] = {"preset": preset, "seed": pretrain_seed(preset, overrides), "stages": ",".join(stages),
                              "inputs": f"{len(inputs)} given" if inputs else "default"}
    for stage, over in sorted((overrides or {}).items()):
        for k, v in sorted((over or {}).items()):
            params[f"{stage}.{k}"] = v if isinstance(v, (int, float, str, bool)) else json.dumps(v)[:500]
    return params


# MLflow 3's UI starts in its GenAI mode (traces, prompts); this query switches it to model training.
ML_MODE = "workflowType=machine_learning"


def runs_url(ui: str, experiment_id: str) -> str:
    """The experiment's runs table, in the UI's model-training mode (not the GenAI start page)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{ML_MODE}"


def compare_url(ui: str, experiment_id: str, run_ids: list[str]) -> str:
    """The MLflow UI page comparing `run_ids` (MLflow 3's hash route)."""
    runs = ",".join(f'"{r}"' for r in run_ids)
    return f"{ui.rstrip('/')}/#/compare-runs?runs=[{runs}]&experiments=[\"{experiment_id}\"]&{ML_MODE}"


def pipeline_runs(tracking_uri: str, experiment: str = "crawl2chat", n: int = 2) -> tuple[str | None, list[str]]:
    """(experiment id, ids of the newest `n` finished `llm-pipeline` runs, oldest first) in a store."""
    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).exists():
        return None, []  # asking would create an empty store
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, []
    runs = client.search_runs([exp.experiment_id], "attributes.run_name = 'llm-pipeline' and "
                              "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                              max_results=n)
    return exp.experiment_id, [r.info.run_id for r in reversed(runs)]


def ui_links(tracking_uri: str, ui: str) -> list[str]:
    """What `make mlflow-ui` prints: the runs table, and the comparison of the last two pipeline runs."""
    exp_id, ids = pipeline_runs(tracking_uri)
    if exp_id is None:
        return [f"MLflow UI: {ui} (no crawl2chat runs in {tracking_uri} yet: run `make demo` first)"]
    lines = [f"runs: {runs_url(ui, exp_id)}"]
    if len(ids) == 2:
        lines.append(f"compare the last two llm-pipeline runs: {compare_url(ui, exp_id, ids)}")
    else:
        lines.append("compare: one llm-pipeline run so far; docs/MLFLOW.md makes a second one cheaply")
    return lines


if __name__ == "__main__":  # `python -m tasks.headline TRACKING_URI UI_URL` (make mlflow-ui)
    import sys

    print("\n".join(ui_links(sys.argv[1], sys.argv[2])))
