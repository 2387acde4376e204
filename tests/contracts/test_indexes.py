import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts.indexes import DEFAULT_LIMIT, MAX_RANGES_LENGTH, compress, expand


@pytest.mark.parametrize(
    ("indexes", "ranges"),
    [
        ([], ""),
        ([0], "0"),
        ([0, 1, 2, 3], "0-3"),
        ([3, 1, 0, 2, 7, 9, 10, 11], "0-3,7,9-11"),
        ([5, 5, 6], "5-6"),
    ],
)
def test_compress(indexes: list[int], ranges: str) -> None:
    assert compress(indexes) == ranges
    assert expand(ranges) == set(indexes)


def test_round_trip_on_random_sets() -> None:
    generator = random.Random(7)
    for _ in range(200):
        indexes = {generator.randrange(2000) for _ in range(generator.randrange(300))}
        assert expand(compress(indexes)) == indexes


@pytest.mark.parametrize("bad", ["a", "3-1", "-1", "1-2-3", " 1", "+1", "1-", "٣"])
def test_expand_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        expand(bad)


@pytest.mark.parametrize("hostile", ["0-999999999", "2000", "0-1999,1-2000", "9" * 5000])
def test_expand_refuses_indexes_past_a_job_at_once(hostile: str) -> None:
    """`expand("0-999999999")` once allocated a billion ints."""
    with pytest.raises(ValueError, match=r"past the 2000 items|bad index range"):
        expand(hostile)


def test_expand_refuses_an_overlong_range_list() -> None:
    with pytest.raises(ValueError, match="at most"):
        expand("1," * 10_000)


@given(
    st.sets(st.integers(min_value=0, max_value=DEFAULT_LIMIT - 1), max_size=DEFAULT_LIMIT),
)
def test_expand_inverts_compress_for_every_set_of_a_jobs_indexes(indexes: set[int]) -> None:
    ranges = compress(indexes)
    assert len(ranges) <= MAX_RANGES_LENGTH
    assert expand(ranges) == indexes


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=10**6))
def test_expand_never_yields_an_index_at_or_past_its_limit(index: int, limit: int) -> None:
    for ranges in (str(index), f"0-{index}", f"{index}-{index + 1}"):
        try:
            expanded = expand(ranges, limit)
        except ValueError:
            assert index + ("-" in ranges and ranges.startswith(str(index))) >= limit
        else:
            assert expanded and max(expanded) < limit
