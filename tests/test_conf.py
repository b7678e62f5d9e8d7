"""Config loading: presets merge over defaults; typos are refused."""
from dataclasses import dataclass
from typing import ClassVar

import pytest
from pydantic import ValidationError

import conf
from conf.settings import Settings, setting


@dataclass
class DemoSettings(Settings):  # declared as every stage's config is (conf/settings.py)
    section: ClassVar[str] = "demo_stage"
    steps: int = setting(10, ge=1)
    lr: float = 1e-3


DemoConfig = conf.stage_model(DemoSettings, "DemoConfig")


def test_overrides_win_and_none_is_ignored():
    cfg = conf.load(DemoConfig, None, {"steps": 3, "lr": None})
    assert cfg.steps == 3 and cfg.lr == 1e-3


def test_unknown_key_is_refused():
    with pytest.raises(ValidationError):
        conf.load(DemoConfig, None, {"stepz": 3})


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="unknown preset"):
        conf.load(DemoConfig, "no-such-preset")


def test_hash_is_stable_and_sensitive():
    a, b = DemoConfig(), DemoConfig()
    assert a.hash() == b.hash()
    assert DemoConfig(steps=11).hash() != a.hash()


def test_every_shipped_preset_parses():
    for name in conf.preset_names():
        assert isinstance(conf.read_preset(name), dict)


def test_conf_lists_the_tools_lm_has():
    """conf/ imports no project code, so the tool names its configs accept are spelled there too."""
    import typing

    from conf.persona import ToolName
    from lm.tools import TOOL_NAMES

    assert set(typing.get_args(ToolName)) == set(TOOL_NAMES)


def test_conf_loads_every_preset_without_the_rest_of_the_project():
    """conf/ is a leaf: with lm, tasks, flows and crawl2chat unimportable, every stage config still loads.

    And every config is declared one way: as settings, its pydantic model derived (no hand-written one).
    """
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, importlib, pkgutil\n"
        "for name in ('lm', 'tasks', 'flows', 'crawl2chat'):\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "import conf\n"
        "mods = [importlib.import_module('conf.' + m.name) for m in pkgutil.iter_modules(conf.__path__)]\n"
        "from conf.settings import Settings\n"
        "from conf.stage_config import _MODELS\n"
        "classes = [conf.stage_model(c, c.__name__) for m in mods for c in vars(m).values()\n"
        "           if isinstance(c, type) and issubclass(c, Settings) and c.section]\n"
        "written = [c for m in mods for c in vars(m).values() if isinstance(c, type)\n"
        "           and issubclass(c, conf.StrictConfig) and c not in (conf.StageConfig, conf.StrictConfig)\n"
        "           and c not in _MODELS.values()]\n"
        "assert not written, f'declare configs as settings dataclasses (conf/settings.py): {written}'\n"
        "n = 0\n"
        "for preset in conf.preset_names():\n"
        "    for cls in classes:\n"
        "        conf.load(cls, preset); n += 1\n"
        "print(n)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.strip()) >= 4 * 12  # 12 configs (11 stages + serve), 4 presets
