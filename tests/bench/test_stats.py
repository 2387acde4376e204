"""The one percentile rule of every benchmark: nearest rank."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench.stats import percentile

samples = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=300)
ranks = st.floats(min_value=0, max_value=100)


@given(samples, ranks)
def test_the_percentile_is_a_measured_value(values: list[float], p: float) -> None:
    assert percentile(values, p) in values


@given(samples, st.floats(min_value=0, max_value=100, exclude_min=True))
def test_at_least_p_percent_are_at_or_below_it_and_fewer_below(
    values: list[float], p: float
) -> None:
    # Nearest rank: the smallest value with at least p % of the values at or below it.
    result = percentile(values, p)
    share = Fraction(p) * len(values) / 100
    assert sum(value <= result for value in values) >= share
    assert sum(value < result for value in values) < share


@given(samples, ranks, ranks)
def test_it_grows_with_p(values: list[float], p: float, q: float) -> None:
    low, high = sorted((p, q))
    assert percentile(values, low) <= percentile(values, high)


@given(samples)
def test_the_ends_are_the_minimum_and_the_maximum(values: list[float]) -> None:
    assert percentile(values, 0) == min(values)
    assert percentile(values, 100) == max(values)


@given(samples, ranks)
def test_order_does_not_matter(values: list[float], p: float) -> None:
    assert percentile(values, p) == percentile(list(reversed(values)), p)


def test_p99_of_fewer_than_a_hundred_values_is_the_maximum() -> None:
    values = [float(v) for v in range(1, 51)]
    assert percentile(values, 99) == 50.0
    assert percentile(values, 50) == 25.0
    assert math.isclose(percentile([3.0, 1.0, 2.0], 50), 2.0)


@pytest.mark.parametrize("p", [-0.1, 100.1])
def test_a_percentile_outside_0_to_100_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], p)


def test_the_percentile_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
