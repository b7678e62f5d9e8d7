"""Settings dataclasses (conf/settings.py) and the pydantic configs derived from them: one declaration.

Every stage's config (and serve's, and the nested persona) is declared once, as a plain
dataclass that lm/ and the GPU box read without pydantic; the stages' pydantic models are
derived from it. These tests hold the two views to one another and to the presets.
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
from conf.curate import CurateConfig, CurateSettings
from conf.evaluate import EvalConfig, EvalSettings
from conf.index import IndexConfig, IndexSettings
from conf.persona import PersonaConfig, PersonaSettings
from conf.posttrain import (DPOConfig, DPOSettings, RewardConfig, RewardSettings, RLConfig, RLHFConfig, RLHFSettings,
                            RLSettings, SFTConfig, SFTSettings)
from conf.pretrain import PretrainConfig, PretrainSettings
from conf.probe import ProbeConfig, ProbeSettings
from conf.serve import ServeConfig, ServeSettings
from conf.settings import load_settings
from conf.tokenize import TokenizeConfig, TokenizeSettings

REPO = Path(__file__).resolve().parents[1]
PAIRS = [(PretrainSettings, PretrainConfig), (SFTSettings, SFTConfig), (RLSettings, RLConfig),
         (RewardSettings, RewardConfig), (RLHFSettings, RLHFConfig), (DPOSettings, DPOConfig),
         (CurateSettings, CurateConfig), (TokenizeSettings, TokenizeConfig), (EvalSettings, EvalConfig),
         (IndexSettings, IndexConfig), (ProbeSettings, ProbeConfig), (ServeSettings, ServeConfig)]


@pytest.mark.parametrize("settings,model", PAIRS, ids=lambda c: c.__name__)
def test_the_pydantic_model_has_the_settings_fields_defaults_and_section(settings, model):
    assert list(model.model_fields) == ["section"] + [f.name for f in dataclasses.fields(settings)]
    assert model().model_dump(exclude={"section"}) == settings().model_dump()
    assert model().section == settings.section == model.model_fields["section"].default
    # the dict the loop gets from a validated config rebuilds the same settings
    assert settings.from_dict(model().model_dump()) == settings()


@pytest.mark.parametrize("settings,model", PAIRS, ids=lambda c: c.__name__)
def test_both_loaders_read_every_preset_alike(settings, model):
    over = {"seed": 3} if "seed" in model.model_fields else {}
    for name in conf.preset_names():
        plain = load_settings(settings, name, over)
        validated = conf.load(model, name, {**over, "steps": None})
        assert plain.model_dump() == validated.model_dump(exclude={"section"}), name
        assert getattr(plain, "seed", 3) == 3


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


def test_bounds_of_the_stage_configs_are_carried_too():
    for model, bad in ((TokenizeConfig, {"vocab_size": 100}), (CurateConfig, {"extractor": "lynx"}),
                       (IndexConfig, {"top_k": 21}), (ProbeConfig, {"temperature": 0}),
                       (ServeConfig, {"port": 70000}), (EvalConfig, {"honesty_shots": 9})):
        with pytest.raises(ValidationError):
            model(**bad)


def test_a_field_check_runs_in_both_views():
    """`setting(..., check=fn)`: the settings run it on every instance, the pydantic model as a field validator."""
    for bad in ({"suite": "basic,bogus"}, {"suite": ""}, {"suite_by_model": {"sft": "chat,zz"}}):
        with pytest.raises(ValidationError, match="unknown suite"):
            EvalConfig(**bad)
        with pytest.raises(ValueError, match=f"evaluate.{next(iter(bad))}: unknown suite"):
            EvalSettings.from_dict(bad)
    with pytest.raises(ValueError, match="unknown suite"):
        load_settings(EvalSettings, "tiny", {"suite": "nope"})
    cfg = EvalConfig(suite="basic,core")
    with pytest.raises(ValidationError):  # validate_assignment runs it too
        cfg.suite = "nope"
    assert EvalSettings(suite_by_model={"sft": "chat"}).suite_by_model == {"sft": "chat"}


def test_curate_blocklist_paths_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # presets name bundled files relative to the repo
    rel = "data/samples/blocklists/ut1_malware_urls.txt"
    want = [str(REPO / rel), "https://example.org/list.txt"]
    assert CurateConfig(url_blocklist_files=[rel, want[1]]).url_blocklist_files == want
    assert CurateSettings.from_dict({"url_blocklist_files": [rel, want[1]]}).url_blocklist_files == want
    plain = load_settings(CurateSettings, "small").url_blocklist_files
    assert plain == conf.load(CurateConfig, "small").url_blocklist_files and want[0] in plain
    assert all(Path(p).is_absolute() and Path(p).exists() for p in plain)


def test_unknown_keys_are_refused_by_both():
    with pytest.raises(ValueError, match="unknown settings \\['muon_betas'\\]"):
        PretrainSettings.from_dict({"muon_betas": 0.9})
    with pytest.raises(ValidationError):
        PretrainConfig(muon_betas=0.9)
    with pytest.raises(ValueError, match="unknown settings \\['colour'\\]"):
        SFTSettings.from_dict({"persona": {"colour": "blue"}})


def test_a_preset_naming_a_removed_setting_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """An older user preset with `rl: {gsm8k_heldout: 100}`: both loaders and the stage command refuse it
    in one line saying why the setting went (conf/settings.REMOVED_KEYS), not merely that it is unknown."""
    import conf.settings
    from crawl2chat.cli import main

    (tmp_path / "mine.yaml").write_text("rl:\n  steps: 3\n  gsm8k_heldout: 100\n")
    monkeypatch.setattr(conf.settings, "PRESET_DIR", tmp_path)
    for load, cls in ((conf.load, RLConfig), (load_settings, RLSettings)):
        with pytest.raises(ValueError, match="rl.gsm8k_heldout was removed: .*lm/datasets/gsm8k.HELDOUT"):
            load(cls, "mine")
    monkeypatch.chdir(tmp_path)
    assert main(["rl", "--model", "M", "--out", "O", "--preset", "mine"]) == 2
    err = capsys.readouterr().err
    assert "preset mine: rl.gsm8k_heldout was removed" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "O").exists()


def test_nested_and_list_defaults_are_fresh_per_instance():
    a, b = SFTSettings(), SFTSettings()
    a.persona.tools.append("python")
    a.persona.name = "x"
    assert b.persona == PersonaSettings() and PretrainSettings().inloop_tasks is not PretrainSettings().inloop_tasks
    assert SFTSettings.from_dict({"persona": {"name": "Ada"}}).persona == PersonaSettings(name="Ada")
    assert RewardSettings().rankings == [] and RewardSettings().rankings is not RewardSettings().rankings


def test_a_derived_config_pickles_by_name():
    """Ray and Prefect ship configs to workers by pickling: the lazily built class must be found by name."""
    for model in (SFTConfig, CurateConfig, EvalConfig):
        cfg = conf.load(model, "tiny")
        for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
            again = loads(dumps(cfg))
            assert type(again) is model and again == cfg and again.hash() == cfg.hash()


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
        # every stage's config (and serve's) is a settings class: each loads every preset
        import importlib, pkgutil
        from conf.settings import Settings
        from conf.stages import STAGES
        mods = [importlib.import_module("conf." + m.name) for m in pkgutil.iter_modules(conf.__path__)
                if m.name != "stage_config"]
        classes = {c.section: c for m in mods for c in vars(m).values()
                   if isinstance(c, type) and issubclass(c, Settings) and c.section}
        assert set(classes) == {r.name for r in STAGES} | {"serve"}, sorted(classes)
        for preset in conf.preset_names():
            for c in classes.values():
                load_settings(c, preset)
        try:
            load_settings(classes["evaluate"], None, {"suite": "nope"})
            raise AssertionError("a bad suite was accepted")
        except ValueError as e:
            assert "unknown suite" in str(e)
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
