"""Order statistics for every benchmark: one percentile rule, written once.

The rule is *nearest rank*: the p-th percentile of n values is the smallest value such
that at least p % of the values are less than or equal to it, i.e. the ⌈p·n/100⌉-th
smallest (the smallest value for p = 0). It always returns a value that was measured
(a p99 is a latency some request really had), and it never understates a tail: with
fewer than 100 values, p99 is the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank `p`-th percentile (0 ≤ p ≤ 100) of a non-empty sequence."""
    if not values:
        raise ValueError("the percentile of no values is undefined")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside 0..100")
    ordered = sorted(values)
    # Exact arithmetic: p·n/100 in floats can land a hair above a whole rank.
    rank = max(1, math.ceil(Fraction(p) * len(ordered) / 100))
    return ordered[rank - 1]
