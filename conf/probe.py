"""Config of the `probe` stage: what the model knows, as refusal/answer SFT data (lm/datasets/refusal.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from conf.settings import Settings, model_getter, setting


@dataclass
class ProbeSettings(Settings):
    """Every knob of the probe stage (see conf/presets/*.yaml, section `probe`)."""

    section: ClassVar[str] = "probe"

    n_questions: int = setting(2000, ge=1)      # the probe part of lm/datasets/triviaqa.split (never the held-out)
    samples: int = setting(8, ge=1)             # k replies per question
    temperature: float = setting(1.0, gt=0.0)   # sampling, so k replies explore what the model might say
    top_k: int | None = setting(50, ge=1)
    max_new_tokens: int = setting(24, gt=0)     # TriviaQA answers are a few words
    batch_size: int = setting(16, ge=1)         # questions per generate call (× samples rows)
    prompt: str = "auto"                        # auto (few-shot for a base model, chat turn otherwise) | chat | fewshot
    shots: int = setting(3, ge=0, le=8)         # few-shot examples (lm/datasets/triviaqa.SHOT_POOL, never probed)
    min_correct: int = setting(1, ge=1)         # right ≥ this many of k → keep an answer; never right → refusal
    device: str = "auto"
    seed: int = 0


# ProbeConfig: the pydantic model of ProbeSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"ProbeConfig": "ProbeSettings"})
