"""Paired comparisons of two models on the same held-out items (pure Python, no torch).

Two models scored on the same items differ less by chance than two independent
samples: an item both get right (or both wrong) says nothing about which is
better. So the before/after of a stage is judged on the per-item differences:

- `paired_bootstrap`: per-item scores in [0, 1] (e.g. the fraction of k samples
  correct); a percentile interval of the mean difference, resampling items.
- `mcnemar`: per-item right/wrong (greedy); the exact two-sided binomial test
  on the items where the two disagree.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence


def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 4000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean of after − before over items, its percentile interval and the bootstrap share of differences ≤ 0."""
    if len(before) != len(after):
        raise ValueError(f"paired scores need the same items: {len(before)} before vs {len(after)} after")
    n = len(before)
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one item")
    d = [float(a) - float(b) for b, a in zip(before, after)]
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    tail = (1 - level) / 2
    lo, hi = means[int(math.floor(tail * (n_boot - 1)))], means[int(math.ceil((1 - tail) * (n_boot - 1)))]
    return {"diff": sum(d) / n, "lo": lo, "hi": hi, "n": n, "p_not_up": sum(m <= 0 for m in means) / n_boot}


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    """Exact McNemar test of a vs b right/wrong on the same items: counts of each discordant kind and the p-value."""
    if len(a) != len(b):
        raise ValueError(f"paired results need the same items: {len(a)} vs {len(b)}")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    m = only_a + only_b
    # two-sided: twice the smaller binomial(m, 1/2) tail, capped at 1
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1)) / 2 ** m if m else 1.0
    return {"only_a": only_a, "only_b": only_b, "n": len(a), "p": min(1.0, 2 * tail)}
