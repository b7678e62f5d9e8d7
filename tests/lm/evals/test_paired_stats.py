"""Paired before/after statistics on the same items (lm/evals/paired_stats.py)."""
import math

import pytest

from lm.evals.paired_stats import mcnemar, paired_bootstrap


def test_paired_bootstrap_sees_a_consistent_gain_that_unpaired_intervals_miss():
    # 64 prompts of very different difficulty, each a little better after: the per-prompt spread is large,
    # the per-prompt gain small but consistent
    before = [(i % 8) / 8 for i in range(64)]
    after = [min(1.0, b + (0.25 if i % 2 else 0.0)) for i, b in enumerate(before)]
    r = paired_bootstrap(before, after, seed=1)
    assert r["n"] == 64 and r["diff"] == pytest.approx(sum(a - b for a, b in zip(after, before)) / 64)
    assert 0 < r["lo"] < r["diff"] < r["hi"] and r["p_not_up"] == 0.0
    # no change: the interval spans 0; a loss: it lies below 0
    flat = paired_bootstrap(before, before[::-1], seed=1)
    assert flat["lo"] < 0 < flat["hi"] or flat["lo"] == flat["hi"] == 0
    assert paired_bootstrap(after, before, seed=1)["hi"] < 0
    assert paired_bootstrap(before, after, seed=1) == r  # seeded: the report card is reproducible
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([0.0], [0.0, 1.0])


def test_mcnemar_counts_discordant_items_and_gives_the_exact_p_value():
    a = [1, 1, 0, 0, 0, 1, 0, 0]
    b = [1, 0, 1, 1, 1, 1, 0, 0]
    t = mcnemar(a, b)
    assert (t["only_a"], t["only_b"], t["n"]) == (1, 3, 8)
    assert t["p"] == pytest.approx(2 * (1 + 4) / 16)  # 2 · P(X ≤ 1), X ~ Bin(4, 1/2)
    assert mcnemar([0] * 20, [1] * 20)["p"] == pytest.approx(2 / 2 ** 20)
    assert mcnemar([1, 0], [1, 0])["p"] == 1.0  # no discordant items: no evidence either way
    assert math.isclose(mcnemar(b, a)["p"], t["p"])
