"""The open-loop schedule of the notify measurement: a fixed rate per client, due times
fixed in advance whatever the answers."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_bench.notify import Load


# Up to 96,000 requests per example: building them is the test, not a slow path.
@settings(deadline=None)
@given(
    st.integers(min_value=1, max_value=64),
    st.floats(min_value=0.1, max_value=50),
    st.floats(min_value=0.5, max_value=30),
)
def test_each_client_sends_at_its_fixed_rate(clients: int, rate: float, seconds: float) -> None:
    load = Load(clients, rate, seconds)
    schedule = load.schedule()
    assert len(schedule) == load.requests
    assert [due for _, due in schedule] == sorted(due for _, due in schedule)
    by_client: dict[int, list[float]] = {client: [] for client in range(clients)}
    for who, due in schedule:
        by_client[who].append(due)
    for times in by_client.values():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(math.isclose(gap, 1 / rate, rel_tol=1e-9) for gap in gaps)
        assert all(due >= 0 for due in times)
    # The same schedule every run, so runs compare.
    assert schedule == load.schedule()
