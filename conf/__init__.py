"""Typed configs, one per stage, with YAML presets.

Every stage reads one config. `load(cls, preset, overrides)` merges, in order:
the config's defaults, `conf/presets/<preset>.yaml` (its section named by
`cls.section`), then explicit overrides (CLI flags). Unknown keys are refused so
a typo in a preset is an error, not a silently ignored setting.

One way to declare one, each field once: a settings dataclass `<Stage>Settings`
in conf/<stage>.py (conf/settings.py: a field is a line, `setting(default, ge=…,
check=…)` for bounds and a validator), from which the pydantic `<Stage>Config`
the CLI, flows and tasks validate with is derived on first use
(conf/stage_config.py). pydantic is imported on first use of a derived model,
`StageConfig` or `load`, so `import conf`, every settings class and every preset
load without it (lm/, a bare GPU box: `conf.settings.load_settings`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conf.settings import PRESET_DIR, preset_names, read_preset  # noqa: F401  (re-exported)

_PYDANTIC_SIDE = ("StageConfig", "StrictConfig", "load", "stage_model")


def __getattr__(name: str) -> Any:
    if name in _PYDANTIC_SIDE:
        from conf import stage_config

        return getattr(stage_config, name)
    raise AttributeError(f"module 'conf' has no attribute {name!r}")


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
