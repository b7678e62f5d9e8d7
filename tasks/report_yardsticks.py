"""Report-card tables of the yardstick suites (core, chat): task, our score per
model, chance, and published reference figures — each with its source.

Only numbers we can cite appear; a blank cell means no published figure for
that setting. The references were measured with other shot counts and over
DCLM's full 22 tasks, so they place our numbers, they do not rank them
digit for digit (the notes under each table say how the settings differ).
"""
from __future__ import annotations

from typing import Any

NANOCHAT_GPT2_NB = ("[nanochat dev/estimate_gpt3_core.ipynb](https://github.com/karpathy/nanochat/blob/master/dev/"
                    "estimate_gpt3_core.ipynb) (Jan 2026): GPT-2 124M measured with nanochat's CORE eval")
NANOCHAT_README_D20 = ("[nanochat README, first release](https://github.com/karpathy/nanochat/blob/3a5e0bc/README.md)"
                       " (2025-10-13): report card of the d20 speedrun")
NANOCHAT_README_GPT2XL = ("[nanochat README](https://github.com/karpathy/nanochat/blob/master/README.md): "
                          "GPT-2 (1.6B) CORE score, the target to beat")

# task -> {reference column: (value, source key)}
CORE_REFERENCES: dict[str, dict[str, tuple[float, str]]] = {
    "hellaswag_zeroshot": {"GPT-2 124M": (0.309, "a")},
    "hellaswag": {"GPT-2 124M": (0.308, "a")},   # CORE: 10-shot; ours 5-shot
    "lambada": {"GPT-2 124M": (0.323, "a")},
    "piqa": {"GPT-2 124M": (0.623, "a")},        # CORE: 10-shot
    "arc_easy": {"GPT-2 124M": (0.412, "a")},    # CORE: 10-shot
    "arc_challenge": {"GPT-2 124M": (0.222, "a")},
    "CORE": {"GPT-2 124M": (0.1139, "a"), "nanochat d20": (0.2219, "b"), "GPT-2 1.6B": (0.2565, "c")},
}
CHAT_REFERENCES: dict[str, dict[str, tuple[float, str]]] = {
    "arc_easy": {"nanochat d20 SFT": (0.3876, "b")},
    "arc_challenge": {"nanochat d20 SFT": (0.2807, "b")},
    "gsm8k": {"nanochat d20 SFT": (0.0455, "b"), "nanochat d20 RL": (0.0758, "b")},
}
SOURCES = {"a": NANOCHAT_GPT2_NB, "b": NANOCHAT_README_D20, "c": NANOCHAT_README_GPT2XL}


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else ""


def _ref_columns(refs: dict[str, dict[str, tuple[float, str]]]) -> list[str]:
    cols: list[str] = []
    for r in refs.values():
        cols += [c for c in r if c not in cols]
    return cols


def _cell(refs: dict, task: str, col: str) -> str:
    v = refs.get(task, {}).get(col)
    return f"{v[0]:.3f} [{v[1]}]" if v else ""


def _table(suite: str, per_model: dict[str, dict], refs: dict, extra_rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    names = list(per_model)
    tasks: list[str] = []
    for r in per_model.values():
        tasks += [t for t in r["tasks"] if t not in tasks]
    cols = _ref_columns(refs)
    md = ["| task | " + " | ".join(names) + " | chance | " + " | ".join(cols) + " |",
          "|---|" + "---|" * (len(names) + 1 + len(cols))]
    for t in tasks:
        ms = [per_model[n]["tasks"].get(t, {}) for n in names]
        chance = next((m["chance"] for m in ms if "chance" in m), None)
        md.append(f"| {t} | " + " | ".join(_f(m.get("score")) for m in ms) + f" | {_f(chance)} | "
                  + " | ".join(_cell(refs, t, c) for c in cols) + " |")
    for label, vals in extra_rows:
        md.append(f"| **{label}** | " + " | ".join(_f(vals.get(n)) for n in names) + " | | "
                  + " | ".join(_cell(refs, label, c) for c in cols) + " |")
    used = sorted({v[1] for r in refs.values() for v in r.values()})
    md += [""] + [f"[{k}] {SOURCES[k]}" + "  " for k in used]
    return md


def yardstick_tables(models: dict[str, dict]) -> list[str]:
    """Markdown for the `core` and `chat` suites of the evaluated models (empty when neither ran)."""
    md: list[str] = []
    core = {n: m["core"] for n, m in models.items() if isinstance(m.get("core"), dict)}
    if core:
        md += ["### base-model suite (core)", "",
               "Score: each task's primary metric (acc, acc per character, or greedy exact match for "
               "LAMBADA/Jeopardy/SQuAD/CoQA); CORE-style = mean of (score − chance)/(1 − chance) over the DCLM "
               "tasks covered. Tiny models score near chance; that is expected.", ""]
        md += _table("core", core, CORE_REFERENCES,
                     [("CORE", {n: r.get("core") for n, r in core.items()}),
                      ("centered mean (all tasks)", {n: r.get("centered_mean") for n, r in core.items()})])
        any_r = next(iter(core.values()))
        md += ["", f"Covers {any_r.get('core_tasks')} of DCLM's 22 CORE tasks; not covered (no data in the wheel): "
               + ", ".join(any_r.get("not_covered", [])) + f". Items per task: {any_r.get('limit') or 'all'}. "
               "Our few-shot tasks are 5-shot where CORE uses 10-shot, so reference figures are close, "
               "not identical, settings.", ""]
    chat = {n: m["chat"] for n, m in models.items() if isinstance(m.get("chat"), dict)}
    if chat:
        md += ["### chat-model suite (chat)", "",
               "ARC lettered multiple choice in the chat format; GSM8K held-out (the grader RL rewards with); "
               "TriviaQA no-context exact match (normalised, any alias).", ""]
        wrong = {n: r["tasks"].get("triviaqa", {}).get("wrong_rate") for n, r in chat.items()}
        abstain = {n: r["tasks"].get("triviaqa", {}).get("abstain_rate") for n, r in chat.items()}
        md += _table("chat", chat, CHAT_REFERENCES,
                     [("triviaqa wrong (not abstained)", wrong), ("triviaqa abstained", abstain)])
        md.append("")
    return md
