"""Formatting a figure for a summary line: a missing or non-numeric figure prints as "n/a", never raises.

Every command's closing summary goes through `num`, so a manifest without a figure (a resumed
run, an older manifest, a stage that measured nothing) cannot crash a finished command.
"""
from __future__ import annotations

from typing import Any


def num(value: Any, spec: str = ".4g") -> str:
    """`value` formatted with `spec`, or "n/a" when it is None, a bool, NaN-free text or missing."""
    if value is None or isinstance(value, bool):
        return "n/a"
    try:
        return format(float(value), spec) if spec[-1:] in "eEfFgG%" else format(value, spec)
    except (TypeError, ValueError):
        return "n/a"
