"""Typed configs, one per stage, with YAML presets.

Every stage reads one pydantic model. `load(cls, preset, overrides)` merges, in
order: the model's defaults, `conf/presets/<preset>.yaml` (its section named by
`cls.section`), then explicit overrides (CLI flags). Unknown keys are refused so
a typo in a preset is an error, not a silently ignored setting.
"""
from __future__ import annotations

import hashlib
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
