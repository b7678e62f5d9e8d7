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
from collections import Counter
from pathlib import Path
from typing import Any

from conf.stages import STAGES
from core.atomic import write_text
from lm.datasets import arithmetic
from tasks.curation.funnel import funnel_plot
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
            or "reward" in k.lower() or k == "rl/entropy"
            or (k.startswith("eval/core_inloop/") and not k.endswith("/seconds"))]
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
FALLING = ("loss", "bpb")  # families a newcomer expects to fall: a rise gets a note on the plot
# Why a stage's training loss can end above its start; said on the plot, where the eye is.
RISE_REASONS = {
    "rl": "GRPO's loss is a policy-gradient surrogate, not an error: it need not fall. Watch the reward.",
    "rlhf": "GRPO's loss is a policy-gradient surrogate, not an error: it need not fall. Watch the reward.",
    "dpo": "each point is one small batch of pairs (noisy); DPO starts at ln 2 = 0.69. The held-out margin "
           "in the card is the measure.",
    "reward": "each point is one batch of pairs (noisy); the held-out accuracy in the card is the measure.",
}
CURVES_CAPTION = ("Each panel is one stage's series from its MLflow run, by training step. Faint lines are the "
                  "raw per-step values (one batch each, so noisy); solid lines their moving average. A loss that "
                  "ends above its start is explained in red on its panel.")


