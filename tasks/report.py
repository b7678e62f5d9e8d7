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
from tasks.report_yardsticks import yardstick_tables

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
            or "reward" in k.lower() or (k.startswith("eval/core_inloop/") and not k.endswith("/seconds"))]
    out = {}
    for k in keys:
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        if len(hist) > 1:
            out[k] = hist
    return out


# Curve families: each gets its own axis (loss ~7 nats and bpb ~2.8 on one axis
# hide each other), checked in this order against the metric name.
FAMILIES = (("core_inloop", "in-loop CORE subset (score, centered mean)"), ("bpb", "bits per byte"),
            ("loss", "loss"), ("reward", "reward"),
            ("margin", "margin"), ("acc", "accuracy"))
SMOOTH_MIN_POINTS = 12  # noisier per-step series (RL reward) also get a moving average


def smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average, bias-corrected so the first points are not pulled to 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def curve_panels(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> list[tuple[str, str, dict]]:
    """(title, y label, {metric: points}) per stage and metric family, in stage order."""
    panels = []
    for stage, metrics in curves.items():
        groups: dict[str, dict] = {}
        for k, pts in metrics.items():
            fam = next((f for f, _ in FAMILIES if f in k.lower()), "other")
            groups.setdefault(fam, {})[k] = pts
        for fam, label in (*FAMILIES, ("other", "value")):
            if fam in groups:
                panels.append((f"{stage}: {label}", label, groups[fam]))
    return panels


def curves_figure(curves: dict[str, dict[str, list[tuple[int, float]]]]):
    """The training-curves figure: one axis per (stage, metric family), labelled, noisy series smoothed."""
    panels = curve_panels({s: c for s, c in curves.items() if c})
    if not panels:
        return None
    plt = _plt()
    n = len(panels)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, ylabel, metrics) in zip(axes.flat, panels):
        for k, pts in metrics.items():
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if len(pts) >= SMOOTH_MIN_POINTS:
                line, = ax.plot(xs, ys, alpha=0.3, linewidth=1)
                ax.plot(xs, smooth(ys), color=line.get_color(), label=f"{k} (moving avg)")
            else:
                ax.plot(xs, ys, marker="o" if len(pts) < 5 else None, label=k)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_curves(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> Path | None:
    """losses.png: see curves_figure; None when there is no curve."""
    fig = curves_figure(curves)
    if fig is None:
        return None
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


def eval_figure(models: dict[str, dict]):
    """Grouped bars of the accuracy-like eval metrics (one group per metric, one bar per model), values on the bars."""
    names = [n for n, m in models.items() if "error" not in m]
    metrics = [k for k in EVAL_BARS if any(k in models[n] for n in names)]
    if not names or not metrics:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.9 * len(metrics) + 3, 3.8))
    w = 0.8 / len(names)
    for i, n in enumerate(names):
        xs = [j + i * w for j in range(len(metrics))]
        bars = ax.bar(xs, [float(models[n].get(k, 0.0)) for k in metrics], width=w, label=n)
        # a 0.00 label says "measured, zero" where an empty slot would look like a gap
        ax.bar_label(bars, labels=[f"{float(models[n][k]):.2f}" if k in models[n] else "n/a" for k in metrics],
                     fontsize=6, padding=1)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(metrics))], metrics, fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("fraction correct / compliant")
    ax.set_xlabel("metric (held-out items)")
    ax.set_title("evaluation")
    ax.legend(fontsize=7, ncols=min(len(names), 5), loc="upper left")
    fig.tight_layout()
    return fig


def plot_eval(models: dict[str, dict], path: Path) -> Path | None:
    """eval.png: see eval_figure; None when there is nothing to plot."""
    fig = eval_figure(models)
    if fig is None:
        return None
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return path


# ------------------------------------------------------------------ what each stage shows
def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _ci(p: float, n: int) -> str:
    lo, hi = wilson(p * n, n)
    return f"{p:.2f} (95% CI {lo:.2f}–{hi:.2f}, n={n})"


