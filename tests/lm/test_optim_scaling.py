"""Learning-rate / weight-decay transfer across batch size and width (lm.optim.hparam_scales).

The rule (docs/DESIGN.md, "Learning rates across batch and width"): AdamW lr ×
√(batch/ref) × (width/ref)^-½, Muon lr × √(batch/ref), weight decay ×
√(batch/ref) (AdamW's also × (width/ref)^½); unscaled when the references
match the run or are 0.
"""
import math

import pytest
import torch

from lm.model import GPT, GPTConfig
from lm.optim import build_optimizer, hparam_scales, set_lr


def _model(depth=2):
    torch.manual_seed(0)
    return GPT(GPTConfig.from_depth(depth, 300, 32))  # width 64·depth


def _groups(opt):
    return {g["name"]: g for g in opt.param_groups}


def test_matching_or_unset_references_leave_every_factor_at_one():
    assert set(hparam_scales(4096, 4096, 256, 256).values()) == {1.0}
    assert set(hparam_scales(4096, 0, 256, 0).values()) == {1.0}
    m = _model()
    plain = _groups(build_optimizer(m, optimizer="muon", lr=4e-3, embedding_lr=0.2, muon_lr=0.02, weight_decay=0.1))
    same = _groups(build_optimizer(m, optimizer="muon", lr=4e-3, embedding_lr=0.2, muon_lr=0.02, weight_decay=0.1,
                                   batch_tokens=1024, ref_batch_tokens=1024, ref_width=128))
    for name in plain:
        assert same[name]["lr"] == plain[name]["lr"] and same[name]["weight_decay"] == plain[name]["weight_decay"]
    assert same["matrix"]["lr"] == 0.02 and same["embedding"]["lr"] == 0.2 and same["head"]["lr"] == 4e-3


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_four_times_the_batch_doubles_every_lr_and_weight_decay(optimizer):
    m = _model()
    kw = dict(optimizer=optimizer, lr=4e-3, embedding_lr=0.2, muon_lr=0.02, weight_decay=0.1, ref_batch_tokens=1024)
    ref = _groups(build_optimizer(m, batch_tokens=1024, **kw))
    big = _groups(build_optimizer(m, batch_tokens=4096, **kw))
    assert set(ref) == set(big) and "matrix" in big
    for name in ref:
        assert big[name]["lr"] == pytest.approx(2 * ref[name]["lr"])
        assert big[name]["initial_lr"] == pytest.approx(2 * ref[name]["initial_lr"])
        assert big[name]["weight_decay"] == pytest.approx(2 * ref[name]["weight_decay"])
        assert big[name]["lr_scale"] == pytest.approx(2.0)
    # the decay per token is unchanged: lr·wd per step ∝ batch
    assert big["head"]["lr"] * big["head"]["weight_decay"] == pytest.approx(4 * ref["head"]["lr"] * ref["head"]["weight_decay"])


def test_width_scales_adamw_but_not_muon_and_keeps_adamw_lr_times_wd():
    kw = dict(optimizer="muon", lr=4e-3, embedding_lr=0.2, muon_lr=0.02, weight_decay=0.1, ref_width=128)
    narrow = _groups(build_optimizer(_model(2), **kw))  # width 128 = the reference
    wide = _groups(build_optimizer(_model(8), **kw))  # width 512: 4× the reference
    assert wide["embedding"]["lr"] == pytest.approx(narrow["embedding"]["lr"] / 2)
    assert wide["head"]["lr"] == pytest.approx(narrow["head"]["lr"] / 2)
    assert wide["head"]["weight_decay"] == pytest.approx(narrow["head"]["weight_decay"] * 2)
    assert wide["head"]["lr"] * wide["head"]["weight_decay"] == pytest.approx(narrow["head"]["lr"] * narrow["head"]["weight_decay"])
    assert wide["matrix"]["lr"] == narrow["matrix"]["lr"] == 0.02  # Muon's spectral step is width-free


def test_scaled_lr_is_what_the_optimizer_steps_with_and_the_schedule_multiplies():
    """The factor reaches the update: SGD-free check on AdamW's first step (size ≈ lr per element)."""
    m1, m2 = _model(), _model()
    x = torch.randint(0, 300, (2, 32))
    o1 = build_optimizer(m1, lr=1e-3, embedding_lr=1e-3, batch_tokens=64, ref_batch_tokens=64)
    o2 = build_optimizer(m2, lr=1e-3, embedding_lr=1e-3, batch_tokens=256, ref_batch_tokens=64)
    set_lr(o2, 0.5, wd_multiplier=0.0)
    assert _groups(o2)["head"]["lr"] == pytest.approx(1e-3)  # 1e-3 × √4 × 0.5
    w1, w2 = m1.lm_head.weight.detach().clone(), m2.lm_head.weight.detach().clone()
    for m, o in ((m1, o1), (m2, o2)):
        m(x, x).backward()
        o.step()
    d1 = (m1.lm_head.weight - w1).abs().max().item()
    d2 = (m2.lm_head.weight - w2).abs().max().item()
    assert d1 == pytest.approx(1e-3, rel=0.05) and d2 == pytest.approx(1e-3, rel=0.05)


def test_set_lr_schedules_weight_decay_from_its_initial_value():
    opt = build_optimizer(_model(), optimizer="muon", weight_decay=0.1)
    set_lr(opt, 1.0, wd_multiplier=0.25)
    g = _groups(opt)
    assert g["matrix"]["weight_decay"] == pytest.approx(0.025) and g["head"]["weight_decay"] == pytest.approx(0.025)
    assert g["embedding"]["weight_decay"] == 0.0 and g["matrix"]["initial_weight_decay"] == 0.1


def test_negative_reference_is_refused():
    with pytest.raises(ValueError, match="ref_batch_tokens"):
        hparam_scales(1024, -1)
    assert math.isclose(hparam_scales(2048, 1024)["muon_lr"], math.sqrt(2))
