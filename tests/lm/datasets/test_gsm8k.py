"""GSM8K's one home (lm/datasets/gsm8k.py): the held-out split is defined once, and no stage setting can
move a problem evaluate scores into SFT's or RL's training data (it could: sft.gsm8k_heldout and
rl.gsm8k_heldout were settings of their own, kept equal to eval's by a comment)."""
from __future__ import annotations

import pytest

import conf
from conf.evaluate import EvalConfig
from conf.posttrain import RLConfig, RLSettings, SFTConfig, SFTSettings
from conf.settings import load_settings
from lm.datasets import gsm8k
from lm.posttrain.rl import task_prompts
from lm.posttrain.sft_data import SkipStats, load_sources


@pytest.mark.parametrize("model,settings", [(SFTConfig, SFTSettings), (RLConfig, RLSettings)],
                         ids=["sft", "rl"])
def test_no_stage_setting_changes_what_gsm8k_holds_out(model, settings):
    for load in (conf.load, load_settings):
        cls = model if load is conf.load else settings
        with pytest.raises(ValueError, match=r"gsm8k_heldout was removed: .*lm/datasets/gsm8k\.HELDOUT"):
            load(cls, None, {"gsm8k_heldout": 100})


def test_sft_and_rl_never_train_on_a_problem_evaluate_scores():
    held = {p["question"] for p in gsm8k.heldout(EvalConfig().gsm8k_path)}  # evaluate and the chat suite
    assert len(held) == gsm8k.HELDOUT
    sft = {c[0]["content"] for src, c in load_sources({}, SkipStats(), gsm8k_path=SFTConfig().gsm8k_path)
           if src == "gsm8k"}
    assert len(sft) == 7473 - gsm8k.HELDOUT and not sft & held
    draw, rl_held = task_prompts(RLConfig(task="gsm8k", prompts_per_step=64, eval_prompts=32))
    assert not {p.conversation[-1]["content"] for step in range(40) for p in draw(step)} & held
    assert [p.conversation[-1]["content"] for p in rl_held] == [p["question"] for p in gsm8k.heldout(n=32)]


def test_items_carry_their_normalised_final_number():
    train, held = gsm8k.split()
    assert train[0]["final"] == "72" and all(p["final"] for p in held)
    assert gsm8k.conversation(train[0])[:1] == gsm8k.prompt(train[0])