def stage_findings(root: Path, evaluation: dict[str, Any] | None) -> list[str]:
    """One line per stage: the number that shows whether it did its job, and what a tiny CPU model can show."""
    models = (evaluation or {}).get("models") or {}
    out: list[str] = []
    meta = _read_json(root / "tokenize" / "tokens" / "meta.json") or {}
    pre = _read_json(root / "pretrain" / "manifest.json")
    val = (meta.get("splits") or {}).get("val") or {}
    if pre and pre.get("val_bpb") is not None:
        line = f"- **pretrain**: held-out bits per byte {pre['val_bpb']:.3f}"
        if val.get("n_bytes") and val.get("n_tokens") and meta.get("vocab_size"):
            uniform = math.log2(meta["vocab_size"]) * val["n_tokens"] / val["n_bytes"]
            line += f" (a uniform guess over the {meta['vocab_size']} tokens: {uniform:.2f})"
        out.append(line + ". A model this small learns word statistics, not facts: its text is locally plausible only.")
    sft = models.get("sft") or {}
    if "chat_compliance" in sft:
        base = (models.get("pretrain") or {}).get("chat_compliance")
        n = int(((evaluation or {}).get("config") or {}).get("compliance_n") or 0)
        who = next((s["reply"] for s in _samples(root) if s.get("model") == "sft"
                    and "who are you" in s.get("prompt", "").lower()), None)
        line = f"- **sft**: chat-format compliance {sft['chat_compliance']:.2f}"
        line += f" (base model {base:.2f}" + (f", n={n} prompts)" if n else ")") if base is not None else ""
        if who is not None:
            line += f"; \"Hello! Who are you?\" → \"{who.strip()[:120]}\""
            line += " (names its persona)" if "crawl2chat" in who.lower() else " (persona not learned)"
        out.append(line + ". It learns the turn format and the persona's words; answers to open questions stay empty.")
    rl = _read_json(root / "rl" / "manifest.json")
    if rl and rl.get("pass@1_after") is not None:
        cfg = rl.get("config") or {}
        n = int(cfg.get("eval_prompts") or 0) * int(cfg.get("eval_samples") or 1)
        before, after = rl.get("pass@1_before"), rl["pass@1_after"]
        line = f"- **rl** ({rl.get('task', '?')}, held-out prompts, the reward's own grader): pass@1 "
        line += (f"{_ci(before, n)} before → {_ci(after, n)} after" if n and before is not None
                 else f"{before} → {after}")
        verdict = "up" if before is not None and after > before else "not up"
        if n and before is not None and wilson(after * n, n)[0] <= wilson(before * n, n)[1]:
            verdict += "; the intervals overlap, so not a significant change"
        out.append(line + f" ({verdict}). GRPO sharpens what SFT half-learned; it cannot add skills the model lacks.")
    rm = _read_json(root / "reward" / "manifest.json")
    if rm and rm.get("val_accuracy") is not None:
        n = int(rm.get("n_val") or 0)
        lo, _ = wilson(rm["val_accuracy"] * n, n)
        verdict = "above chance" if lo > 0.5 else "not distinguishable from chance (0.5)"
        out.append(f"- **reward**: held-out pairwise accuracy {_ci(rm['val_accuracy'], n)}, {verdict}; "
                   f"{rm.get('n_train', '?')} training pairs. Human preferences about harmlessness need more "
                   "capacity than a 1.4M-parameter model has; the mechanics (Bradley–Terry loss, held-out split) "
                   "run.")
    rlhf = _read_json(root / "rlhf" / "manifest.json")
    if rlhf and rlhf.get("rm_score_end") is not None:
        out.append(f"- **rlhf**: reward-model score {rlhf.get('rm_score_start', float('nan')):.3f} → "
                   f"{rlhf['rm_score_end']:.3f} at KL {rlhf.get('kl_end', float('nan')):.2f} to the SFT model; "
                   "a rising score from a weak reward model is reward hacking as often as progress.")
    dpo = _read_json(root / "dpo" / "manifest.json")
    if dpo:
        n = int(dpo.get("n_val") or 0)
        v0, v1 = dpo.get("val_start") or {}, dpo.get("val") or {}
        if n and "margin" in v1:
            line = (f"- **dpo**: held-out implicit-reward margin {v0.get('margin', 0.0):.3f} → {v1['margin']:.3f}, "
                    f"accuracy {_ci(v1.get('accuracy', 0.0), n)}; {dpo.get('n_train', '?')} training pairs")
            if "margin" in (dpo.get("train") or {}):
                line += f" (margin on them {dpo['train']['margin']:.3f})"
        else:
            line = (f"- **dpo**: no held-out pairs ({dpo.get('n_train', 0)} training pairs fit the context): "
                    "the margin cannot be measured")
        out.append(line + ". Preference pairs that fit a short context are few; the margin moves more on the "
                   "training pairs than on held-out ones.")
    return out


def _samples(root: Path) -> list[dict]:
    path = root / "evaluate" / "samples.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


# ------------------------------------------------------------------ report
def build_report(root: str | Path, out: str | Path, evaluation: dict[str, Any] | None = None,
                 with_mlflow: bool = True) -> Path:
    """Write `<out>/report.md` (+ PNGs) for the run under `root`; returns the markdown path."""
    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# crawl2chat report card", "", f"Run root: `{root.resolve()}`", ""]
    findings = stage_findings(root, evaluation or _read_json(root / "evaluate" / "eval.json"))
    if findings:
        md += ["## what each stage shows", "", *findings, ""]

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
                     and not isinstance(v, bool) and not k.startswith("eval/")]  # suite tables below
        md += ["| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
        for k in keys:
            md.append(f"| {k} | " + " | ".join(_fmt(m.get(k, "")) for m in models.values()) + " |")
        errors = {n: m["error"] for n, m in models.items() if "error" in m}
        md += [f"- {n}: evaluation failed: {e}" for n, e in errors.items()]
        md += [""] + yardstick_tables(models)
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
