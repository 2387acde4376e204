import random

import pytest

from emulsion_contracts.indexes import compress, expand


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


@pytest.mark.parametrize("bad", ["a", "3-1", "-1", "1-2-3"])
def test_expand_refuses_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        expand(bad)
