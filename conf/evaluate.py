"""Config of the `evaluate` stage (section `evaluate` in the presets)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from conf import data_dir
from conf.settings import Settings, model_getter, setting


def suites(spec: str) -> list[str]:
    """'basic,core' → ['basic', 'core']."""
    return [s.strip() for s in spec.split(",") if s.strip()]


def _check_suite(v: str) -> str:
    bad = set(suites(v)) - {"basic", "core", "chat"}
    if bad or not suites(v):
        raise ValueError(f"unknown suite(s) {sorted(bad) or v!r}; use a comma list of basic, core, chat")
    return v


def _check_model_suites(v: dict[str, str]) -> dict[str, str]:
    return {name: _check_suite(s) for name, s in v.items()}


@dataclass
class EvalSettings(Settings):
    """Sizes of each evaluation; the tiny preset keeps them CPU-sized."""

    section: ClassVar[str] = "evaluate"

    device: str = "cpu"  # cpu | cuda | auto
    seed: int = 0
    batch_size: int = setting(8, ge=1)
    # bits per byte on held-out tokens (<root>/tokenize/tokens/val_*.bin)
    bpb_max_tokens: int = setting(65_536, gt=1)
    # GSM8K: its held-out problems (lm/datasets/gsm8k.py: the last HELDOUT of the file, never trained on)
    gsm8k_path: str = str(data_dir() / "gsm8k" / "train.jsonl")
    gsm8k_n: int = setting(100, ge=0)             # how many held-out problems to score
    gsm8k_k: int = setting(4, ge=1)               # samples per problem for pass@k
    gsm8k_max_new_tokens: int = setting(256, gt=0)
    temperature: float = setting(0.8, ge=0.0)
    # GENERATED arithmetic (lm/datasets/arithmetic.py, the generator SFT and RL draw from; a stream neither
    # draws), with and without the calculator. Difficulty 4: +, −, × of three-digit numbers (the calculator's
    # test); RL's difficulty: the table compares sft and rl on what RL trained for (the tiny preset's 0)
    arithmetic_n: int = setting(50, ge=0)
    arithmetic_difficulty: int = setting(4, ge=0)
    # GENERATED held-out python-tool items (lm/datasets/python_tool.py: letters, reversal, digit sums,
    # long products), greedy, with the sandboxed python tool and without any tool
    python_n: int = setting(20, ge=0)
    # chat-format compliance + sample generations
    compliance_n: int = setting(20, ge=0)
    n_samples: int = setting(5, ge=0)
    max_new_tokens: int = setting(128, gt=0)
    # suites (comma list): basic = the metrics above; core = CORE-style base-model
    # multiple choice (lm/evals/core.py); chat = ARC/GSM8K/TriviaQA in chat format (lm/evals/chat.py)
    suite: str = setting("basic", check=_check_suite)
    # per evaluated model name, e.g. {pretrain: "basic,core", sft: ...}
    suite_by_model: dict[str, str] = setting({}, check=_check_model_suites)
    core_limit: int = setting(0, ge=0)            # items per core task, chosen deterministically (0: all)
    core_tasks: list[str] = setting([])           # empty: every task of lm/datasets/benchmarks.CORE_TASKS
    core_batch_size: int = setting(32, ge=1)      # continuations per forward pass
    chat_limit: int = setting(100, ge=0)          # items per chat task (0: all)
    chat_max_new_tokens: int = setting(192, gt=0)
    # hallucination eval (lm/evals/honesty.py), every model: right / wrong / abstained on held-out
    # TriviaQA (lm/datasets/triviaqa.HELDOUT, never probed); few-shot prompts for a base model, a chat turn otherwise
    honesty_n: int = setting(200, ge=0)           # 0: off
    honesty_max_new_tokens: int = setting(24, gt=0)
    honesty_shots: int = setting(3, ge=0, le=8)
    # search eval (lm/datasets/search.py), every model, when an index is given (the pipeline passes
    # RUN/index once built): questions about held-out passages, the search tool on
    search_index: str | None = None
    search_n: int = setting(20, ge=0)             # 0: off
    search_max_new_tokens: int = setting(96, gt=0)


# EvalConfig: the pydantic model of EvalSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"EvalConfig": "EvalSettings"})
