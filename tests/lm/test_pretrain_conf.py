"""conf.pretrain.PretrainConfig mirrors lm.train.TrainConfig; presets are valid."""
from dataclasses import fields

import conf
from conf.pretrain import PretrainConfig
from lm.train import TrainConfig


def test_pydantic_config_mirrors_the_training_dataclass():
    pyd = {k: v.default for k, v in PretrainConfig.model_fields.items() if k != "section"}
    dc = TrainConfig()
    assert set(pyd) == {f.name for f in fields(TrainConfig)}
    assert TrainConfig.from_dict(PretrainConfig().model_dump(exclude={"section"})) == dc


def test_the_two_declarations_agree_on_types():
    """Same kind of value in both (a pydantic Literal of choices is a str in the loop), so a
    preset value the stage validates is one the loop takes as it is."""
    import typing

    def plain(t):
        return type(typing.get_args(t)[0]) if typing.get_origin(t) is typing.Literal else t

    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        assert plain(PretrainConfig.model_fields[f.name].annotation) == hints[f.name], f.name


def test_every_preset_with_a_pretrain_section_loads():
    for name in conf.preset_names():
        if "pretrain" in conf.read_preset(name):
            cfg = conf.load(PretrainConfig, name)
            tc = TrainConfig.from_dict(cfg.model_dump(exclude={"section"}))
            assert tc.depth >= 1 and tc.max_steps >= 1