def rising_note(stage: str, metric: str, ys: list[float]) -> str | None:
    """Why a loss-like curve ends above where it started, or None when it falls (or is too short to say)."""
    if len(ys) < 3 or not any(f in metric.lower() for f in FALLING):
        return None
    ends = smooth(ys) if len(ys) >= SMOOTH_MIN_POINTS else ys
    if ends[-1] <= ends[0] + 0.02 * abs(ends[0]):
        return None
    if metric.startswith("val/"):
        return f"held-out {metric.split('/', 1)[1]} rose: the model started to overfit its small data."
    return RISE_REASONS.get(stage, "per-step values are noisy; the held-out figure in the card is the measure.")


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
        notes = []
        for k, pts in metrics.items():
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            if len(pts) >= SMOOTH_MIN_POINTS:
                line, = ax.plot(xs, ys, alpha=0.3, linewidth=1)
                ax.plot(xs, smooth(ys), color=line.get_color(), label=f"{k} (moving avg)")
            else:
                line, = ax.plot(xs, ys, marker="o", label=k)
                if len(pts) < 5:  # a few points (evaluations): their values, not a line to read a trend from
                    for x, y in pts:
                        ax.annotate(f"{y:.3g}", (x, y), fontsize=6, xytext=(0, 4), textcoords="offset points",
                                    ha="center", color=line.get_color())
            note = rising_note(title.split(":", 1)[0], k, ys)
            if note and note not in notes:
                notes.append(note)
        if notes:
            import textwrap

            ax.text(0.02, 0.02, textwrap.fill("rises: " + " ".join(notes), 60), transform=ax.transAxes, fontsize=6,
                    color="darkred", va="bottom", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
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
# Each line of "what each stage shows" reads: what was measured (which items, what range, how
# many), then the figure, then what it means. The statistics behind a figure (intervals,
# paired tests) go to a numbered footnote, so the line stays readable in two minutes.
SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


class Notes:
    """The card's footnotes: `notes(text)` keeps `text` and returns its mark (¹, ², …)."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def __call__(self, text: str) -> str:
        self.items.append(text)
        return str(len(self.items)).translate(SUPERSCRIPTS)

    def markdown(self) -> list[str]:
        """The footnotes as a list under their own heading (nothing when there are none)."""
        if not self.items:
            return []
        return ["### statistics behind the figures", "",
                *[f"{str(i).translate(SUPERSCRIPTS)} {t}" + "  " for i, t in enumerate(self.items, 1)], ""]


def finding(stage: str, measured: str, result: str, means: str) -> str:
    """'- **stage** — *measured:* … *Result:* … *Means:* …' (one line of the card)."""
    return f"- **{stage}** — *Measured:* {measured}. *Result:* {result}. *Means:* {means}"


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


def _mean_ci(m: float, se: float | None, n: int) -> str:
    """'0.85 (95% CI 0.61–1.09, n=100)': a normal interval of a mean (m ± 1.96·se)."""
    if se is None or not math.isfinite(se):
        return f"{m:.3f} (n={n})"
    return f"{m:.3f} (95% CI {m - 1.96 * se:.3f}–{m + 1.96 * se:.3f}, n={n})"


def arithmetic_items_text(cfg: dict[str, Any]) -> str:
    """What evaluate's arithmetic items are, in words (lm/datasets/arithmetic.describe): 'sums of 0–3', …"""
    d = cfg.get("arithmetic_difficulty")
    if d is None:  # a run from before the one generator: two operands from 1 to arithmetic_max_operand
        return f"+, − and × of two numbers from 1 to {cfg.get('arithmetic_max_operand', 999)}"
    return arithmetic.describe(d)


def stage_findings(root: Path, evaluation: dict[str, Any] | None, notes: Notes | None = None) -> list[str]:
    """One line per stage: what was measured, the number that shows whether it did its job, what it means.

    The statistics behind the numbers go to `notes` (footnotes; a throwaway set when None).
    """
    notes = notes if notes is not None else Notes()
    evaluation = evaluation or {}
    models = evaluation.get("models") or {}
    ecfg = evaluation.get("config") or {}
    out: list[str] = []
    meta = _read_json(root / "tokenize" / "tokens" / "meta.json") or {}
    pre = _read_json(root / "pretrain" / "manifest.json")
    val = (meta.get("splits") or {}).get("val") or {}
    if pre and pre.get("val_bpb") is not None:
        measured = "how well the base model predicts held-out text it never trained on"
        if val.get("n_tokens") and val.get("n_bytes"):
            measured += f" ({val['n_tokens']:,} tokens, {val['n_bytes']:,} bytes of the curated text)"
        result = f"**{pre['val_bpb']:.3f} bits per byte**, lower is better"
        if val.get("n_bytes") and val.get("n_tokens") and meta.get("vocab_size"):
            uniform = math.log2(meta["vocab_size"]) * val["n_tokens"] / val["n_bytes"]
            result += f"; a uniform guess over the {meta['vocab_size']} tokens scores {uniform:.2f}"
        out.append(finding("pretrain", measured, result, "a model this small learns word statistics, not facts: "
                           "its text is locally plausible only."))
    sft = models.get("sft") or {}
    if "chat_compliance" in sft:
        base = (models.get("pretrain") or {}).get("chat_compliance")
        n = int(ecfg.get("compliance_n") or 0)
        comp = sft.get("compliance") or {}
        measured = (f"whether the chat model's greedy replies to {n or 'the'} prompts (greetings and arithmetic "
                    "questions) end properly with the end-of-turn token")
        if comp.get("max_new_tokens"):  # a tool's output is part of the reply: it uses up the same tokens
            limit, tools = comp["max_new_tokens"], ", ".join(comp.get("tools") or []) or "none"
            measured += (f" within {limit} tokens, with the tools it was trained to call on ({tools}; their output "
                         f"counts in the {limit})")
        measured += " — the chat format, not whether a reply is right or makes sense"
        result = f"**{sft['chat_compliance']:.2f}** of the replies keep the format"
        if base is not None:
            result += f" (the base model: {base:.2f})"
        result += compliance_failures(comp.get("failed") or [])
        who = next((s["reply"] for s in _samples(root) if s.get("model") == "sft"
                    and "who are you" in s.get("prompt", "").lower()), None)
        if who is not None:
            result += f"; \"Hello! Who are you?\" → \"{md_escape(who.strip()[:120])}\""
            result += " (names its persona)" if "crawl2chat" in who.lower() else " (persona not learned)"
        out.append(finding("sft", measured, result, "it learns the turn format and the persona's words; answers "
                           "to open questions stay empty, and well-formed replies can still be nonsense."))
    out += honesty_findings(root, models, notes)
    out += search_findings(root, models)
    out += python_findings(models, notes)
    out += _rl_lines(root, evaluation, notes) + _reward_lines(root, notes)
    rlhf = _read_json(root / "rlhf" / "manifest.json")
    if rlhf and rlhf.get("rm_score_end") is not None:
        every = int((rlhf.get("config") or {}).get("eval_every") or 1)
        out.append(finding(
            "rlhf", f"the reward model's mean score of the policy's sampled replies to {rlhf.get('n_prompts', '?')} "
            f"training prompts, first {every} steps → last {every} steps, and how far the policy moved from the "
            "SFT model (KL divergence, nats per token)",
            f"score **{rlhf.get('rm_score_start', float('nan')):.3f} → {rlhf['rm_score_end']:.3f}** at KL "
            f"{rlhf.get('kl_end', float('nan')):.2f}",
            "a rising score from a weak reward model is reward hacking as often as progress."))
    out += _dpo_lines(root, notes)
    return out


def _rl_lines(root: Path, evaluation: dict[str, Any], notes: Notes | None = None) -> list[str]:
    """RL: pass@1 on held-out draws before → after (the reward's grader), + evaluate's greedy sft → rl.

    Built from parts (measured, result clauses, meaning) so a new RL figure is one more clause.
    """
    notes = notes if notes is not None else Notes()
    rl = _read_json(root / "rl" / "manifest.json")
    if not rl or rl.get("pass@1_after") is None:
        return []
    cfg = rl.get("config") or {}
    n_prompts, k = int(cfg.get("eval_prompts") or 0), int(cfg.get("eval_samples") or 1)
    n = n_prompts * k
    before, after = rl.get("pass@1_before"), rl["pass@1_after"]
    task = rl.get("task", "?")
    if task == "arithmetic":
        task += f", {arithmetic.describe(cfg.get('difficulty') or 0)}"
    measured = (f"the RL task ({task}) on {n_prompts or '?'} held-out prompts, {k} sampled answers each at "
                f"temperature {cfg.get('temperature', 1.0)}, graded by the reward's own grader: pass@1 is the "
                "fraction of answers right")
    if before is None:
        result = [f"pass@1 **{after:.2f}** after"]
    else:
        result = [f"pass@1 **{before:.2f} → {after:.2f}**"]
    stats: list[str] = []
    verdict = "up" if before is not None and after > before else "not up"
    if n and before is not None:
        apart = wilson(after * n, n)[0] > wilson(before * n, n)[1]
        stats.append(f"RL pass@1 before {_ci(before, n)}, after {_ci(after, n)}: "
                     + ("the 95% intervals are apart." if apart else "the 95% intervals overlap."))
        verdict = "up, clearly" if apart else verdict
    paired = rl.get("pass@1_paired")
    if isinstance(paired, dict) and paired.get("diff") is not None:
        # the same prompts and sampling seed before and after: each prompt is its own control
        d, lo, hi = paired["diff"], paired["lo"], paired["hi"]
        sig = ("up: the paired interval above 0" if lo > 0 else "down: the paired interval below 0" if hi < 0
               else "no significant change: the paired interval spans 0")
        stats.append(f"Paired on the same {int(paired.get('n') or n_prompts)} prompts: {d:+.3f} "
                     f"(95% CI {lo:+.3f} to {hi:+.3f}, paired bootstrap), {sig}.")
        verdict = "up, clearly" if lo > 0 else "down, clearly" if hi < 0 else f"{verdict}, within chance"
    elif stats and verdict == "up":
        verdict = "up, within chance"
    result[0] += f" ({verdict}" + (f"{notes(' '.join(stats))})" if stats else ")")
    diag = _rl_diagnostics(rl)
    if diag:
        result.append(diag.lstrip("; "))
    models = evaluation.get("models") or {}
    sft, pol = models.get("sft") or {}, models.get("rl") or {}
    if "arith_acc_no_tool" in sft and "arith_acc_no_tool" in pol:
        ecfg = evaluation.get("config") or {}
        n_ev = int(ecfg.get("arithmetic_n") or 0)
        best = lambda m: max(m.get("arith_acc_no_tool", 0.0), m.get("arith_acc_tool", 0.0))  # noqa: E731
        clause = (f"on {n_ev or 'the'} fresh items of evaluate ({arithmetic_items_text(ecfg)}), answered greedily: "
                  f"sft {best(sft):.2f} → rl {best(pol):.2f}")
        ev_stats = (f"Evaluate, greedy: sft {_ci(best(sft), n_ev)} → rl {_ci(best(pol), n_ev)}." if n_ev else "")
        ev_stats += _mcnemar_clause(sft, pol)
        if ev_stats:
            clause += notes(ev_stats.strip())
        calls = pol.get("arith_tool_calls")
        if calls is not None:
            clause += f", {int(calls)} calculator calls"
        result.append(clause)
    means = ("GRPO sharpens answers SFT half-learned (sampled answers move towards the model's best guess) and "
             "cannot add a skill: it needs an SFT model that reads the operands, and a 2-layer model trained for "
             "CPU minutes does not learn to copy operands into a calculator call, so the tiny demo's RL runs "
             "without the tool; outside its trained range (e.g. 5+3 when it learned sums of 0–3) it guesses.")
    return [finding("rl", measured, "; ".join(result), means)]


def _rl_diagnostics(rl: dict[str, Any]) -> str:
    """'; loss_type dapo: policy entropy 1.20 → 0.90 nats/token, …' from the rl manifest's diagnostics."""
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
    """' Paired on the same items (McNemar): …' for evaluate's greedy sft → rl, when both kept per-item results."""
    from lm.evals.paired_stats import mcnemar

    for key, what in (("arith_correct_tool", "calculator on"), ("arith_correct_no_tool", "no tool")):
        a, b = sft.get(key), pol.get(key)
        if isinstance(a, list) and isinstance(b, list) and a and len(a) == len(b):
            t = mcnemar(a, b)
            return (f" Paired, {what}, McNemar: rl right where sft wrong on {t['only_b']} items, the reverse on "
                    f"{t['only_a']}, p={t['p']:.2g}.")
    return ""


def _reward_lines(root: Path, notes: Notes | None = None) -> list[str]:
    """Reward model: held-out pairwise accuracy, overall and per preference source (intervals in a footnote)."""
    notes = notes if notes is not None else Notes()
    rm = _read_json(root / "reward" / "manifest.json")
    if not rm or rm.get("val_accuracy") is None:
        return []
    n = int(rm.get("n_val") or 0)
    lo, _ = wilson(rm["val_accuracy"] * n, n)
    verdict = "above chance" if lo > 0.5 else "not distinguishable from chance"
    by = rm.get("val_by_source") or {}
    measured = (f"{n} held-out preference pairs (a chosen and a rejected reply to one prompt"
                + (f"; sources: {', '.join(by)}" if by else "") + "): does the reward model score the chosen "
                "reply higher? Chance is 0.50")
    stats = [f"Reward accuracy {_ci(rm['val_accuracy'], n)}."]
    result = f"**{rm['val_accuracy']:.2f}** of the pairs ranked right, {verdict}"
    if len(by) > 1:
        start = rm.get("val_by_source_start") or {}
        cells, cell_stats = [], []
        for src, d in by.items():
            c = f"{src} {d['accuracy']:.2f}"
            if src in start:
                c += f" (from {start[src]['accuracy']:.2f})"
            if src.startswith("generated"):
                c += ", topics never trained on"
            cells.append(c)
            cell_stats.append(f"{src} {_ci(d['accuracy'], int(d['n']))}")
        result += "; by source: " + "; ".join(cells)
        stats.append("By source: " + "; ".join(cell_stats) + ".")
    result += notes(" ".join(stats)) + f"; trained on {rm.get('n_train', '?')} pairs"
    return [finding("reward", measured, result, "a tiny model learns preferences written in the words (GENERATED: "
                    "polite and on-topic beats rude, dismissive or off-topic); human judgements of harmlessness "
                    "(HH-RLHF) stay at or near chance at this size.")]


def _dpo_lines(root: Path, notes: Notes | None = None) -> list[str]:
    """DPO: held-out implicit-reward margin (policy vs its frozen start), per source (intervals in a footnote)."""
    notes = notes if notes is not None else Notes()
    dpo = _read_json(root / "dpo" / "manifest.json")
    if not dpo:
        return []
    n = int(dpo.get("n_val") or 0)
    v0, v1 = dpo.get("val_start") or {}, dpo.get("val") or {}
    if not (n and "margin" in v1):
        return [f"- **dpo** — no held-out pairs ({dpo.get('n_train', 0)} training pairs fit the context): the "
                "margin cannot be measured."]
    m0, m1, se = v0.get("margin", 0.0), v1["margin"], v1.get("margin_se")
    up = se is not None and math.isfinite(se) and m1 - 1.96 * se > m0
    measured = (f"{n} held-out preference pairs: the implicit-reward margin, how much more than its frozen "
                "starting point the policy prefers the chosen reply to the rejected one (0 at the start; above 0: "
                "prefers the chosen)")
    stats = [f"DPO margin {_mean_ci(m1, se, n)}; accuracy {_ci(v1.get('accuracy', 0.0), n)}."]
    srcs = sorted(k.split("/", 1)[1] for k in v1 if k.startswith("margin/"))
    result = (f"margin **{m0:.3f} → {m1:.3f}** ({'up, clearly' if up else 'not clearly up'}), "
              f"{v1.get('accuracy', 0.0):.2f} of the pairs with a positive margin")
    if srcs:
        result += "; by source: " + "; ".join(f"{s} {v1[f'margin/{s}']:.3f}" for s in srcs)
        stats.append("By source: " + "; ".join(
            f"{s} {_mean_ci(v1[f'margin/{s}'], v1.get(f'margin_se/{s}'), int(v1.get(f'n/{s}', 0)))}" for s in srcs)
            + ".")
    result += notes(" ".join(stats)) + f"; trained on {dpo.get('n_train', '?')} pairs"
    if "margin" in (dpo.get("train") or {}):
        result += f" (margin on them {dpo['train']['margin']:.3f})"
    return [finding("dpo", measured, result, "DPO moves the policy's likelihoods towards the chosen replies on "
                    "unseen topics when the preference is in the words; on HH-RLHF pairs a tiny model's margin "
                    "rises on the training pairs, not clearly on held-out ones.")]


def honesty_findings(root: Path, models: dict[str, dict], notes: Notes | None = None) -> list[str]:
    """The probe → refusal-training line: held-out TriviaQA right / wrong / abstained, before vs after."""
    notes = notes if notes is not None else Notes()
    probe = _read_json(root / "probe" / "manifest.json")
    rated = {n: m for n, m in models.items() if isinstance(m, dict) and "honesty_wrong" in m}
    if not probe and not rated:
        return []
    n = int(next(iter(rated.values())).get("honesty_n") or 0) if rated else 0
    measured = (f"{n or 'held-out'} TriviaQA questions never trained on, asked without context; each answer is "
                "right, wrong, or an abstention (\"I don't know\")")
    if probe:
        measured += (f". Before SFT the probe asked {probe.get('n_questions')} other questions × {probe.get('k')} "
                     f"samples: {probe.get('n_answers')} answered right at least once became answers, "
                     f"{probe.get('n_refusals')} never became refusals in SFT's data")
    result = "no model rated"
    if rated:
        result = "right / wrong / abstained: " + "; ".join(
            f"{name} {m['honesty_right']:.2f} / {m['honesty_wrong']:.2f} / {m['honesty_abstain']:.2f}"
            for name, m in rated.items())
        before, after = rated.get("pretrain"), rated.get("sft")
        if before and after:
            d_wrong = after["honesty_wrong"] - before["honesty_wrong"]
            result += (f"; wrong answers **{before['honesty_wrong']:.2f} → {after['honesty_wrong']:.2f}** "
                       "(pretrain, few-shot → sft, refusal data mixed in)")
            overlap = n and wilson(after["honesty_wrong"] * n, n)[1] >= wilson(before["honesty_wrong"] * n, n)[0]
            if n:
                result += notes(f"Wrong answers, pretrain {_ci(before['honesty_wrong'], n)} → sft "
                                f"{_ci(after['honesty_wrong'], n)} ({d_wrong:+.2f})"
                                + ("; the 95% intervals overlap: not a significant change." if overlap
                                   else "; the 95% intervals are apart."))
    return [finding("probe → sft (knowing what it doesn't know)", measured, result,
                    "the goal is fewer wrong answers at little cost in right ones; a tiny model knows almost no "
                    "trivia, so it learns to refuse nearly everything.")]


def search_findings(root: Path, models: dict[str, dict]) -> list[str]:
    """The index → search-tool line: what was indexed, and each model's search / grounded / cited rates."""
    index = _read_json(root / "index" / "manifest.json")
    rated = {n: m for n, m in models.items() if isinstance(m, dict) and m.get("search_n")}
    if not index and not rated:
        return []
    n = int(next(iter(rated.values())).get("search_n") or 0) if rated else 0
    measured = (f"{n or 'the'} questions about passages held out of SFT, with the search tool on: did the model "
                "search, answer from a returned passage (grounded), and cite its URL")
    if index:
        tool = index.get("tool") or {}
        measured += (f". The index holds {index.get('passages')} passages of {index.get('documents')} curated "
                     f"documents (Tantivy BM25); a search shows the top {tool.get('top_k')} within "
                     f"{tool.get('max_tokens')} tokens")
    result = "no model rated"
    if rated:
        result = "searched / grounded / cited: " + "; ".join(
            f"{name} {m['search_rate']:.2f} / {m['search_grounded']:.2f} / {m['search_cited']:.2f}"
            for name, m in rated.items())
    return [finding("index → search tool", measured, result, "a tiny model's short context holds one short hit: "
                    "it can learn to call the tool and copy from its output, not to read long passages.")]


def python_findings(models: dict[str, dict], notes: Notes | None = None) -> list[str]:
    """The python-tool line: each model's held-out accuracy with the sandboxed tool / without, and its calls."""
    notes = notes if notes is not None else Notes()
    rated = {n: m for n, m in models.items() if isinstance(m, dict) and m.get("python_n")}
    if not rated:
        return []
    n = int(next(iter(rated.values()))["python_n"])
    result = "right with the tool / without: " + "; ".join(
        f"{name} {m['python_acc_tool']:.2f} / {m['python_acc_no_tool']:.2f} ({m['python_tool_calls']} calls)"
        for name, m in rated.items())
    result += notes("Python tool, accuracy with the tool: " + "; ".join(
        f"{name} {_ci(m['python_acc_tool'], n)}" for name, m in rated.items()) + ".")
    return [finding("python tool", f"{n} held-out items (letter counts, reversals, digit sums, long products) "
                    "where the model may write a snippet for a sandboxed python tool", result,
                    "the model must write a correct snippet and copy its output; a tiny model half-learns the "
                    "snippet's shape, a GPU-sized one should beat its no-tool score by far on these token-level "
                    "tasks.")]


# Backslash escapes every renderer honours (CommonMark, GitHub, Python-Markdown's tables); the rest as
# HTML entities: Python-Markdown leaves `\<` as it is, and a model's `<|tool_start|>` must show, not vanish.
MD_BACKSLASH = set("\\`*_{}[]()#+-.!|")
MD_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "~": "&#126;"}


