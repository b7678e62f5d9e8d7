"""Config of the `probe` stage: what the model knows, as refusal/answer SFT data (lm/refusal_data.py)."""
from __future__ import annotations

from pydantic import Field

from conf import StageConfig


class ProbeConfig(StageConfig):
    section: str = "probe"

    n_questions: int = Field(2000, ge=1)      # from the probe part of lm/triviaqa.split (never the held-out part)
    samples: int = Field(8, ge=1)             # k replies per question
    temperature: float = Field(1.0, gt=0.0)   # sampling, so k replies explore what the model might say
    top_k: int | None = Field(50, ge=1)
    max_new_tokens: int = Field(24, gt=0)     # TriviaQA answers are a few words
    batch_size: int = Field(16, ge=1)         # questions per generate call (× samples rows)
    prompt: str = "auto"                      # auto (few-shot for a base model, chat turn otherwise) | chat | fewshot
    shots: int = Field(3, ge=0, le=8)         # few-shot examples (lm/triviaqa.SHOT_POOL, never probed)
    min_correct: int = Field(1, ge=1)         # right ≥ this many of k → keep an answer; never right → refusal
    device: str = "auto"
    seed: int = 0
