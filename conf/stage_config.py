"""The pydantic side of conf/: `StageConfig`, `load`, and models derived from settings dataclasses.

Imported on first use through `conf` (module `__getattr__`), so code that only
needs the settings dataclasses (lm/, a GPU box without pydantic) never imports it.
"""
from __future__ import annotations

import hashlib
import json
import threading
import typing
from dataclasses import MISSING, fields
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from conf.settings import CHECK, Settings, preset_values


class StrictConfig(BaseModel):
    """Strict keys, validated assignment: the base of every config and of a section nested in one (sft's persona)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class StageConfig(StrictConfig):
    """Base for stage configs: a preset section, and a stable hash for cache keys."""

    section: str = ""  # overridden per stage; names the preset YAML section

    def hash(self) -> str:
        """Short stable hash of the config (for cache keys and run names)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


C = TypeVar("C", bound=StageConfig)


def load(cls: type[C], preset: str | None = None, overrides: dict[str, Any] | None = None) -> C:
    """Build a stage config from defaults, a preset section and overrides (None values ignored)."""
    return cls(**preset_values(cls.model_fields["section"].default, preset, overrides))


_MODELS: dict[type, type[BaseModel]] = {}
# One class per settings class even when two threads first touch it at once: a second,
# equal-looking class would make pickling an instance of it fail (pickle finds the first by name).
_LOCK = threading.RLock()


def stage_model(settings: type[Settings], name: str) -> type[BaseModel]:
    """The pydantic model of a settings dataclass: same fields, defaults, order; bounds from metadata."""
    with _LOCK:
        if settings not in _MODELS:
            _MODELS[settings] = _build(settings, name)
        return _MODELS[settings]


def _build(settings: type[Settings], name: str) -> type[BaseModel]:
    hints = typing.get_type_hints(settings)
    defs: dict[str, Any] = {}
    checks: dict[str, Any] = {}
    for f in fields(settings):  # type: ignore[arg-type]
        kind = hints[f.name]
        bounds = {k: v for k, v in f.metadata.items() if k != CHECK}
        if isinstance(kind, type) and issubclass(kind, Settings):
            kind = stage_model(kind, kind.__name__.replace("Settings", "Config"))
            defs[f.name] = (kind, Field(default_factory=kind, **bounds))
        elif f.default_factory is not MISSING:
            # A list/dict default as a plain default (pydantic copies it per instance), so the
            # field and its schema show the value, as a hand-written model's `= []` would.
            defs[f.name] = (kind, Field(f.default_factory(), **bounds))
        else:
            defs[f.name] = (kind, Field(f.default, **bounds))
        if f.metadata.get(CHECK):
            checks[f"_check_{f.name}"] = field_validator(f.name)(staticmethod(f.metadata[CHECK]))
    if settings.section:
        defs = {"section": (str, settings.section), **defs}
    return create_model(name, __base__=StageConfig if settings.section else StrictConfig,
                        __module__=settings.__module__, __doc__=settings.__doc__, __validators__=checks, **defs)
