"""LR schedules: warmup, cosine, warmup-stable-decay."""
import math

import pytest

from lm.schedule import lr_multiplier


def test_warmup_is_linear_and_reaches_one():
    assert [lr_multiplier(s, 100, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_decays_to_min_ratio():
    vals = [lr_multiplier(s, 100, 10, "cosine", min_lr_ratio=0.1) for s in range(10, 101)]
    assert vals[0] == pytest.approx(1.0) and vals[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert lr_multiplier(55, 100, 10, "cosine", 0.0) == pytest.approx(0.5)


def test_wsd_is_flat_then_decays_linearly():
    f = [lr_multiplier(s, 100, 5, "wsd", min_lr_ratio=0.0, decay_frac=0.2) for s in range(101)]
    assert f[5:80] == [1.0] * 75
    assert f[90] == pytest.approx(0.5) and f[100] == 0.0


def test_bad_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_multiplier(0, 10, 0, "linear")
    assert math.isclose(lr_multiplier(3, 10, 0, "constant"), 1.0)
