"""Stage settings as plain dataclasses: the one declaration of a stage's fields.

Every stage's config (conf/<stage>.py) and the nested persona are declared
here-style, so lm/ and benchmarks/ load any of them and their presets on
torch + pyyaml alone, as a bare GPU box must. Where pydantic is installed (the
CLI, flows, tasks), `conf.stage_config.stage_model` derives the validated
`StageConfig` from the same declaration: `setting(default, ge=…)` carries
pydantic's bounds as field metadata, a `Literal[...]` hint becomes its choices,
and `setting(…, check=fn)` a validator that both views run. So a new field is
one line in one file, and the loop and the stage cannot disagree on it.
"""
from __future__ import annotations

import copy
import typing
from dataclasses import asdict, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import yaml

PRESET_DIR = Path(__file__).parent / "presets"
# Sections renamed so that a stage has one name everywhere (conf/stages.py): old name -> new.
LEGACY_SECTIONS = {"eval": "evaluate"}
_GSM8K_HELDOUT = ("GSM8K's held-out count is one constant, lm/datasets/gsm8k.HELDOUT (500), read alike by sft, rl "
                  "and evaluate (a per-stage count let training see problems eval scores); remove this key")
# Settings that are gone, with why and what to do instead: a preset or `--set` naming one is refused
# in one line (exit 2) rather than told only that the key is unknown.
REMOVED_KEYS: dict[tuple[str, str], str] = {
    ("sft", "gsm8k_heldout"): _GSM8K_HELDOUT,
    ("rl", "gsm8k_heldout"): _GSM8K_HELDOUT,
    ("evaluate", "arithmetic_max_operand"): "the evaluate stage's arithmetic items come from the one generator "
    "(lm/datasets/arithmetic.py): set evaluate.arithmetic_difficulty instead (4: +, − and × of numbers up to 999; "
    "3: up to 99)",
}


def check_removed(section: str, values: dict[str, Any]) -> None:
    """Raise ValueError naming a removed setting of `section` in `values`, and what to do instead."""
    for key in values:
        why = REMOVED_KEYS.get((section, key))
        if why:
            raise ValueError(f"{section}.{key} was removed: {why}")


# Field metadata key of a setting's validator (the other keys are pydantic's bounds).
CHECK = "check"


def setting(default: Any, check: Callable[[Any], Any] | None = None, **bounds: Any) -> Any:
    """A dataclass field with pydantic's bounds (ge, gt, le, lt, min_length, max_length) as metadata.

    check: a function of the value that returns it (perhaps normalised, e.g. a path
    resolved) or raises ValueError naming what is wrong. The settings run it on every
    instance they build and the derived pydantic model as a field validator, so a rule
    is declared once, beside its field, for both views.
    """
    metadata = {**bounds, CHECK: check} if check else bounds
    if isinstance(default, (list, dict)):  # a fresh copy per instance, as pydantic gives
        return field(default_factory=lambda d=default: copy.deepcopy(d), metadata=metadata)
    return field(default=default, metadata=metadata)


S = TypeVar("S", bound="Settings")


class Settings:
    """Base of the settings dataclasses: built from a dict that may hold no unknown key."""

    section: ClassVar[str] = ""  # the preset section it reads ("" for a nested one)

    @classmethod
    def from_dict(cls: type[S], values: dict[str, Any]) -> S:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known - {"section"})
        if unknown:
            raise ValueError(f"{cls.section or cls.__name__}: unknown settings {unknown}; known: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for k, v in values.items():
            if k == "section":
                continue
            nested = hints[k]
            if isinstance(v, dict) and isinstance(nested, type) and issubclass(nested, Settings):
                v = nested.from_dict(v)
            kwargs[k] = v
        return cls(**kwargs)

    def __post_init__(self) -> None:
        # Every way in (from_dict, load_settings, a direct call) runs each field's check.
        for f in fields(self):  # type: ignore[arg-type]
            check = f.metadata.get(CHECK)
            if check is not None:
                try:
                    setattr(self, f.name, check(getattr(self, f.name)))
                except ValueError as e:
                    raise ValueError(f"{self.section or type(self).__name__}.{f.name}: {e}") from None

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """The values as a dict — pydantic's name for it, so tasks/ read either kind of config."""
        assert is_dataclass(self)
        return asdict(self)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def read_preset(name: str) -> dict[str, Any]:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"preset {path} must be a mapping of stage sections")
    for old, new in LEGACY_SECTIONS.items():  # a user's older preset keeps working
        if old in data and new not in data:
            data[new] = data.pop(old)
    return data


def preset_values(section: str, preset: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A preset's section, then the overrides that are not None (CLI flags left unset)."""
    values: dict[str, Any] = {}
    if preset:
        values.update(read_preset(preset).get(section, {}) or {})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    check_removed(section, values)
    return values


def load_settings(cls: type[S], preset: str | None = None, overrides: dict[str, Any] | None = None) -> S:
    """`conf.load` without pydantic: defaults, the preset's section, overrides; unknown keys are errors."""
    return cls.from_dict(preset_values(cls.section, preset, overrides))


def model_getter(namespace: dict[str, Any], models: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that builds each pydantic model from its settings class on first use.

    `models` maps a model name to its settings class's name in `namespace`. Built
    lazily, so importing the settings never imports pydantic; cached in the
    module, so pickling (Ray, Prefect) finds the class by name, as for any class.
    """

    def __getattr__(name: str) -> Any:
        if name not in models:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        from conf.stage_config import stage_model

        model = stage_model(namespace[models[name]], name)
        namespace[name] = model
        return model

    return __getattr__
