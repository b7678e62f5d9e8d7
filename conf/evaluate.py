"""Config of the `evaluate` stage (section `eval` in the presets)."""
from __future__ import annotations

from pydantic import Field

from conf import StageConfig, data_dir


class EvalConfig(StageConfig):
    """Sizes of each evaluation; the tiny preset keeps them CPU-sized."""

    section: str = "eval"

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
    # chat-format compliance + sample generations
    compliance_n: int = Field(20, ge=0)
    n_samples: int = Field(5, ge=0)
    max_new_tokens: int = Field(128, gt=0)
