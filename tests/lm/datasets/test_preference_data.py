"""GENERATED preference pairs: held out by topic, disjoint from training, per-source figures (reward + DPO)."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from lm.posttrain.dpo import evaluate_dpo, _all_logps
from lm.datasets.preferences import (SOURCE, TOPICS, Preference, generate_preferences, render_preferences,
                                     split_preferences)
from lm.datasets.records import SkipStats
from lm.posttrain.reward import RewardModel, accuracy_by_source
from tests.support.posttrain_base import SEQ_LEN, load_base


def test_generated_pairs_are_held_out_by_topic_and_disjoint_from_training():
    prefs = generate_preferences(400, seed=0)
    assert prefs == generate_preferences(400, seed=0)  # deterministic in the seed
    assert all(p.chosen != p.rejected and p.group in TOPICS and p.source == SOURCE for p in prefs)
    assert all(p.group in p.prompt[-1]["content"] and p.group in p.chosen for p in prefs)
    train, val = split_preferences(prefs, 0.25)
    assert 50 <= len(val) <= 150 and len(train) + len(val) == 400
    # whole topics on one side: held-out accuracy is measured on topics never trained on
    assert not {p.group for p in train} & {p.group for p in val}
    seen = {(repr(p.prompt), p.chosen, p.rejected) for p in train}
    assert not any((repr(p.prompt), p.chosen, p.rejected) in seen for p in val)
    # a different salt gives a different split; ungrouped pairs still split by prompt + best reply
    assert {p.group for p in split_preferences(prefs, 0.25, salt="b")[1]} != {p.group for p in val}
    dup = [Preference([{"role": "user", "content": "q"}], ["a", "b"]) for _ in range(20)]
    t, v = split_preferences(dup, 0.5)
    assert sorted((len(t), len(v))) == [0, 20]  # identical pairs never straddle the split


def test_held_out_figures_per_source():
    """A source the model cannot learn must not hide behind one it can: accuracy and margin per source."""
    gpt, tok, _ = load_base()
    hh = [Preference([{"role": "user", "content": f"question {i}"}], [f"yes {i}", f"no {i}"], source="hh")
          for i in range(6)]
    rendered = render_preferences(generate_preferences(10, seed=1) + hh, tok, SEQ_LEN, SkipStats())
    assert {r.source for r in rendered} == {SOURCE, "hh"}
    rm = RewardModel(gpt)
    with torch.no_grad():  # untrained head scores everything 0: every pair a tie, 0.5 per source
        by = accuracy_by_source(rm, rendered, tok.encode_special("<|pad|>"))
    assert by == {SOURCE: {"accuracy": 0.5, "n": 10}, "hh": {"accuracy": 0.5, "n": 6}}
    ref = copy.deepcopy(gpt)
    pad = tok.encode_special("<|pad|>")
    ev = evaluate_dpo(gpt, rendered, _all_logps(ref, rendered, pad, "cpu"), 0.1, pad, "cpu")
    assert ev["n"] == 16 and ev["n/hh"] == 6 and ev[f"n/{SOURCE}"] == 10
    assert ev["margin"] == pytest.approx(0.0, abs=1e-5) and math.isfinite(ev["margin_se"])
