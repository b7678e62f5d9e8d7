"""Post-training configs: SFT, RL (verifiable rewards), reward model, RLHF, DPO.

Declared once each as settings dataclasses (conf/settings.py), which the loops
and benchmarks/gpu_check.py use as they are on a GPU box without pydantic;
`SFTConfig`, `RLConfig`, … — the pydantic models the CLI and flows validate
with — are derived from them on first use. Data paths default to the real data
that ships in `data/` (or `$CRAWL2CHAT_DATA`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from conf import data_dir
from conf.persona import PersonaSettings
from conf.settings import Settings, model_getter, setting


def _d(rel: str) -> str:
    return str(data_dir() / rel)


@dataclass
class TrainCommon(Settings):
    """Knobs every post-training loop shares."""

    steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    schedule: str = "constant"
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    dtype: str = "float32"  # autocast dtype on GPU: bfloat16 | float32
    # Items (SFT rows, RL completions, preference pairs) per forward/backward on
    # one rank. The step's batch stays what the stage says (batch_size, or RL's
    # prompts_per_step × samples_per_prompt, over all ranks); the rest is
    # gradient accumulation: batch / (device_batch_size × ranks) micro-batches.
    # None: the whole per-rank batch at once.
    device_batch_size: int | None = None
    compile: bool = False  # torch.compile the training forward passes (GPU)
    log_every: int = 10
    checkpoint_every: int = 50


@dataclass
class SFTSettings(TrainCommon):
    """Supervised fine-tuning: chat data, loss on assistant tokens only (section `sft`)."""

    section: ClassVar[str] = "sft"
    alpaca_path: str | None = _d("sft/llamafactory_alpaca_en_demo.json")
    glaive_path: str | None = _d("sft/llamafactory_glaive_toolcall_en_demo.json")
    max_per_source: int | None = None
    n_identity: int = 200
    n_arithmetic: int = 1000
    arithmetic_difficulty: int = 2
    arithmetic_tool: bool = True
    # GSM8K worked solutions, calculator marks as tool calls: its training part only
    # (the held-out count is lm/datasets/gsm8k.HELDOUT, one for SFT, RL and evaluate).
    gsm8k: bool = False
    gsm8k_path: str = _d("gsm8k/train.jsonl")
    # The probe stage's GENERATED answers/refusals (its output directory or the
    # JSONL it names), mixed in as `refusal_ratio` of all SFT conversations.
    # The pipeline sets the path when its probe stage has run.
    refusal_data: str | None = None
    refusal_ratio: float = setting(0.1, ge=0.0, lt=1.0)
    # GENERATED search conversations from the index stage's passages (lm/datasets/search.py),
    # mixed in as `search_ratio` of the conversations before them. The pipeline sets
    # the index directory when its index stage has run.
    search_index: str | None = None
    search_ratio: float = setting(0.1, ge=0.0, lt=1.0)
    # GENERATED python-tool conversations (lm/datasets/python_tool.py): letter counts, reversals,
    # digit sums, long products, answered by running a snippet in the sandbox.
    n_python: int = setting(200, ge=0)
    # Who the model is (conf/persona.py): identity data says it, and this fraction of
    # the conversations (those without a system message) starts with its system message.
    persona: PersonaSettings = field(default_factory=PersonaSettings)
    persona_system_fraction: float = setting(0.5, ge=0.0, le=1.0)
    seq_len: int | None = None  # None: the model's sequence_len
    val_fraction: float = 0.05
    batch_size: int = 8
    eval_every: int = 50
    eval_batches: int = 8
    steps: int = 200
    lr: float = 3e-4


@dataclass
class RLSettings(TrainCommon):
    """RL on verifiable answers, GRPO-style (section `rl`)."""

    section: ClassVar[str] = "rl"
    task: str = "arithmetic"  # arithmetic | gsm8k
    # task gsm8k: trains on its training part, scores its held-out one (lm/datasets/gsm8k.py)
    gsm8k_path: str = _d("gsm8k/train.jsonl")
    difficulty: int = 1
    prompts_per_step: int = 8
    samples_per_prompt: int = 8  # k
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    # The objective, under TRL's GRPOConfig names and meanings
    # (https://huggingface.co/docs/trl/main/grpo_trainer, "GRPOConfig"; docs/RL.md):
    # how the per-token loss is averaged: grpo (per sequence, then over sequences), bnpo (token
    # mean per micro-batch), dr_grpo (token sum / (sequences × max_new_tokens)), dapo (token mean
    # over the step). The default is measured: the preset's `rl` comment, benchmarks/rl_variants.py.
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"  # the std advantages are divided by
    epsilon: float = setting(0.2, gt=0.0)  # clip ratio to [1 - epsilon, 1 + epsilon_high]
    epsilon_high: float | None = setting(None, gt=0.0)  # None: epsilon; DAPO's clip-higher: 0.28
    beta: float = setting(0.0, ge=0.0)  # KL coefficient (k3 estimator); 0 loads no reference model
    num_iterations: int = setting(1, ge=1)  # policy updates per generation batch (>1 makes clipping bite)
    importance_sampling_level: Literal["token", "sequence"] = "token"  # sequence: GSPO's ratio
    mask_truncated_completions: bool = False  # completions cut at max_new_tokens add no loss
    # Not TRL's: the plain objectives, −A·log π with A group-normalised (reinforce_with_baseline;
    # scale_rewards=none gives the group-mean baseline) or A = r (no_baseline).
    objective: Literal["grpo_clip", "reinforce_with_baseline", "no_baseline"] = "grpo_clip"
    eval_prompts: int = 64
    eval_every: int = 25
    eval_samples: int = 4
    lr: float = 1e-5
    steps: int = 50


@dataclass
class RewardSettings(TrainCommon):
    """A reward model from ranked or paired preferences (section `reward`)."""

    section: ClassVar[str] = "reward"
    prefs: list[str] = setting([_d("prefs/hh-rlhf_harmless-base_test.jsonl.gz"),
                                _d("prefs/llamafactory_dpo_en_demo.json")])
    rankings: list[str] = setting([])  # JSONL of {"prompt"|"conversation", "responses": [best, ..., worst]}
    # + this many GENERATED pairs (lm/datasets/preferences.py) whose preference is in the text, held out by topic
    generated_prefs: int = 0
    loss: str = "bradley_terry"  # pairwise; rankings always use Plackett–Luce
    val_fraction: float = 0.1
    split_salt: str = ""  # a different salt → a different split (second, independent RM)
    max_pairs: int | None = None
    seq_len: int | None = None
    batch_size: int = 8
    eval_every: int = 50
    lr: float = 1e-4
    steps: int = 200


@dataclass
class RLHFSettings(TrainCommon):
    """PPO-style RLHF against the reward model (section `rlhf`)."""

    section: ClassVar[str] = "rlhf"
    prompts_path: str = _d("prefs/hh-rlhf_harmless-base_test.jsonl.gz")
    max_prompts: int | None = 2000
    prompts_per_step: int = 4
    samples_per_prompt: int = 4
    max_new_tokens: int = 48
    temperature: float = 1.0
    clip_eps: float = 0.2
    kl_coef: float = 0.05
    kl_max: float = 5.0  # stop when the mean KL to the reference exceeds this
    ppo_epochs: int = 1
    divergence_patience: int = 3  # stop after this many evals where RM score rises and the check falls
    eval_every: int = 10
    lr: float = 1e-5
    steps: int = 100


@dataclass
class DPOSettings(TrainCommon):
    """Direct preference optimisation (section `dpo`)."""

    section: ClassVar[str] = "dpo"
    # HH-RLHF first: its short dialogues fit a small model's context (at 128 tokens
    # only ~1% of the DPO demo pairs do, which leaves no held-out pairs).
    prefs: list[str] = setting([_d("prefs/hh-rlhf_harmless-base_test.jsonl.gz"),
                                _d("prefs/llamafactory_dpo_en_demo.json")])
    generated_prefs: int = 0  # as RewardConfig.generated_prefs
    beta: float = 0.1
    val_fraction: float = 0.1
    max_pairs: int | None = None
    seq_len: int | None = None
    batch_size: int = 4
    eval_every: int = 25
    lr: float = 1e-5
    steps: int = 100


# SFTConfig, RLConfig, RewardConfig, RLHFConfig, DPOConfig: the pydantic models of the settings above,
# built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"SFTConfig": "SFTSettings", "RLConfig": "RLSettings",
                                       "RewardConfig": "RewardSettings", "RLHFConfig": "RLHFSettings",
                                       "DPOConfig": "DPOSettings"})
