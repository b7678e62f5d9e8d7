"""The curation funnel: per stage how many documents came in, were kept, were dropped and why.

Format (what `process_warc` returns, what `stats.json` holds)::

    {"stages": [{"stage": "read", "in": 40, "kept": 39, "dropped": {"non_html": 1}},
                {"stage": "url_filter", ...}, ...],
     "errors": {"truncated_gzip": 1}}

A stage may carry extra integer counters in `"ignored"` (e.g. WARC request /
metadata records, which are not documents). Stages merge by name, in the order
they first appear, so later stages (minhash_dedup, quality_classifier, line_dedup, pii) merge the same way.

Outside `stages`, because they vary from run to run while the stages must not:
`"seconds"` {stage: wall seconds} (tasks/curation/steps.py) and `"retried"` {what: n}
(e.g. extraction timeouts that a longer budget then passed). Both are summed.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

STAGE_ORDER = (
    "read", "url_filter", "language_gate", "extract", "language", "gopher_repetition",
    "gopher_quality", "c4", "fineweb",
)


class StageCounter:
    """Counts one stage: call `seen()` per input, then `keep()` or `drop(reason)`."""

    def __init__(self, name: str):
        self.name = name
        self.n_in = 0
        self.kept = 0
        self.dropped: dict[str, int] = {}
        self.ignored: dict[str, int] = {}

    def seen(self) -> None:
        self.n_in += 1

    def keep(self) -> None:
        self.kept += 1

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def ignore(self, what: str) -> None:
        self.ignored[what] = self.ignored.get(what, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"stage": self.name, "in": self.n_in, "kept": self.kept,
                             "dropped": dict(sorted(self.dropped.items()))}
        if self.ignored:
            d["ignored"] = dict(sorted(self.ignored.items()))
        return d


def empty_stats(stages: Iterable[str] = STAGE_ORDER) -> dict[str, Any]:
    """A funnel with every stage at zero (e.g. for an input that could not be opened)."""
    return {"stages": [StageCounter(s).as_dict() for s in stages], "errors": {}}


def _add_counts(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + int(v)


def merge_stats(stats_list: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum funnels stage by stage (matched by name, first-seen order kept) and sum errors."""
    order: list[str] = []
    merged: dict[str, dict[str, Any]] = {}
    errors: dict[str, int] = {}
    varying: dict[str, dict[str, float]] = {"seconds": {}, "retried": {}}
    for stats in stats_list:
        for st in stats.get("stages", []):
            name = st["stage"]
            if name not in merged:
                order.append(name)
                merged[name] = {"stage": name, "in": 0, "kept": 0, "dropped": {}}
            m = merged[name]
            m["in"] += int(st.get("in", 0))
            m["kept"] += int(st.get("kept", 0))
            _add_counts(m["dropped"], st.get("dropped", {}))
            # Extra per-stage counters (e.g. pii's "replaced" per kind) are summed too.
            for key in ("ignored", "replaced"):
                if st.get(key):
                    _add_counts(m.setdefault(key, {}), st[key])
            for key in ("docs_changed", "lines_removed"):
                if key in st:
                    m[key] = m.get(key, 0) + int(st[key])
        _add_counts(errors, stats.get("errors", {}))
        for key in ("seconds", "retried"):
            for k, v in (stats.get(key) or {}).items():
                varying[key][k] = varying[key].get(k, 0) + v
    for m in merged.values():
        m["dropped"] = dict(sorted(m["dropped"].items()))
    out = {"stages": [merged[n] for n in order], "errors": dict(sorted(errors.items()))}
    if varying["seconds"]:
        out["seconds"] = {k: round(v, 4) for k, v in varying["seconds"].items()}
    if varying["retried"]:
        out["retried"] = dict(sorted(varying["retried"].items()))
    return out


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def funnel_table(stats: dict[str, Any]) -> str:
    """Markdown table: one row per stage with in / kept / dropped / kept % / reasons
    (+ wall seconds and docs/s when the funnel carries times)."""
    secs = stats.get("seconds") or {}
    rows = ["| stage | in | kept | dropped | kept % | dropped by reason |" + (" s | docs/s |" if secs else ""),
            "|---|---:|---:|---:|---:|---|" + ("---:|---:|" if secs else "")]
    for st in stats.get("stages", []):
        dropped = sum(st.get("dropped", {}).values())
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(st.get("dropped", {}).items(),
                                                           key=lambda kv: -kv[1])) or "-"
        row = (f"| {st['stage']} | {st['in']} | {st['kept']} | {dropped} | "
               f"{_pct(st['kept'], st['in'])} | {reasons} |")
        if secs:
            s = secs.get(st["stage"])
            rate = f"{st['in'] / s:,.0f}" if s and st["in"] else "-"
            row += f" {s:.2f} | {rate} |" if s is not None else " - | - |"
        rows.append(row)
    if stats.get("retried"):
        rows.append("")
        rows.append("Retried (passed on a longer budget): "
                    + ", ".join(f"{k}: {v}" for k, v in stats["retried"].items()))
    errors = stats.get("errors", {})
    if errors:
        rows.append("")
        rows.append("Errors (input-level, counted, not fatal): "
                    + ", ".join(f"{k}: {v}" for k, v in errors.items()))
    return "\n".join(rows)


def funnel_chart(stats: dict[str, Any], width: int = 40) -> str:
    """Markdown (fenced text) bar chart of documents surviving each stage."""
    stages = stats.get("stages", [])
    if not stages:
        return "```\n(no documents)\n```"
    top = max([stages[0]["in"]] + [s["kept"] for s in stages]) or 1
    name_w = max(len(s["stage"]) for s in stages)
    lines = [f"{'input':<{name_w}} {'#' * round(width * stages[0]['in'] / top):<{width}} {stages[0]['in']}"]
    for st in stages:
        bar = "#" * round(width * st["kept"] / top)
        lines.append(f"{st['stage']:<{name_w}} {bar:<{width}} {st['kept']}")
    return "```\n" + "\n".join(lines) + "\n```"


def funnel_plot(stats: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bar chart of documents kept after each stage (PNG, written atomically).

    None when there is nothing to plot or matplotlib fails: a plot is a view,
    never a reason to fail a run.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:
        log.warning("no funnel plot: %s", e)
        return None
    stages = stats.get("stages") or []
    if not stages:
        return None
    labels = ["input"] + [s["stage"] for s in stages]
    values = [stages[0]["in"] if stages else 0] + [s["kept"] for s in stages]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(labels) + 1))
    ax.barh(labels[::-1], values[::-1], color="#4c72b0")
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("documents")
    ax.set_title("curate funnel: documents kept after each stage")
    fig.tight_layout()
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
