"""Config loading: presets merge over defaults; typos are refused."""
import pytest
from pydantic import ValidationError

import conf


class DemoConfig(conf.StageConfig):
    section: str = "demo_stage"
    steps: int = 10
    lr: float = 1e-3


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
