"""Device, precision and torchrun set-up shared by every training loop (pretraining and post-training).

One place (as nanochat's common.py) for: which device a rank uses, which
autocast dtype, the rank/world read from torchrun's environment, joining the
process group (NCCL on GPUs, gloo on CPU), peak FLOP/s for MFU, and wrapping
a model for training (`torch.compile`, then DDP). Imports only torch.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Dense bf16 peak FLOP/s by GPU name (for MFU when the config gives none).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (0, 1, 0 alone)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` → this rank's GPU if CUDA is available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for but CUDA is not available; use device=auto or cpu")
    return dev


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` → bf16 on GPU, fp32 on CPU (exact, reproducible CPU tests)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32,
                "fp32": torch.float32, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use auto, bfloat16 or float32") from None


def autocast_context(device: torch.device, dtype: torch.dtype):
    """Mixed precision for forward passes (weights stay fp32); no-op for fp32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def peak_flops_for(device: torch.device, configured: float | None) -> float | None:
    if configured:
        return float(configured)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, val in PEAK_FLOPS.items():
        if key in name:
            return val
    return None


@dataclass
class Runtime:
    """Where this process trains: its rank in the job, its device, its autocast dtype."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    dtype: torch.dtype
    owns_process_group: bool = False

    @property
    def master(self) -> bool:
        return self.rank == 0

    def autocast(self):
        return autocast_context(self.device, self.dtype)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group if `setup_runtime` joined it."""
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_process_group = False


def setup_runtime(device: str = "auto", dtype: str = "auto") -> Runtime:
    """Read torchrun's env, join the process group when world > 1, pick device and dtype.

    On CUDA also allows TF32 matmuls (fp32 parts of an autocast run).
    """
    rank, world, local_rank = dist_env()
    owns = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"
        dist.init_process_group(backend=backend)
        owns = True
    dev = resolve_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(rank, world, local_rank, dev, resolve_dtype(dtype, dev), owns)


def wrap_for_training(model: torch.nn.Module, rt: Runtime, compile_: bool = False) -> torch.nn.Module:
    """The module a loop calls for its losses: optionally compiled, DDP-wrapped when world > 1.

    Keep the bare `model` for generation, evaluation and checkpoints.
    """
    run = torch.compile(model) if compile_ else model
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        run = DDP(run, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    return run


def all_reduce_sum(values: list[float], rt: Runtime) -> list[float]:
    """Sum a few numbers over all ranks (identity alone)."""
    if rt.world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=rt.device)
    dist.all_reduce(t)
    return t.tolist()
