"""Typed configs, one per stage, with YAML presets.

Every stage reads one pydantic model. `load(cls, preset, overrides)` merges, in
order: the model's defaults, `conf/presets/<preset>.yaml` (its section named by
`cls.section`), then explicit overrides (CLI flags). Unknown keys are refused so
a typo in a preset is an error, not a silently ignored setting.
"""
from __future__ import annotations

import hashlib
import os
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict

PRESET_DIR = Path(__file__).parent / "presets"


class StageConfig(BaseModel):
    """Base for stage configs: strict keys, stable hash for cache keys."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
    section: str = ""  # overridden per stage; names the preset YAML section

    def hash(self) -> str:
        """Short stable hash of the config (for cache keys and run names)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


C = TypeVar("C", bound=StageConfig)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_preset(name: str) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {path} must be a mapping of stage sections")
    return data


def load(cls: type[C], preset: str | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build a stage config from defaults, a preset section and overrides (None values ignored)."""
    values: dict[str, Any] = {}
    section = cls.model_fields["section"].default
    if preset:
        values.update(read_preset(preset).get(section, {}) or {})
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = v
    return cls(**values)


REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Root of the data that ships with crawl2chat: $CRAWL2CHAT_DATA, else `data/` in the repo."""
    env = os.environ.get("CRAWL2CHAT_DATA")
    return Path(env) if env else REPO_ROOT / "data"


def resolve_path(path: str) -> str:
    """A relative path from a preset: as given if it exists from the CWD, else from the repo root.

    Presets name bundled files as `data/...`; this keeps them working when
    crawl2chat runs from another directory. URLs pass through unchanged.
    """
    if "://" in path or os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = REPO_ROOT / path
    return str(candidate) if candidate.exists() else path
