"""The open-loop schedule of the notify measurement: a fixed rate per client, due times
fixed in advance whatever the answers."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench.notify import Load


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
    for client in range(clients):
        times = [due for who, due in schedule if who == client]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(math.isclose(gap, 1 / rate, rel_tol=1e-9) for gap in gaps)
        assert all(due >= 0 for due in times)
    # The same schedule every run, so runs compare.
    assert schedule == load.schedule()
