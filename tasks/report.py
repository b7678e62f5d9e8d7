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

from conf.stages import STAGES
from core.atomic import write_text
from tasks.funnel import funnel_plot
from tasks.report_yardsticks import yardstick_tables

log = logging.getLogger(__name__)

TRAIN_STAGES = tuple(s.name for s in STAGES if s.trains)  # pretrain, sft, rl, reward, rlhf, dpo
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
            or "reward" in k.lower() or k == "rl/entropy" or (k.startswith("eval/core_inloop/") and not k.endswith("/seconds"))]
    out = {}
    for k in keys:
        hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, k))
        if len(hist) > 1:
            out[k] = hist
    return out


# Curve families: each gets its own axis (loss ~7 nats and bpb ~2.8 on one axis
# hide each other), checked in this order against the metric name.
FAMILIES = (("core_inloop", "in-loop CORE subset (score, centered mean)"), ("bpb", "bits per byte"),
            ("loss", "loss"), ("reward", "reward"), ("entropy", "policy entropy (nats/token)"),
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
    out += honesty_findings(root, models)
    out += search_findings(root, models)
    out += python_findings(models)
    out += _rl_lines(root, evaluation or {}) + _reward_lines(root)
    rlhf = _read_json(root / "rlhf" / "manifest.json")
    if rlhf and rlhf.get("rm_score_end") is not None:
        out.append(f"- **rlhf**: reward-model score {rlhf.get('rm_score_start', float('nan')):.3f} → "
                   f"{rlhf['rm_score_end']:.3f} at KL {rlhf.get('kl_end', float('nan')):.2f} to the SFT model; "
                   "a rising score from a weak reward model is reward hacking as often as progress.")
    out += _dpo_lines(root)
    return out


ARITHMETIC_TASKS = {0: "sums of 0–3", 1: "one-digit sums", 2: "two-digit + and −", 3: "two-digit +, − and ×"}


def _mean_ci(m: float, se: float | None, n: int) -> str:
    """'0.85 (95% CI 0.61–1.09, n=100)': a normal interval of a mean (m ± 1.96·se)."""
    if se is None or not math.isfinite(se):
        return f"{m:.3f} (n={n})"
    return f"{m:.3f} (95% CI {m - 1.96 * se:.3f}–{m + 1.96 * se:.3f}, n={n})"


def _rl_lines(root: Path, evaluation: dict[str, Any]) -> list[str]:
    """RL: pass@1 on held-out draws before → after (the reward's grader), + evaluate's greedy sft → rl."""
    rl = _read_json(root / "rl" / "manifest.json")
    if not rl or rl.get("pass@1_after") is None:
        return []
    cfg = rl.get("config") or {}
    n_prompts, k = int(cfg.get("eval_prompts") or 0), int(cfg.get("eval_samples") or 1)
    n = n_prompts * k
    before, after = rl.get("pass@1_before"), rl["pass@1_after"]
    task = rl.get("task", "?")
    if task == "arithmetic":
        task += f", {ARITHMETIC_TASKS.get(int(cfg.get('difficulty') or 0), 'three terms')}"
    line = f"- **rl** ({task}; held-out draws, the reward's own grader): pass@1 "
    line += (f"{_ci(before, n)} before → {_ci(after, n)} after" if n and before is not None
             else f"{before} → {after}")
    if n and before is not None:
        apart = wilson(after * n, n)[0] > wilson(before * n, n)[1]
        verdict = ("up, the 95% intervals apart" if apart else
                   "up, but the intervals overlap: not a significant change" if after > before else "not up")
        line += f" ({verdict}; {k} samples of each of {n_prompts} prompts at temperature {cfg.get('temperature', 1.0)})"
    paired = rl.get("pass@1_paired")
    if isinstance(paired, dict) and paired.get("diff") is not None:
        # the same prompts and sampling seed before and after: each prompt is its own control
        d, lo, hi = paired["diff"], paired["lo"], paired["hi"]
        sig = ("up: the paired interval above 0" if lo > 0 else "down: the paired interval below 0" if hi < 0
               else "no significant change: the paired interval spans 0")
        line += (f"; paired on the same {int(paired.get('n') or n_prompts)} prompts: {d:+.3f} "
                 f"(95% CI {lo:+.3f} to {hi:+.3f}, paired bootstrap), {sig}")
    line += _rl_diagnostics(rl)
    models = evaluation.get("models") or {}
    sft, pol = models.get("sft") or {}, models.get("rl") or {}
    if "arith_acc_no_tool" in sft and "arith_acc_no_tool" in pol:
        n_ev = int((evaluation.get("config") or {}).get("arithmetic_n") or 0)
        best = lambda m: max(m.get("arith_acc_no_tool", 0.0), m.get("arith_acc_tool", 0.0))  # noqa: E731
        line += (f"; evaluate, greedy on fresh items: sft {_ci(best(sft), n_ev)} → rl {_ci(best(pol), n_ev)}"
                 if n_ev else f"; evaluate, greedy: sft {best(sft):.2f} → rl {best(pol):.2f}")
        line += _mcnemar_clause(sft, pol)
        calls = pol.get("arith_tool_calls")
        if calls is not None:
            line += f", calculator calls {int(calls)}"
    return [line + ". GRPO sharpens answers SFT half-learned (sampled answers move towards the model's best guess) "
            "and cannot add a skill: it needs an SFT model that reads the operands, and a 2-layer model trained "
            "for CPU minutes does not learn to copy operands into a calculator call, so the tiny demo's RL runs "
            "without the tool."]


def _rl_diagnostics(rl: dict[str, Any]) -> str:
    """'; loss_type dapo: policy entropy 1.20 → 0.90 nats/token, reward …' from the manifest's diagnostics (lm/rl.py)."""
    dg = rl.get("diagnostics") or {}
    if dg.get("entropy_end") is None:
        return ""
    cfg = rl.get("config") or {}
    out = (f"; loss_type {cfg.get('loss_type', '?')}: policy entropy {dg['entropy_start']:.2f} → "
           f"{dg['entropy_end']:.2f} nats/token, mean reward {dg['reward_mean_start']:.2f} → "
           f"{dg['reward_mean_end']:.2f}, clipped tokens {dg['clip_frac_end']:.1%} "
           f"(first → last {int(dg['window'])} of {int(dg['steps'])} steps)")
    if dg["entropy_end"] < 0.1 * dg["entropy_start"]:
        out += " — the entropy collapsed: the policy stopped exploring"
    return out


def _mcnemar_clause(sft: dict[str, Any], pol: dict[str, Any]) -> str:
    """'; paired on the same items (McNemar): …' for evaluate's greedy sft → rl, when both kept per-item results."""
    from lm.paired_stats import mcnemar

    for key, what in (("arith_correct_tool", "calculator on"), ("arith_correct_no_tool", "no tool")):
        a, b = sft.get(key), pol.get(key)
        if isinstance(a, list) and isinstance(b, list) and a and len(a) == len(b):
            t = mcnemar(a, b)
            return (f" (paired, {what}, McNemar: rl right where sft wrong on {t['only_b']} items, the reverse on "
                    f"{t['only_a']}, p={t['p']:.2g})")
    return ""


def _reward_lines(root: Path) -> list[str]:
    """Reward model: held-out pairwise accuracy with its interval, overall and per preference source."""
    rm = _read_json(root / "reward" / "manifest.json")
    if not rm or rm.get("val_accuracy") is None:
        return []
    n = int(rm.get("n_val") or 0)
    lo, _ = wilson(rm["val_accuracy"] * n, n)
    verdict = "above chance (0.5)" if lo > 0.5 else "not distinguishable from chance (0.5)"
    line = f"- **reward**: held-out pairwise accuracy {_ci(rm['val_accuracy'], n)}, {verdict}"
    by = rm.get("val_by_source") or {}
    if len(by) > 1:
        start = rm.get("val_by_source_start") or {}
        cells = []
        for src, d in by.items():
            c = f"{src} {_ci(d['accuracy'], int(d['n']))}"
            if src in start:
                c += f" (from {start[src]['accuracy']:.2f})"
            if src.startswith("generated"):
                c += ", topics never trained on"
            cells.append(c)
        line += "; by source: " + "; ".join(cells)
    line += f"; {rm.get('n_train', '?')} training pairs"
    return [line + ". A tiny model learns preferences written in the words (GENERATED: polite and on-topic beats "
            "rude, dismissive or off-topic); human judgements of harmlessness (HH-RLHF) stay at or near chance "
            "at this size."]


def _dpo_lines(root: Path) -> list[str]:
    """DPO: held-out implicit-reward margin (policy vs its frozen start) with its interval, per source."""
    dpo = _read_json(root / "dpo" / "manifest.json")
    if not dpo:
        return []
    n = int(dpo.get("n_val") or 0)
    v0, v1 = dpo.get("val_start") or {}, dpo.get("val") or {}
    if not (n and "margin" in v1):
        return [f"- **dpo**: no held-out pairs ({dpo.get('n_train', 0)} training pairs fit the context): the margin "
                "cannot be measured."]
    m0, m1, se = v0.get("margin", 0.0), v1["margin"], v1.get("margin_se")
    up = se is not None and math.isfinite(se) and m1 - 1.96 * se > m0
    line = (f"- **dpo**: held-out implicit-reward margin {m0:.3f} → {_mean_ci(m1, se, n)} "
            f"({'up, the interval above the start' if up else 'not clearly up'}), "
            f"accuracy {_ci(v1.get('accuracy', 0.0), n)}")
    srcs = sorted(k.split("/", 1)[1] for k in v1 if k.startswith("margin/"))
    if srcs:
        line += "; by source: " + "; ".join(
            f"{s} {_mean_ci(v1[f'margin/{s}'], v1.get(f'margin_se/{s}'), int(v1.get(f'n/{s}', 0)))}" for s in srcs)
    line += f"; {dpo.get('n_train', '?')} training pairs"
    if "margin" in (dpo.get("train") or {}):
        line += f" (margin on them {dpo['train']['margin']:.3f})"
    return [line + ". DPO moves the policy's likelihoods towards the chosen replies on unseen topics when the "
            "preference is in the words; on HH-RLHF pairs a tiny model's margin rises on the training pairs, "
            "not clearly on held-out ones."]


def honesty_findings(root: Path, models: dict[str, dict]) -> list[str]:
    """The probe → refusal-training line: held-out TriviaQA right / wrong / abstained, before vs after."""
    probe = _read_json(root / "probe" / "manifest.json")
    rated = {n: m for n, m in models.items() if isinstance(m, dict) and "honesty_wrong" in m}
    if not probe and not rated:
        return []
    line = "- **probe → sft** (knowing what it doesn't know)"
    if probe:
        line += (f": probed {probe.get('n_questions')} TriviaQA questions × {probe.get('k')} samples; "
                 f"{probe.get('n_answers')} answered right at least once (answers kept), "
                 f"{probe.get('n_refusals')} never (refusals) → SFT data")
    if rated:
        n = int(next(iter(rated.values())).get("honesty_n") or 0)
        cells = [f"{name} {m['honesty_right']:.2f} / {m['honesty_wrong']:.2f} / {m['honesty_abstain']:.2f}"
                 for name, m in rated.items()]
        line += f". Held-out right / wrong / abstained (n={n}): " + "; ".join(cells)
        before, after = rated.get("pretrain"), rated.get("sft")
        if before and after:
            d_wrong = after["honesty_wrong"] - before["honesty_wrong"]
            d_right = after["honesty_right"] - before["honesty_right"]
            overlap = n and wilson(after["honesty_wrong"] * n, n)[1] >= wilson(before["honesty_wrong"] * n, n)[0]
            line += (f"; wrong {before['honesty_wrong']:.2f} → {after['honesty_wrong']:.2f} ({d_wrong:+.2f}), "
                     f"right {d_right:+.2f}, before (pretrain, few-shot) → after (sft, refusal data mixed in)"
                     + (" — within the 95% intervals, not a significant change" if overlap and d_wrong < 0 else ""))
    return [line + ". The goal is fewer wrong answers at little cost in right ones; a tiny model knows almost no "
            "trivia, so it learns to refuse nearly everything."]


def search_findings(root: Path, models: dict[str, dict]) -> list[str]:
    """The index → search-tool line: what was indexed, and each model's search / grounded / cited rates."""
    index = _read_json(root / "index" / "manifest.json")
    rated = {n: m for n, m in models.items() if isinstance(m, dict) and m.get("search_n")}
    if not index and not rated:
        return []
    line = "- **index → search tool**"
    if index:
        tool = index.get("tool") or {}
        line += (f": {index.get('passages')} passages of {index.get('documents')} curated documents in a Tantivy "
                 f"BM25 index; the tool shows the top {tool.get('top_k')} within {tool.get('max_tokens')} tokens")
    if rated:
        n = int(next(iter(rated.values())).get("search_n") or 0)
        cells = [f"{name} {m['search_rate']:.2f} / {m['search_grounded']:.2f} / {m['search_cited']:.2f}"
                 for name, m in rated.items()]
        line += f". Questions about held-out passages, searched / grounded / cited a returned URL (n={n}): "
        line += "; ".join(cells)
    return [line + ". A tiny model's 128-token context holds one short hit: it can learn to call the tool and "
            "copy from its output, not to read long passages."]


def python_findings(models: dict[str, dict]) -> list[str]:
    """The python-tool line: each model's held-out accuracy with the sandboxed tool / without, and its calls."""
    rated = {n: m for n, m in models.items() if isinstance(m, dict) and m.get("python_n")}
    if not rated:
        return []
    n = int(next(iter(rated.values()))["python_n"])
    cells = [f"{name} {_ci(m['python_acc_tool'], n)} / {m['python_acc_no_tool']:.2f}, {m['python_tool_calls']} calls"
             for name, m in rated.items()]
    return ["- **python tool**: held-out letter counts, reversals, digit sums and long products, accuracy with "
            "the sandboxed tool / without: " + "; ".join(cells) + ". The model must write a correct snippet "
            "and copy its output; a tiny model half-learns the snippet's shape, a GPU-sized one should "
            "beat its no-tool score by far on these token-level tasks."]


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

    # index (the search tool's corpus)
    index = _read_json(root / "index" / "manifest.json")
    if index:
        md += ["## index", ""]
        md += _table([(k, index.get(k)) for k in ("documents", "passages", "new_shards", "engine", "wall_seconds")]
                     + [(f"tool_{k}", v) for k, v in (index.get("tool") or {}).items()])
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
