"""Model checkpoints: one directory, written atomically, loaded safely.

Layout (see docs/CONTRACTS.md):
  model.safetensors   weights (safetensors: no pickle, no code)
  config.json         {"model": GPTConfig, "kind", "step", ...meta}
  tokenizer.json      the tokenizer the model was trained with
  train_state.pt      optional: optimizer/scheduler/RNG/data position, tensors and
                      plain containers only, read with torch.load(weights_only=True)

A directory is written as `<dir>.tmp-<pid>` and renamed into place, so a
killed writer never leaves a half checkpoint under the final name.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
try:
    from safetensors import SafetensorError as SafetensorsError
except ImportError:  # older safetensors
    SafetensorsError = Exception
from safetensors.torch import load_file, save_file

from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or corrupt."""


def _state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DDP wrapper
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(directory: str | Path, model: torch.nn.Module, tokenizer: Tokenizer | None,
                    meta: dict[str, Any], train_state: dict[str, Any] | None = None,
                    extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a complete checkpoint directory atomically; returns its path.

    `extra_tensors` go to `extra.safetensors` (e.g. a reward head).
    """
    directory = Path(directory)
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    base = getattr(getattr(model, "_orig_mod", model), "module", getattr(model, "_orig_mod", model))
    save_file(_state_dict_for_save(model), str(tmp / "model.safetensors"))
    if extra_tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra_tensors.items()}, str(tmp / "extra.safetensors"))
    cfg = {"model": base.config.to_dict(), **meta}
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    if tokenizer is not None:
        (tmp / "tokenizer.json").write_text(tokenizer.to_json())
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    # Replace an older checkpoint of the same name: move it aside, then rename.
    old = None
    if directory.exists():
        old = directory.with_name(f"{directory.name}.old-{os.getpid()}")
        directory.rename(old)
    tmp.rename(directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory} is not a checkpoint: config.json missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"corrupt checkpoint config {path}: {e}") from e


def load_weights(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(directory) / "model.safetensors"
    if not path.exists():
        raise CheckpointError(f"checkpoint {directory} has no model.safetensors (incomplete or wrong path)")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorsError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt weights in {path}: {e}; delete it and resume from an earlier checkpoint") from e


def load_extra(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(directory) / "extra.safetensors"
    if not path.exists():
        return {}
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorsError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt tensors in {path}: {e}") from e


def load_train_state(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / "train_state.pt"
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"corrupt training state {path}: {e}") from e


def resolve_model_path(path_or_uri: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local checkpoint directory for a path or an MLflow URI (`models:/name@alias`, `runs:/...`)."""
    s = str(path_or_uri)
    if s.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        try:
            import mlflow  # optional: lm/ runs without it
        except ImportError as e:
            raise CheckpointError(f"{s} is an MLflow URI but mlflow is not installed") from e
        dst = Path(cache_dir) if cache_dir else None
        if dst:
            dst.mkdir(parents=True, exist_ok=True)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=s, dst_path=str(dst) if dst else None))
        # A logged checkpoint directory may sit one level down.
        if not (local / "config.json").exists():
            hits = sorted(local.rglob("config.json"))
            if not hits:
                raise CheckpointError(f"MLflow artifact {s} holds no checkpoint (no config.json)")
            local = hits[0].parent
        return local
    p = Path(s)
    if not p.exists():
        raise CheckpointError(f"model {s} not found: give a checkpoint directory or models:/<name>@<alias>")
    if p.is_dir() and not (p / "config.json").exists():
        # Accept a stage output dir that holds a `final/` or `latest/` checkpoint.
        for name in ("final", "latest"):
            if (p / name / "config.json").exists():
                return p / name
        raise CheckpointError(f"{p} is not a checkpoint directory (no config.json)")
    return p


def load_model(path_or_uri: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load (model, tokenizer, meta) from a checkpoint directory or MLflow URI."""
    directory = resolve_model_path(path_or_uri)
    meta = read_meta(directory)
    if "model" not in meta:
        raise CheckpointError(f"{directory}/config.json lacks the model config")
    config = GPTConfig.from_dict(meta["model"])
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    state = load_weights(directory, device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights in {directory} do not fit its config: {e}") from e
    # Buffers (rotary tables) are not saved: rebuild them on the target device.
    cos, sin = model._rotary_tables(model.rotary_len, device=device)
    model.cos, model.sin = cos, sin
    if dtype is not None:
        model.to(dtype=dtype)
    tok_path = directory / "tokenizer.json"
    if not tok_path.exists():
        raise CheckpointError(f"checkpoint {directory} has no tokenizer.json")
    tokenizer = Tokenizer.load(tok_path)
    meta["path"] = str(directory)
    return model, tokenizer, meta
