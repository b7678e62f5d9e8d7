"""Config of the `evaluate` stage (section `evaluate` in the presets)."""
from __future__ import annotations

from pydantic import Field, field_validator

from conf import StageConfig, data_dir


class EvalConfig(StageConfig):
    """Sizes of each evaluation; the tiny preset keeps them CPU-sized."""

    section: str = "evaluate"

    device: str = "cpu"  # cpu | cuda | auto
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    # bits per byte on held-out tokens (<root>/tokenize/tokens/val_*.bin)
    bpb_max_tokens: int = Field(65_536, gt=1)
    # GSM8K: the last 500 problems of the shared train.jsonl are held out
    gsm8k_path: str = str(data_dir() / "gsm8k" / "train.jsonl")
    gsm8k_n: int = Field(100, ge=0)             # how many held-out problems to score
    gsm8k_k: int = Field(4, ge=1)               # samples per problem for pass@k
    gsm8k_max_new_tokens: int = Field(256, gt=0)
    temperature: float = Field(0.8, ge=0.0)
    # GENERATED arithmetic, with and without the calculator
    arithmetic_n: int = Field(50, ge=0)
    arithmetic_max_operand: int = Field(999, ge=1)
    # set: score RL's own task instead (lm.rl.arithmetic_problems at this difficulty, fresh seed, same grader),
    # so the table compares sft and rl on what RL trained for; None: operands up to arithmetic_max_operand
    arithmetic_difficulty: int | None = Field(None, ge=0)
    # GENERATED held-out python-tool items (lm/python_data.py: letters, reversal, digit sums,
    # long products), greedy, with the sandboxed python tool and without any tool
    python_n: int = Field(20, ge=0)
    # chat-format compliance + sample generations
    compliance_n: int = Field(20, ge=0)
    n_samples: int = Field(5, ge=0)
    max_new_tokens: int = Field(128, gt=0)
    # suites (comma list): basic = the metrics above; core = CORE-style base-model
    # multiple choice (lm/core_eval.py); chat = ARC/GSM8K/TriviaQA in chat format (lm/chat_eval.py)
    suite: str = "basic"
    suite_by_model: dict[str, str] = {}         # per evaluated model name, e.g. {pretrain: "basic,core", sft: ...}
    core_limit: int = Field(0, ge=0)            # items per core task, chosen deterministically (0: all)
    core_tasks: list[str] = []                  # empty: every task of lm/benchmark_data.CORE_TASKS
    core_batch_size: int = Field(32, ge=1)      # continuations per forward pass
    chat_limit: int = Field(100, ge=0)          # items per chat task (0: all)
    chat_max_new_tokens: int = Field(192, gt=0)
    # hallucination eval (lm/honesty_eval.py), every model: right / wrong / abstained on held-out
    # TriviaQA (lm/triviaqa.HELDOUT, never probed); few-shot prompts for a base model, a chat turn otherwise
    honesty_n: int = Field(200, ge=0)           # 0: off
    honesty_max_new_tokens: int = Field(24, gt=0)
    honesty_shots: int = Field(3, ge=0, le=8)
    # search eval (lm/search_data.py), every model, when an index is given (the pipeline passes
    # RUN/index once built): questions about held-out passages, the search tool on
    search_index: str | None = None
    search_n: int = Field(20, ge=0)             # 0: off
    search_max_new_tokens: int = Field(96, gt=0)

    @field_validator("suite")
    @classmethod
    def _known_suites(cls, v: str) -> str:
        return _check_suite(v)

    @field_validator("suite_by_model")
    @classmethod
    def _known_model_suites(cls, v: dict[str, str]) -> dict[str, str]:
        return {name: _check_suite(s) for name, s in v.items()}


def _check_suite(v: str) -> str:
    bad = set(suites(v)) - {"basic", "core", "chat"}
    if bad or not suites(v):
        raise ValueError(f"unknown suite(s) {sorted(bad) or v!r}; use a comma list of basic, core, chat")
    return v


def suites(spec: str) -> list[str]:
    """'basic,core' → ['basic', 'core']."""
    return [s.strip() for s in spec.split(",") if s.strip()]
