"""The share of free slots between the lanes (`consuming.LaneChoice`), as properties over
any sequence of rounds: interactive first, bulk never starved beyond its share, a lane
alone gets every slot."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts.wire import Lane
from emulsion_runtime.consuming import LaneChoice

INT, BULK = Lane.INTERACTIVE, Lane.BULK
waitings = st.fixed_dictionaries({INT: st.integers(0, 6), BULK: st.integers(0, 6)})


@given(every=st.integers(1, 8), rounds=st.lists(waitings, max_size=60))
def test_each_grant_goes_to_a_lane_with_work_interactive_first_and_bulk_every_nth_contested(
    every: int, rounds: list[dict[Lane, int]]
) -> None:
    choice = LaneChoice(every)
    contested: list[Lane] = []
    for waiting in rounds:
        lane = choice.grant(waiting)
        lanes = {lane for lane, n in waiting.items() if n > 0}
        if not lanes:
            assert lane is None
        elif len(lanes) == 1:
            assert lane in lanes  # work-conserving: a lone lane gets the slot
        else:
            assert lane is not None
            contested.append(lane)
    # Of the grants made while both lanes waited, exactly every `every`-th went to bulk:
    # never starved beyond its share, and interactive first otherwise.
    assert contested == [BULK if (k + 1) % every == 0 else INT for k in range(len(contested))]


@given(
    every=st.integers(1, 8),
    rounds=st.lists(st.tuples(st.integers(0, 8), waitings), max_size=30),
)
def test_a_rounds_slots_are_all_used_while_any_lane_has_work(
    every: int, rounds: list[tuple[int, dict[Lane, int]]]
) -> None:
    choice = LaneChoice(every)
    for slots, waiting in rounds:
        granted = choice.grants(slots, waiting)
        assert sum(granted.values()) == min(slots, waiting[INT] + waiting[BULK])
        assert all(0 <= granted[lane] <= waiting[lane] for lane in Lane)
        if waiting[BULK] == 0:
            assert granted[INT] == min(slots, waiting[INT])
        if waiting[INT] == 0:
            assert granted[BULK] == min(slots, waiting[BULK])


@given(every=st.integers(1, 8), slots=st.lists(st.integers(1, 8), min_size=1, max_size=40))
def test_with_both_lanes_always_busy_bulk_gets_its_share_and_no_more(
    every: int, slots: list[int]
) -> None:
    """Both lanes deep, rounds of any size: over the whole run bulk had one grant in
    `every` (rounded), interactive the rest."""
    choice = LaneChoice(every)
    total = {INT: 0, BULK: 0}
    for size in slots:
        for lane, n in choice.grants(size, {INT: 100, BULK: 100}).items():
            total[lane] += n
    grants = sum(slots)
    assert total[BULK] == grants // every
    assert total[INT] == grants - grants // every


def test_a_share_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LaneChoice(0)
