"""Group commit: concurrent small ingests share one create, each answered with its own
items; the logic alone, with a create that records what it was given."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_api.commits import GroupCommit
from emulsion_api.jobs import Job, PlannedItem, item_bytes


class RecordingCreate:
    """Makes a job of the items given, after yielding to the loop (as an apiserver call
    would), and remembers every group; fails the groups holding a poisoned asset."""

    def __init__(self, poisoned: frozenset[str] = frozenset()) -> None:
        self.groups: list[list[PlannedItem]] = []
        self.poisoned = poisoned

    async def __call__(self, items: list[PlannedItem], trace: Mapping[str, str]) -> Job:
        self.groups.append(list(items))
        await asyncio.sleep(0)
        if self.poisoned & {item.asset for item in items}:
            raise RuntimeError("refused")
        return {
            "metadata": {"name": f"job-{len(self.groups)}", "trace": dict(trace)},
            "spec": {"items": [{"source": i.upload_key, "asset": i.asset} for i in items]},
        }


def request(*assets: str) -> list[PlannedItem]:
    return [PlannedItem(f"staging/{asset}", asset) for asset in assets]


async def submit_all(
    commits: GroupCommit, create: RecordingCreate, requests: list[list[PlannedItem]]
) -> list[Any]:
    return await asyncio.gather(
        *(commits.submit("key", items, {"n": str(n)}, create) for n, items in enumerate(requests)),
        return_exceptions=True,
    )


def test_a_lone_request_is_created_at_once_and_alone() -> None:
    create = RecordingCreate()
    job, offset = asyncio.run(GroupCommit(100).submit("key", request("a"), {}, create))
    assert (job["metadata"]["name"], offset, create.groups) == ("job-1", 0, [request("a")])


def test_requests_arriving_during_a_create_share_the_next_one_in_order() -> None:
    async def scenario() -> tuple[RecordingCreate, list[tuple[Job, int]]]:
        create = RecordingCreate()
        commits = GroupCommit(100)
        first = asyncio.create_task(commits.submit("key", request("a"), {"n": "0"}, create))
        await asyncio.sleep(0)  # its create is in flight
        later = [
            asyncio.create_task(commits.submit("key", items, {"n": str(n)}, create))
            for n, items in enumerate([request("b", "c"), request("d")], start=1)
        ]
        return create, await asyncio.gather(first, *later)

    create, answers = asyncio.run(scenario())
    # The first went alone; the others arrived while it was in flight and went together.
    assert create.groups == [request("a"), request("b", "c", "d")]
    assert [(job["metadata"]["name"], offset) for job, offset in answers] == [
        ("job-1", 0),
        ("job-2", 0),
        ("job-2", 2),
    ]
    # The group's job carries its first member's trace context.
    assert answers[1][0]["metadata"]["trace"] == {"n": "1"}


def test_a_failed_create_answers_its_members_with_the_error_and_spares_the_next_group() -> None:
    create = RecordingCreate(poisoned=frozenset({"b"}))
    # Three items fit in a job: a, b, c together, then d, e.
    answers = asyncio.run(
        submit_all(
            GroupCommit(3), create, [request("a"), request("b"), request("c"), request("d", "e")]
        )
    )
    assert create.groups == [request("a", "b", "c"), request("d", "e")]
    assert all(isinstance(answer, RuntimeError) for answer in answers[:3])
    assert answers[3][0]["metadata"]["name"] == "job-2"


def test_a_client_gone_away_does_not_cancel_its_groups_create() -> None:
    async def scenario() -> tuple[RecordingCreate, Any]:
        create = RecordingCreate()
        commits = GroupCommit(100)
        first = asyncio.create_task(commits.submit("key", request("a"), {}, create))
        await asyncio.sleep(0)
        second = asyncio.create_task(commits.submit("key", request("b"), {}, create))
        third = asyncio.create_task(commits.submit("key", request("c"), {}, create))
        await asyncio.sleep(0)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        return create, await asyncio.gather(first, third)

    create, answers = asyncio.run(scenario())
    assert create.groups == [request("a"), request("b", "c")]
    assert [offset for _, offset in answers] == [0, 1]


# Short names, and names whose stored size is large ('<' is six bytes as stored).
_assets = st.sampled_from(["a", "b", "c", "d", "e", "<" * 150, "<" * 199 + "x", "日" * 66])


@settings(max_examples=200)
@given(
    requests=st.lists(
        st.lists(_assets, min_size=1, max_size=4, unique=True),
        min_size=1,
        max_size=24,
    ),
    max_items=st.integers(min_value=4, max_value=12),
    max_bytes=st.integers(min_value=200, max_value=8000),
    keys=st.integers(min_value=1, max_value=3),
)
def test_every_request_finds_exactly_its_items_and_no_job_breaks_the_limits(
    requests: list[list[str]], max_items: int, max_bytes: int, keys: int
) -> None:
    create = RecordingCreate()
    commits = GroupCommit(max_items, max_bytes)
    planned = [request(*assets) for assets in requests]

    async def run() -> list[tuple[Job, int]]:
        return await asyncio.gather(
            *(commits.submit(n % keys, items, {}, create) for n, items in enumerate(planned))
        )

    answers = asyncio.run(run())

    for items, (job, offset) in zip(planned, answers, strict=True):
        shared = job["spec"]["items"][offset : offset + len(items)]
        assert shared == [{"source": i.upload_key, "asset": i.asset} for i in items]
    largest_request = max(sum(map(item_bytes, items)) for items in planned)
    for group in create.groups:
        assert len(group) <= max_items
        assert len({item.asset for item in group}) == len(group)
        # Within the stored-size bound, unless one request alone is over it.
        assert sum(map(item_bytes, group)) <= max(max_bytes, largest_request)
    assert sum(len(group) for group in create.groups) == sum(len(items) for items in planned)
