"""The per-token limiter's arithmetic (limits.py) and the bounded page reader (reads.py):
pure logic, a clock in hand, no servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_api import limits, reads
from emulsion_api.errors import ApiError
from emulsion_api.limits import Limiter, TokenBucket, TokenLimits, parse_limits

rates = st.floats(min_value=0.1, max_value=1000, allow_nan=False)
bursts = st.integers(min_value=1, max_value=10_000)
# (seconds since the previous request, its cost)
requests = st.lists(
    st.tuples(st.floats(min_value=0, max_value=5, allow_nan=False), st.integers(1, 20_000)),
    max_size=60,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@given(rates, bursts, requests)
def test_a_bucket_never_grants_more_than_its_burst_and_rate_allow(
    rate: float, burst: int, taken: list[tuple[float, int]]
) -> None:
    now = 0.0
    bucket = TokenBucket.full(rate, burst, now)
    granted = 0.0
    for gap, cost in taken:
        now += gap
        if bucket.take(cost, now) == 0.0:
            granted += min(cost, burst)
        assert 0.0 <= bucket.level <= burst
    # From full at 0: at most the burst plus what the rate refilled since.
    assert granted <= burst + rate * now + 1e-6 * max(1.0, granted)


@given(rates, bursts, requests, st.integers(1, 20_000))
def test_a_refused_request_passes_after_the_wait_it_was_told(
    rate: float, burst: int, taken: list[tuple[float, int]], cost: int
) -> None:
    now = 0.0
    bucket = TokenBucket.full(rate, burst, now)
    for gap, spent in taken:
        now += gap
        bucket.take(spent, now)
    wait = bucket.take(cost, now)
    if wait:
        level = bucket.level
        assert bucket.take(cost, now + wait * (1 - 1e-9) - 1e-9) > 0 or level >= 0
        # Nothing taken by the refusal; after the wait (nobody else taking) it passes.
        assert bucket.take(cost, now + wait + 1e-6) == 0.0


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_retry_after_is_whole_seconds_at_least_one_and_never_shorter(seconds: float) -> None:
    told = int(limits.retry_after(seconds))
    assert told >= 1
    assert told >= seconds


def test_a_token_at_its_rate_is_refused_with_the_limit_named_and_another_token_is_not() -> None:
    clock = Clock()
    limiter = Limiter(64, clock)
    tight = TokenLimits(notifiesPerSecond=1, notifyBurst=2)
    limiter.notifies("a", tight)
    limiter.notifies("a", tight)
    with pytest.raises(ApiError) as refused:
        limiter.notifies("a", tight)
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert refused.value.limit == "notifies_per_second"
    assert refused.value.headers["Retry-After"] == "1"
    limiter.notifies("b", tight)  # token B's bucket is its own
    clock.now += 1.0
    limiter.notifies("a", tight)


def test_a_presign_batch_larger_than_the_burst_passes_once_the_bucket_is_full() -> None:
    clock = Clock()
    limiter = Limiter(64, clock)
    small = TokenLimits(presignsPerSecond=10, presignBurst=100)
    limiter.presigns("a", small, 500)
    with pytest.raises(ApiError) as refused:
        limiter.presigns("a", small, 1)
    assert refused.value.limit == "presigns_per_second"
    clock.now += 10.0
    limiter.presigns("a", small, 500)


def test_idle_full_buckets_are_dropped_so_memory_follows_the_busy_tokens() -> None:
    clock = Clock()
    limiter = Limiter(64, clock)
    quick = TokenLimits(notifiesPerSecond=100, notifyBurst=10)
    for owner in range(1000):
        limiter.notifies(f"t{owner}", quick)
        clock.now += 0.01
    # A bucket refills in 0.1 s: only the last few are still tracked.
    assert limiter.tracked() <= 11


def test_buckets_are_capped_even_when_no_token_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_TRACKED", 50)
    limiter = Limiter(64, Clock())
    slow = TokenLimits(notifiesPerSecond=0.001, notifyBurst=5)
    for owner in range(500):
        limiter.notifies(f"t{owner}", slow)
    assert limiter.tracked() == 50


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=80))
def test_follows_never_pass_a_tokens_limit_nor_the_pods_and_all_come_back(
    steps: list[tuple[str, bool]],
) -> None:
    limiter = Limiter(5, Clock())  # one slot kept for tokens that hold none
    per_token = TokenLimits(watches=3)
    held: list[Any] = []
    for owner, opening in steps:
        if opening or not held:
            slot = limiter.following(owner, per_token)
            own = limiter.follows(owner)
            total = sum(limiter.follows(o) for o in "abc")
            try:
                slot.__enter__()
            except ApiError as refused:
                assert refused.status == 429
                held_back = own >= 3 or (own > 0 and total >= 4)
                assert refused.code == ("rate_limited" if held_back else "too_many_watches")
                assert own > 0 or total >= 5  # a newcomer is refused only by a full pod
                continue
            held.append((owner, slot))
        else:
            _, slot = held.pop(0)
            slot.__exit__(None, None, None)
        assert all(limiter.follows(o) <= 3 for o in "abc")
        assert sum(limiter.follows(o) for o in "abc") <= 5
    for _, slot in held:
        slot.__exit__(None, None, None)
    assert [limiter.follows(o) for o in "abc"] == [0, 0, 0]


def test_a_token_at_its_follow_limit_leaves_the_rest_to_others() -> None:
    limiter = Limiter(8, Clock())
    one = TokenLimits(watches=2)
    a1, a2 = limiter.following("a", one), limiter.following("a", one)
    a1.__enter__()
    a2.__enter__()
    with pytest.raises(ApiError) as refused:
        limiter.following("a", one).__enter__()
    assert refused.value.limit == "watches"
    b1, b2 = limiter.following("b", one), limiter.following("b", one)
    b1.__enter__()
    b2.__enter__()


def counter(in_flight: int) -> tuple[list[int], Callable[[], Awaitable[int]]]:
    """A count of a token's items in flight that answers `in_flight`, and its calls."""
    counted: list[int] = []

    async def count() -> int:
        counted.append(1)
        return in_flight

    return counted, count