def compliance_failures(failed: list[dict]) -> str:
    """'; 2 failed: 2 ran to the token limit, 2 after a tool call, e.g. "Q" → "reply"' ('' when none failed)."""
    if not failed:
        return ""
    why = Counter("ran to the token limit" if r.get("finish_reason") in ("length", "context") else
                  "ended without the end-of-turn token" for r in failed)
    text = f"; {len(failed)} failed: " + ", ".join(f"{k} {reason}" for reason, k in why.most_common())
    tools = sum(1 for r in failed if r.get("tool_calls"))
    if tools:
        text += f", {tools} after a tool call"
    r = next((r for r in failed if r.get("tool_calls")), failed[0])
    reply = r["reply"].strip()
    reply = reply[:100] + "…" if len(reply) > 100 else reply
    return text + f", e.g. \"{md_escape(r['prompt'][:60])}\" → \"{md_escape(reply)}\""


def md_escape(text: str) -> str:
    """Text shown literally in markdown: special characters escaped, line breaks as ⏎ (one line)."""
    text = " ⏎ ".join(part for part in text.replace("\r", "").split("\n"))
    return "".join(MD_ENTITIES.get(c) or ("\\" + c if c in MD_BACKSLASH else c) for c in text)


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
    notes = Notes()
    findings = stage_findings(root, evaluation or _read_json(root / "evaluate" / "eval.json"), notes)
    if findings:
        md += ["## what each stage shows", "",
               "Each line says what was measured (which items, how many), the result, and what it means. "
               "The intervals and tests behind a figure are in the numbered notes at the end.", "", *findings, ""]

    # curate
    md += ["## curate", ""]
    stats = _read_json(root / "curate" / "stats.json")
    if stats:
        md += _table([(k, stats[k]) for k in ("inputs", "shards", "documents", "wall_seconds") if k in stats])
        md += ["", "| stage | in | kept | dropped |", "|---|---|---|---|"]
        for s in stats.get("stages", []):
            dropped = ", ".join(f"{r}: {n}" for r, n in sorted((s.get("dropped") or {}).items())) or "-"
            md.append(f"| {s.get('stage')} | {s.get('in', '')} | {s.get('kept', '')} | {dropped} |")
        md += ["", f"Lines removed by line dedup: {next((s.get('lines_removed', 0) for s in stats.get('stages', []) if s.get('stage') == 'line_dedup'), 0)}; PII replaced: " + (", ".join(f"{k} {v}" for k, v in (stats.get("pii_replaced") or {}).items()) or "-")]
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
        md += ["## training curves", "", CURVES_CAPTION, "", "![loss curves](losses.png)", ""]

    # evaluate
    md += ["## evaluate", ""]
    evaluation = evaluation or _read_json(root / "evaluate" / "eval.json")
    if evaluation and evaluation.get("models"):
        models = evaluation["models"]
        keys = []
        for m in models.values():
            keys += [k for k, v in m.items() if isinstance(v, (int, float)) and k not in keys
                     and not isinstance(v, bool) and not k.startswith("eval/")]  # suite tables below
        ecfg = evaluation.get("config") or {}
        md += ["| metric | what it measures | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
        for k in keys:
            md.append(f"| {k} | {metric_meaning(k, ecfg)} | "
                      + " | ".join(_fmt(m.get(k, "")) for m in models.values()) + " |")
        errors = {n: m["error"] for n, m in models.items() if "error" in m}
        md += [f"- {n}: evaluation failed: {e}" for n, e in errors.items()]
        md += [""] + yardstick_tables(models)
        if plot_eval(models, out / "eval.png"):
            md += ["", "![eval](eval.png)"]
        samples = _samples(root)
        if samples:
            md += ["", "### samples", "",
                   "One sampled reply per prompt (temperature 0.7) from models trained for CPU minutes: expect "
                   "locally plausible, often wrong text. A reply can keep the chat format (counted above) and "
                   "still make no sense. Shown literally: markup the model wrote is not interpreted.", ""]
            for s in samples[:10]:
                reply = s.get("reply", "")
                cut = len(reply) > 300
                md += [f"- **{md_escape(str(s.get('model', '?')))}**, asked “{md_escape(str(s.get('prompt', '')))}”: "
                       f"“{md_escape(reply[:300])}{'…' if cut else ''}”"]
    else:
        md.append("not run (no evaluate/eval.json)")
    md.append("")
    md += notes.markdown()

    return write_text(out / "report.md", "\n".join(md))


def metric_meaning(key: str, ecfg: dict[str, Any]) -> str:
    """What an evaluate metric measures, in words, with its items and how many (the table's second column)."""
    arith = f"{ecfg.get('arithmetic_n', '?')} {arithmetic_items_text(ecfg)}"
    gsm = f"{ecfg.get('gsm8k_n', '?')} GSM8K word problems (held out)"
    words = {
        "val_bpb": f"bits per byte on up to {ecfg.get('bpb_max_tokens', '?')} held-out tokens (lower is better)",
        "gsm8k_pass@1": f"{gsm}: fraction of sampled answers right",
        "arith_acc_tool": f"{arith}: fraction right with the calculator",
        "arith_acc_no_tool": f"{arith}: fraction right without a tool",
        "arith_tool_calls": "calculator calls made on those items",
        "chat_compliance": f"{ecfg.get('compliance_n', '?')} prompts: replies that end in the chat format "
                           "(not: that are right)",
        "python_acc_tool": "held-out python-tool items: fraction right with the sandboxed tool",
        "python_acc_no_tool": "the same items: fraction right without it",
        "python_tool_calls": "python-tool calls made on those items",
        "honesty_right": "held-out TriviaQA questions: answered right",
        "honesty_wrong": "the same: answered wrong (lower is better)",
        "honesty_abstain": "the same: abstained (\"I don't know\")",
        "search_rate": "questions on held-out passages: called search",
        "search_grounded": "the same: answer taken from a returned passage",
        "search_cited": "the same: cited a returned URL",
        "search_retrieved": "the same: the right passage was among the hits",
        "params": "model parameters",
        "step": "training step of the checkpoint",
    }
    if key in words:
        return words[key]
    if key.startswith("gsm8k_pass@"):
        return f"{gsm}: solved by at least one of {key.split('@')[1]} samples"
    if key.endswith("_n"):
        return "items asked"
    return ""

