"""Model checkpoints: one directory, written atomically, loaded safely.

Layout (see docs/CONTRACTS.md):
  model.safetensors   weights (safetensors: no pickle, no code)
  config.json         {"model": GPTConfig, "kind", "step", ...meta}
  tokenizer.json      the tokenizer the model was trained with
  train_state.pt      optional: optimizer/scheduler/RNG/data position, tensors and
                      plain containers only, read with torch.load(weights_only=True)

A directory is written as `<dir>.tmp-<pid>` and renamed into place, so a
killed writer never leaves a half checkpoint under the final name.

Loading trusts nothing in the directory: config.json carries the sha256 of
every other file (`checksums`), checked before use; weights must be finite; the
model config is range-checked (heads divide the width, the whole model fits
`max_memory_bytes`) before anything is allocated; the tokenizer must have the
model's vocabulary. Every failure is a CheckpointError naming the file and what
to do. A checkpoint written before checksums existed loads with a warning
(re-saving it adds them).
"""
from __future__ import annotations

import hashlib
import json
import logging
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

from core.run_root import CheckpointError, resolve_checkpoint
from lm.model import GPT, GPTConfig
from lm.tokenizer import Tokenizer


log = logging.getLogger(__name__)

# Files whose sha256 config.json records (those present in the directory).
CHECKSUMMED = ("model.safetensors", "extra.safetensors", "tokenizer.json", "train_state.pt")




def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_file(directory: str | Path, name: str, meta: dict[str, Any] | None = None) -> None:
    """Check `name` against the sha256 in config.json; a checkpoint without checksums only warns."""
    directory = Path(directory)
    meta = read_meta(directory) if meta is None else meta
    sums = meta.get("checksums")
    if not isinstance(sums, dict):
        log.warning("checkpoint %s has no checksums (written by an older version): %s is loaded unverified; "
                    "re-save the checkpoint to add them", directory, name)
        return
    want = sums.get(name)
    if want is None:
        raise CheckpointError(f"{directory / name} is not listed in {directory / 'config.json'} checksums: "
                              "the file was added after the checkpoint was written; remove it or re-save the checkpoint")
    if file_sha256(directory / name) != want:
        raise CheckpointError(f"{directory / name} does not match its sha256 in config.json: the file is corrupt "
                              "or was changed; restore it from a copy or use an earlier checkpoint")


def _state_dict_for_save(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    model = getattr(model, "module", model)  # DDP wrapper
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().contiguous().cpu()
        out[k] = v.clone() if v.data_ptr() in seen else v  # tied embeddings: safetensors stores no aliases
        seen.add(v.data_ptr())
    return out


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
    cfg = {"model": base.config.to_dict(), **{k: v for k, v in meta.items() if k != "checksums"}}
    if tokenizer is not None:
        (tmp / "tokenizer.json").write_text(tokenizer.to_json())
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    # config.json last: it records the checksums of everything written before it.
    cfg["checksums"] = {n: file_sha256(tmp / n) for n in CHECKSUMMED if (tmp / n).exists()}
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
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
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint config {path}: {e}; restore it or use another checkpoint") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"corrupt checkpoint config {path}: not a JSON object; restore it or use another checkpoint")
    return meta


def _check_finite(path: Path, state: dict[str, torch.Tensor]) -> None:
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or Inf values (the run that wrote it diverged); "
                                  "use an earlier checkpoint")


def load_weights(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The model's tensors, checksum-verified and checked finite."""
    path = Path(directory) / "model.safetensors"
    if not path.exists():
        raise CheckpointError(f"checkpoint {directory} has no model.safetensors (incomplete or wrong path)")
    verify_file(directory, path.name)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorsError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt weights in {path}: {e}; delete it and resume from an earlier checkpoint") from e
    _check_finite(path, state)
    return state


def load_extra(directory: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    path = Path(directory) / "extra.safetensors"
    if not path.exists():
        return {}
    verify_file(directory, path.name)
    try:
        state = load_file(str(path), device=str(device))
    except (SafetensorsError, OSError, ValueError) as e:
        raise CheckpointError(f"corrupt tensors in {path}: {e}") from e
    _check_finite(path, state)
    return state


def load_train_state(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / "train_state.pt"
    if not path.exists():
        return None
    verify_file(directory, path.name)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated/corrupt files
        # Not torch's message: it suggests weights_only=False, i.e. unpickling an untrusted file.
        raise CheckpointError(f"corrupt training state {path}: not a tensors-only torch file ({type(e).__name__}); "
                              "it is never unpickled — resume from an earlier checkpoint or run without --resume") from None


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
    # A stage directory means what its manifest names (or final/), never a mid-training latest/.
    return resolve_checkpoint(s)


def default_max_memory_bytes() -> int:
    """This machine's RAM: no checkpoint config may ask for more."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def model_config(directory: str | Path, meta: dict[str, Any], max_memory_bytes: int | None = None) -> GPTConfig:
    """The validated GPTConfig of a checkpoint (nothing allocated yet)."""
    where = Path(directory) / "config.json"
    raw = meta.get("model")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where} lacks the model config (key `model`); re-export the checkpoint")
    try:
        return GPTConfig.from_dict(raw).validate(max_memory_bytes or default_max_memory_bytes())
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: model.{e}; the file is corrupt or hand-edited — fix it or use another "
                              "checkpoint") from None


def load_model(path_or_uri: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None,
               max_memory_bytes: int | None = None) -> tuple[GPT, Tokenizer, dict[str, Any]]:
    """Load (model, tokenizer, meta) from a checkpoint directory or MLflow URI, verifying everything."""
    directory = resolve_model_path(path_or_uri)
    meta = read_meta(directory)
    if "model_type" in meta and not isinstance(meta.get("model"), dict):  # a transformers directory (lm/hf.py)
        from lm.hf import load_transformers_dir

        model, tokenizer, meta = load_transformers_dir(directory, meta, device, max_memory_bytes)
        return (model.to(dtype=dtype) if dtype is not None else model), tokenizer, meta
    config = model_config(directory, meta, max_memory_bytes)
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
    model.tie_weights()  # to_empty gave the tied head its own tensor
    if dtype is not None:
        model.to(dtype=dtype)
    tok_path = directory / "tokenizer.json"
    if not tok_path.exists():
        raise CheckpointError(f"checkpoint {directory} has no tokenizer.json")
    verify_file(directory, tok_path.name, meta)
    try:
        tokenizer = Tokenizer.load(tok_path)
    except Exception as e:  # the tokenizers library raises bare Exceptions for bad JSON
        raise CheckpointError(f"corrupt tokenizer {tok_path}: {e}; copy the tokenizer.json the model was "
                              "trained with") from None
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"{tok_path} has a vocabulary of {tokenizer.vocab_size} tokens but the model in "
                              f"{directory} has {config.vocab_size}: it is another model's tokenizer; copy the "
                              "tokenizer.json the model was trained with")
    meta["path"] = str(directory)
    return model, tokenizer, meta
