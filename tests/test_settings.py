"""Settings dataclasses (conf/settings.py) and the pydantic configs derived from them: one declaration.

The pretraining, post-training and persona configs are declared once, as plain dataclasses
that lm/ and the GPU box read without pydantic; the stages' pydantic models are derived
from them. These tests hold the two views to one another and to the presets.
"""
import dataclasses
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import pytest
from pydantic import ValidationError

import conf
from conf.persona import PersonaConfig, PersonaSettings
from conf.posttrain import (DPOConfig, DPOSettings, RewardConfig, RewardSettings, RLConfig, RLHFConfig, RLHFSettings,
                            RLSettings, SFTConfig, SFTSettings)
from conf.pretrain import PretrainConfig, PretrainSettings
from conf.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
PAIRS = [(PretrainSettings, PretrainConfig), (SFTSettings, SFTConfig), (RLSettings, RLConfig),
         (RewardSettings, RewardConfig), (RLHFSettings, RLHFConfig), (DPOSettings, DPOConfig)]


@pytest.mark.parametrize("settings,model", PAIRS, ids=lambda c: c.__name__)
def test_the_pydantic_model_has_the_settings_fields_defaults_and_section(settings, model):
    assert list(model.model_fields) == ["section"] + [f.name for f in dataclasses.fields(settings)]
    assert model().model_dump(exclude={"section"}) == settings().model_dump()
    assert model().section == settings.section == model.model_fields["section"].default
    # the dict the loop gets from a validated config rebuilds the same settings
    assert settings.from_dict(model().model_dump()) == settings()


@pytest.mark.parametrize("settings,model", PAIRS, ids=lambda c: c.__name__)
def test_both_loaders_read_every_preset_alike(settings, model):
    for name in conf.preset_names():
        plain = load_settings(settings, name, {"seed": 3})
        validated = conf.load(model, name, {"seed": 3, "steps": None})
        assert plain.model_dump() == validated.model_dump(exclude={"section"}), name
        assert plain.seed == 3


def test_bounds_and_choices_are_carried_to_the_pydantic_model():
    for bad in ({"depth": 0}, {"optimizer": "sgd"}, {"min_lr_ratio": 1.5}, {"sequence_len": 4}):
        with pytest.raises(ValidationError):
            PretrainConfig(**bad)
    with pytest.raises(ValidationError):
        SFTConfig(refusal_ratio=1.0)  # lt=1.0
    with pytest.raises(ValidationError):
        SFTConfig(persona={"name": ""})  # the nested persona's min_length
    with pytest.raises(ValidationError):
        SFTConfig(persona={"tools": ["browser"]})  # ToolName's choices
    cfg = SFTConfig(persona={"name": "Ada", "tools": ["python"]})
    assert isinstance(cfg.persona, PersonaConfig) and cfg.persona.maker == PersonaSettings().maker
    with pytest.raises(ValidationError):  # validate_assignment, as every StageConfig
        cfg.lr = "fast"


def test_unknown_keys_are_refused_by_both():
    with pytest.raises(ValueError, match="unknown settings \\['muon_betas'\\]"):
        PretrainSettings.from_dict({"muon_betas": 0.9})
    with pytest.raises(ValidationError):
        PretrainConfig(muon_betas=0.9)
    with pytest.raises(ValueError, match="unknown settings \\['colour'\\]"):
        SFTSettings.from_dict({"persona": {"colour": "blue"}})


def test_nested_and_list_defaults_are_fresh_per_instance():
    a, b = SFTSettings(), SFTSettings()
    a.persona.tools.append("python")
    a.persona.name = "x"
    assert b.persona == PersonaSettings() and PretrainSettings().inloop_tasks is not PretrainSettings().inloop_tasks
    assert SFTSettings.from_dict({"persona": {"name": "Ada"}}).persona == PersonaSettings(name="Ada")
    assert RewardSettings().rankings == [] and RewardSettings().rankings is not RewardSettings().rankings


def test_a_derived_config_pickles_by_name():
    """Ray and Prefect ship configs to workers by pickling: the lazily built class must be found by name."""
    cfg = conf.load(SFTConfig, "tiny")
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
        again = loads(dumps(cfg))
        assert type(again) is SFTConfig and again == cfg and again.hash() == cfg.hash()


def test_settings_load_where_pydantic_is_not_installed():
    """The GPU box has torch and pyyaml, not pydantic: the loop's config path must not import it."""
    script = textwrap.dedent("""
        import sys
        sys.modules["pydantic"] = None  # `import pydantic` now raises ImportError
        import conf
        from conf.settings import load_settings
        from conf.pretrain import PretrainSettings
        from conf.posttrain import SFTSettings
        from lm.train import config_from_args, main
        import argparse
        ns = argparse.Namespace(preset="tiny", config=None, set=["seed=5"], max_steps=7)
        cfg = config_from_args(ns)
        assert (cfg.seed, cfg.max_steps, cfg.optimizer) == (5, 7, "muon"), cfg
        assert load_settings(SFTSettings, "tiny").persona.name
        sys.path.insert(0, "benchmarks")
        import recipe_ablation
        assert recipe_ablation.preset("tiny")["muon_lr"] == cfg.muon_lr
        try:
            conf.StageConfig
        except ImportError:
            print("pydantic side refused, settings side ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pydantic side refused, settings side ok" in r.stdout
