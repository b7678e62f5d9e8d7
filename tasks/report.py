"""The report card of one pipeline run: markdown, a table per stage, PNG plots.

Reads what each stage left under the run root (nothing is recomputed):
  curate/stats.json            the curation funnel  → table + funnel.png
  tokenize/tokens/meta.json    token counts         → table
  <stage>/manifest.json        pretrain, sft, rl, reward, rlhf, dpo → table of scalars;
                               its `mlflow_run_id` → loss curves from MLflow metric history
  evaluate/eval.json           eval metrics         → table + eval.png (+ samples)

Missing stages are listed as "not run", never an error: a partial run still gets
a card. Plots use matplotlib's Agg backend (no display needed).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from crawl2chat.atomic import write_text
from tasks.funnel import funnel_plot

log = logging.getLogger(__name__)

TRAIN_STAGES = ("pretrain", "sft", "rl", "reward", "rlhf", "dpo")
EVAL_BARS = ("gsm8k_pass@1", "arith_acc_tool", "arith_acc_no_tool", "chat_compliance")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def _table(rows: list[tuple[str, Any]]) -> list[str]:
    out = ["| key | value |", "|---|---|"]
    out += [f"| {k} | {_fmt(v).replace('|', '/')} |" for k, v in rows]
    return out


def _scalars(d: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in d.items()
            if isinstance(v, (int, float, str)) and not isinstance(v, bool) and k not in ("config",)]


# ------------------------------------------------------------------ plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_history(run_id: str) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value)]} for the run's loss-like metrics, from MLflow."""
    from mlflow import MlflowClient

    client = MlflowClient()
    keys = [k for k in client.get_run(run_id).data.metrics if "loss" in k.lower() or "bpb" in k.lower()
            or "reward" in k.lower()]
    out = {}
    for k in keys:
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        if len(hist) > 1:
            out[k] = hist
    return out


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> Path | None:
    """One panel per stage with its loss-like metric curves."""
    curves = {s: c for s, c in curves.items() if c}
    if not curves:
        return None
    plt = _plt()
    n = len(curves)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (stage, metrics) in zip(axes.flat, curves.items()):
        for k, pts in metrics.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
        ax.set_title(stage)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_eval(models: dict[str, dict], path: Path) -> Path | None:
    """Grouped bars of the accuracy-like eval metrics, one group per metric, one bar per model."""
    names = [n for n, m in models.items() if "error" not in m]
    metrics = [k for k in EVAL_BARS if any(k in models[n] for n in names)]
    if not names or not metrics:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 * len(metrics) + 3, 3.5))
    w = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [j + i * w for j in range(len(metrics))]
        ax.bar(xs, [float(models[n].get(k, 0.0)) for k in metrics], width=w, label=n)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(metrics))], metrics, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("fraction")
    ax.set_title("evaluation")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ report
def build_report(root: str | Path, out: str | Path, evaluation: dict[str, Any] | None = None,
                 with_mlflow: bool = True) -> Path:
    """Write `<out>/report.md` (+ PNGs) for the run under `root`; returns the markdown path."""
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# crawl2chat report card", "", f"Run root: `{root.resolve()}`", ""]

    # curate
    md += ["## curate", ""]
    stats = _read_json(root / "curate" / "stats.json")
    if stats:
        md += _table([(k, stats[k]) for k in ("inputs", "shards", "documents", "wall_seconds") if k in stats])
        md += ["", "| stage | in | kept | dropped |", "|---|---|---|---|"]
        for s in stats.get("stages", []):
            dropped = ", ".join(f"{r}: {n}" for r, n in sorted((s.get("dropped") or {}).items())) or "-"
            md.append(f"| {s.get('stage')} | {s.get('in', '')} | {s.get('kept', '')} | {dropped} |")
        if funnel_plot(stats, out / "funnel.png"):
            md += ["", "![curation funnel](funnel.png)"]
    else:
        md.append("not run (no curate/stats.json)")
    md.append("")

    # tokenize
    md += ["## tokenize", ""]
    meta = _read_json(root / "tokenize" / "tokens" / "meta.json")
    if meta:
        by_split: dict[str, int] = {}
        for s in meta.get("shards", []):
            by_split[s.get("split", "?")] = by_split.get(s.get("split", "?"), 0) + int(s.get("n_tokens", 0))
        md += _table([("vocab_size", meta.get("vocab_size")), ("n_tokens", meta.get("n_tokens")),
                      ("dtype", meta.get("dtype")), *[(f"{k}_tokens", v) for k, v in sorted(by_split.items())],
                      ("shards", len(meta.get("shards", [])))])
    else:
        md.append("not run (no tokenize/tokens/meta.json)")
    md.append("")

    # training stages
    curves: dict[str, dict] = {}
    for st in TRAIN_STAGES:
        md += [f"## {st}", ""]
        man = _read_json(root / st / "manifest.json")
        if not man:
            md += ["not run", ""]
            continue
        md += _table(_scalars(man))
        run_id = man.get("mlflow_run_id")
        if with_mlflow and run_id:
            try:
                curves[st] = loss_history(run_id)
            except Exception as e:  # the card is a view: a missing run costs a plot, not the card
                log.warning("no metric history for %s (run %s): %s", st, run_id, e)
        md.append("")
    if plot_curves(curves, out / "losses.png"):
        md += ["## training curves", "", "![loss curves](losses.png)", ""]

    # evaluate
    md += ["## evaluate", ""]
    evaluation = evaluation or _read_json(root / "evaluate" / "eval.json")
    if evaluation and evaluation.get("models"):
        models = evaluation["models"]
        keys = []
        for m in models.values():
            keys += [k for k, v in m.items() if isinstance(v, (int, float)) and k not in keys
                     and not isinstance(v, bool)]
        md += ["| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for k in keys:
            md.append(f"| {k} | " + " | ".join(_fmt(m.get(k, "")) for m in models.values()) + " |")
        errors = {n: m["error"] for n, m in models.items() if "error" in m}
        md += [f"- {n}: evaluation failed: {e}" for n, e in errors.items()]
        if plot_eval(models, out / "eval.png"):
            md += ["", "![eval](eval.png)"]
        samples_path = root / "evaluate" / "samples.jsonl"
        if samples_path.exists():
            md += ["", "### samples", ""]
            for line in samples_path.read_text().splitlines()[:10]:
                s = json.loads(line)
                reply = s["reply"].replace("\n", " ")[:300]
                md += [f"- **{s['model']}** — *{s['prompt']}* → {reply}"]
    else:
        md.append("not run (no evaluate/eval.json)")
    md.append("")

    return write_text(out / "report.md", "\n".join(md))
