"""A stage's output contract: the manifest, written last, and the one checkpoint resolver.

A run root holds one directory per stage (`<root>/<stage>/`). A stage's output is
complete only when its manifest parses: the flow writes it with `write_manifest`
after everything else (data, MLflow run, model registration), and `clear_manifest`
removes a stale one when the stage starts again, so a failure half-way never leaves a
manifest that tells the pipeline to skip the stage.

Training stages keep checkpoints in `<stage>/latest/` (mid-training, resumable) and
`<stage>/final/` (written once, when training finished). `resolve_checkpoint` is the
only place that turns a path into a checkpoint directory: the server, the CLI, the
next stage and the resuming loop all ask it, so "which weights?" has one answer.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from core.atomic import write_json

MANIFEST = "manifest.json"
CONFIG = "config.json"          # a checkpoint directory's metadata, written last by the checkpoint writer
TRAIN_STATE = "train_state.pt"  # present in a checkpoint a loop can resume from


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint is missing, incomplete or corrupt (a ValueError too: bad input, so CLIs exit 2)."""


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The manifest of a stage directory (or a manifest file), or None while the output is incomplete."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(stage_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Mark a stage complete: call it last, after every other write and the registration."""
    return write_json(Path(stage_dir) / MANIFEST, manifest)


def clear_manifest(stage_dir: str | Path) -> None:
    """A stage that starts is not complete until it writes its manifest again."""
    (Path(stage_dir) / MANIFEST).unlink(missing_ok=True)


def _step(ckpt: Path) -> int:
    try:
        return int(json.loads((ckpt / CONFIG).read_text()).get("step", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1


def resolve_checkpoint(path: str | Path, purpose: Literal["use", "resume"] = "use",
                       require_manifest: bool = False) -> Path | None:
    """The checkpoint directory `path` stands for.

    purpose="use" (serve, chat, evaluate, the next stage): a checkpoint directory is
    itself; a stage directory means the checkpoint its manifest names, else its
    `final/`. A stage directory that holds only `latest/` did not finish: that is an
    error, never a silent fallback to mid-training weights (pass `.../latest`
    explicitly to use them). With require_manifest, only a complete stage counts.

    purpose="resume" (a training loop restarting in its own output directory): the
    most advanced of `latest/` and `final/` that holds training state, or None when
    there is nothing to resume from.
    """
    p = Path(path)
    if purpose == "resume":
        found = [(_step(p / n), p / n) for n in ("latest", "final") if (p / n / TRAIN_STATE).exists()
                 and (p / n / CONFIG).exists()]
        return max(found, key=lambda t: t[0])[1] if found else None
    if not p.exists():
        raise CheckpointError(f"model {p} not found: give a checkpoint directory, a stage directory "
                              "(e.g. runs/demo/sft) or models:/<name>@<alias>")
    if (p / CONFIG).exists() and not require_manifest:
        return p
    manifest = read_manifest(p)
    if manifest is not None and manifest.get("checkpoint"):
        ckpt = Path(str(manifest["checkpoint"]))
        ckpt = ckpt if ckpt.is_absolute() else (p / ckpt).resolve()
        if not (ckpt / CONFIG).exists():
            raise CheckpointError(f"{p / MANIFEST} names checkpoint {ckpt}, which is missing or incomplete; "
                                  "re-run the stage")
        return ckpt
    if require_manifest:
        why = "names no checkpoint" if manifest is not None else "is missing or unreadable"
        raise CheckpointError(f"stage output {p} is not complete: {p / MANIFEST} {why}; run the stage first")
    if (p / "final" / CONFIG).exists():
        return p / "final"
    if (p / "latest" / CONFIG).exists():
        raise CheckpointError(f"{p} holds only a mid-training checkpoint (latest/, step {_step(p / 'latest')}): "
                              f"the stage did not finish. Re-run it to resume, or pass {p / 'latest'} to use "
                              "those weights anyway")
    raise CheckpointError(f"{p} is not a checkpoint directory (no {CONFIG}) and holds no final/ checkpoint")