def test_items_in_flight_are_counted_then_added_to_until_the_next_count() -> None:
    clock = Clock()
    limiter = Limiter(64, clock)
    cap = TokenLimits(itemsInFlight=100)
    counted, count = counter(60)

    async def run() -> None:
        await limiter.admit_items("a", cap, 30, count)  # 60 + 30
        with pytest.raises(ApiError) as refused:
            await limiter.admit_items("a", cap, 30, count)  # 90 + 30 > 100
        assert refused.value.limit == "items_in_flight"
        assert refused.value.headers["Retry-After"] == str(limits.IN_FLIGHT_RETRY_SECONDS)
        assert len(counted) == 1
        clock.now += limits.IN_FLIGHT_REFRESH_SECONDS
        await limiter.admit_items("a", cap, 40, count)  # counted again: 60 + 40
        assert len(counted) == 2

    asyncio.run(run())


def test_a_token_under_its_limit_is_counted_once_a_minute_not_per_request() -> None:
    clock = Clock()
    limiter = Limiter(64, clock)
    cap = TokenLimits(itemsInFlight=1000)
    counted, count = counter(10)

    async def run() -> None:
        for _ in range(15):
            await limiter.admit_items("a", cap, 5, count)
            clock.now += 3
        assert len(counted) == 1  # 45 s of requests, one listing
        clock.now += limits.IN_FLIGHT_MAX_AGE_SECONDS
        await limiter.admit_items("a", cap, 5, count)
        assert len(counted) == 2

    asyncio.run(run())


def test_a_request_larger_than_the_limit_passes_when_nothing_is_in_flight() -> None:
    limiter = Limiter(64, Clock())

    async def nothing() -> int:
        return 0

    asyncio.run(limiter.admit_items("a", TokenLimits(itemsInFlight=10), 5000, nothing))


def test_limits_parse_a_default_and_per_token_overrides_field_by_field() -> None:
    digest = "ab" * 32
    table = parse_limits(
        json.dumps(
            {
                "default": {"notifiesPerSecond": 5},
                "tokens": {digest: {"watches": 2}},
            }
        )
    )
    assert table.default.notifies_per_second == 5
    assert table.of(digest).watches == 2
    assert table.of(digest).notifies_per_second == 5
    assert table.of("cd" * 32) == table.default
    assert parse_limits("") == parse_limits(None) == limits.LimitTable()


@pytest.mark.parametrize(
    "text",
    [
        "{",
        '{"default": {"notifiesPerSecond": 0}}',
        '{"default": {"unknown": 1}}',
        '{"tokens": {"short": {}}}',
        '{"other": {}}',
    ],
)
def test_malformed_limits_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_limits(text)


def test_the_default_limits_are_far_above_one_photographers_use() -> None:
    default = TokenLimits()
    # A whole batch of the largest size presigns at once; the CLI's 6 uploads at a time
    # notify far under the rate; two 10,000-item imports may run together.
    assert default.presign_burst >= 5000
    assert default.notifies_per_second >= 10
    assert default.items_in_flight >= 2 * 10_000
    assert default.watches >= 8


@given(
    st.integers(0, 120),
    st.integers(1, 100),
    st.integers(1, 15),
    st.sets(st.integers(0, 119)),
)
@settings(max_examples=60)
def test_a_page_is_read_a_chunk_at_a_time_and_pages_on_exactly(
    jobs: int, limit: int, chunk: int, hidden: set[int]
) -> None:
    asked: list[int] = []

    async def list_page(
        selector: str, want: int, cursor: str | None
    ) -> tuple[list[int], str | None]:
        start = int(cursor or 0)
        asked.append(want)
        end = min(jobs, start + want)
        return list(range(start, end)), (str(end) if end < jobs else None)

    async def every_page() -> list[int]:
        seen: list[int] = []
        cursor: str | None = None
        while True:
            asked.clear()
            page, cursor = await reads.page_of(
                list_page, "", limit, cursor, lambda n: None if n in hidden else n, chunk
            )
            assert all(want <= chunk for want in asked)
            assert len(page) <= limit
            seen += page
            if cursor is None:
                return seen

    assert asyncio.run(every_page()) == [n for n in range(jobs) if n not in hidden]


def test_busy_tokens_never_take_the_pods_last_slots_from_a_newcomer() -> None:
    limiter = Limiter(16, Clock())  # 2 kept for tokens that hold none
    generous = TokenLimits(watches=16)
    # Held here: a slot whose context manager is collected is given back.
    held: list[Any] = []

    def take(owner: str) -> ApiError | None:
        slot = limiter.following(owner, generous)
        try:
            slot.__enter__()
        except ApiError as refused:
            return refused
        held.append(slot)
        return None

    while take("a") is None:
        pass
    assert limiter.follows("a") == 14
    # Newcomers get the kept slots, one each; a second one is a busy token's again.
    assert take("b") is None
    refused = take("b")
    assert refused is not None and refused.limit == "watches"
    assert take("c") is None
    # Only a pod full to the last slot refuses a newcomer.
    refused = take("d")
    assert refused is not None and refused.code == "too_many_watches"
