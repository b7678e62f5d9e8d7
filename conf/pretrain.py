"""Config of the `pretrain` stage: token shards → a base GPT checkpoint.

One declaration, `PretrainSettings` (a plain dataclass, conf/settings.py): the
training loop (lm/train.py) runs on it as it is, on a GPU box without pydantic,
and `PretrainConfig` — the pydantic model the CLI, flow and task validate with —
is derived from it on first use. Sizes derive from one dial, `depth`: width
64·depth, heads of 64 dims.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from conf.settings import Settings, model_getter, setting


@dataclass
class PretrainSettings(Settings):
    """Every knob of pretraining (see conf/presets/*.yaml, section `pretrain`)."""

    section: ClassVar[str] = "pretrain"

    # --- model (GPTConfig.from_depth) ------------------------------------
    depth: int = setting(2, ge=1)
    sequence_len: int = setting(128, ge=8)
    aspect_ratio: int = setting(64, ge=1)
    head_dim: int = setting(64, ge=8)
    kv_ratio: int = setting(1, ge=1)  # >1: grouped-query attention
    # architecture options (lm/model.py; benchmarks/recipe_ablation.py measures them)
    rope_base: float = setting(10000.0, gt=0)
    softcap: float = setting(15.0, ge=0)  # 0: off
    qk_norm: bool = True
    value_embeds: bool = False  # token embeddings added to the values on every other layer
    resid_scalars: bool = False  # learned per-layer scales of the residual stream and of the first input
    # a stock architecture (lm/model.py; all on + softcap 0 → exported as transformers' Qwen3, docs/HUGGINGFACE.md)
    mlp: Literal["relu2", "swiglu"] = "relu2"  # swiglu: Llama/Qwen3's gated MLP
    mlp_hidden: int = setting(0, ge=0)  # MLP width, 0: 4·width (relu2) or 8/3·width (swiglu)
    norm_weights: bool = False  # learned RMSNorm gains
    norm_eps: float = setting(0.0, ge=0)  # RMSNorm epsilon, 0: torch's default
    embed_norm: bool = True  # RMS-normalise the token embeddings (Llama/Qwen3: false)
    tie_embeddings: bool = False  # the output head is the embedding matrix

    # --- batch -------------------------------------------------------------
    device_batch_size: int = setting(8, ge=1)
    # Tokens per optimizer step over all ranks; the rest is gradient accumulation.
    # 0: one micro-batch per rank per step.
    total_batch_tokens: int = setting(0, ge=0)
    max_steps: int = setting(200, ge=1)

    # --- optimizer -----------------------------------------------------------
    optimizer: Literal["adamw", "muon"] = "adamw"
    lr: float = setting(3e-3, gt=0)  # AdamW: block matrices and output head
    embedding_lr: float = setting(3e-2, gt=0)  # token embedding (no weight decay)
    muon_lr: float = setting(0.02, gt=0)  # block matrices when optimizer=muon
    weight_decay: float = setting(0.0, ge=0)
    beta1: float = setting(0.9, ge=0, lt=1)
    beta2: float = setting(0.95, ge=0, lt=1)
    grad_clip: float = setting(1.0, ge=0)  # 0: off (the norm is still logged)
    # The lrs and weight decay above were tuned at this batch (tokens/step) and width; a run at
    # another batch/width scales them (lm.optim.hparam_scales, docs/DESIGN.md). 0: use as given.
    lr_ref_batch_tokens: int = setting(0, ge=0)
    lr_ref_width: int = setting(0, ge=0)

    # --- schedule ------------------------------------------------------------
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    warmup_steps: int = setting(10, ge=0)
    min_lr_ratio: float = setting(0.1, ge=0, le=1)
    decay_frac: float = setting(0.2, gt=0, le=1)  # wsd: share of steps spent decaying
    decay_shape: Literal["linear", "sqrt", "cosine"] = "linear"  # wsd: shape of the decay
    wd_schedule: Literal["constant", "linear"] = "constant"  # linear: weight decay falls to 0 at the end

    # --- runtime -------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    compile: bool = False
    seed: int = 0
    threads: int = setting(0, ge=0)  # torch CPU threads, 0: torch's default
    peak_flops: float | None = None  # per-device FLOP/s for MFU; None: by GPU name (H100 989e12)

    # --- evaluation, sampling, checkpoints, logging ---------------------------
    eval_every: int = setting(50, ge=0)
    eval_tokens: int = setting(32768, ge=1)
    # in-loop yardstick (lm/core_eval.InLoopEval): a fixed CORE subset every N steps, 0: off
    inloop_every: int = setting(0, ge=0)
    inloop_items: int = setting(100, ge=1)
    inloop_tasks: list[str] = setting(["hellaswag_zeroshot", "arc_easy", "piqa"])
    sample_every: int = setting(0, ge=0)
    sample_tokens: int = setting(32, ge=0)
    sample_prompts: list[str] = setting(["The", "Once upon a time", "In the beginning"])
    checkpoint_every: int = setting(100, ge=0)
    log_every: int = setting(1, ge=1)
    progress: bool = True

    # --- launch --------------------------------------------------------------
    nproc_per_node: int = setting(1, ge=1)  # >1: the task runs torchrun
    num_gpus: float = setting(0.0, ge=0)  # GPUs the Ray task asks for (0: CPU task)


# PretrainConfig: the pydantic model of PretrainSettings, built on first use (conf/stage_config.py).
__getattr__ = model_getter(globals(), {"PretrainConfig": "PretrainSettings"})
