"""The feeder around its policy (emulsion_controller.feeder.Feeder), against a recording
bus: what it publishes in which order, what it records, and what it does when publishing
fails or another controller fed meanwhile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from emulsion_contracts import crd, keys, wire
from emulsion_contracts.ingestjob import IngestJob
from emulsion_contracts.jobrecords import FeedCursor
from emulsion_contracts.messages import ItemResult
from emulsion_controller.dispatch import work_messages
from emulsion_controller.feeder import Feeder
from emulsion_controller.jetstream import Bus, Outgoing
from emulsion_controller.progress import JobProgress

VERSION = keys.new_ulid()


class Records:
    def __init__(self) -> None:
        self.cursors: dict[tuple[str, str], FeedCursor] = {}

    async def cursor(self, namespace: str, job: str, uid: str) -> int | None:
        found = self.cursors.get((namespace, job))
        return found.published if found is not None and found.uid == uid else None

    async def put_cursor(self, namespace: str, job: str, cursor: FeedCursor) -> None:
        self.cursors[(namespace, job)] = cursor


class RecordingBus:
    def __init__(self) -> None:
        self.records = Records()
        self.published: list[Outgoing] = []
        self.failing = False

    async def with_items(self, job: IngestJob) -> IngestJob:
        return job

    async def publish(self, messages: list[Outgoing]) -> int:
        if self.failing:
            raise ConnectionError("NATS is away")
        self.published.extend(messages)
        return len(messages)


def job(name: str, items: int, tenant: str) -> IngestJob:
    return IngestJob.read(
        {
            "metadata": {
                "namespace": "ns",
                "name": name,
                "uid": f"uid-{name}",
                "generation": 1,
                "labels": {crd.LABEL_TENANT: tenant},
            },
            "spec": {
                "collection": "gallery",
                "version": VERSION,
                "items": [
                    {"source": f"staging/gallery/{keys.new_ulid()}/{i}.jpg", "asset": f"{i}.jpg"}
                    for i in range(items)
                ],
            },
        }
    )


def dispatched(ingest: IngestJob) -> JobProgress:
    progress = JobProgress.from_job(ingest)
    progress.mark_dispatched(VERSION, datetime.now(UTC))
    return progress


def feeder(bus: RecordingBus, **options: Any) -> Feeder:
    return Feeder(
        cast(Bus, bus),
        interactive_max_items=5,
        high_water=options.pop("high_water", 6),
        min_window=1,
        work_messages=work_messages,
        **options,
    )


def ids(messages: list[Outgoing]) -> list[str]:
    return [m.headers[wire.HEADER_MSG_ID] for m in messages]


def result(ingest: IngestJob, index: int) -> ItemResult:
    return ItemResult(
        job=ingest.ref,
        index=index,
        outcome="succeeded",
        collection="gallery",
        asset=f"{index}.jpg",
        version=keys.version_id(VERSION, index),
        finished_at=datetime.now(UTC),
    )


def test_tenants_interleave_and_cursors_are_recorded_after_publishing() -> None:
    bus = RecordingBus()
    fed = feeder(bus)
    a, b = job("a", 10, "alice"), job("b", 10, "bob")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    a.metadata.annotations[crd.ANNOTATION_TRACEPARENT] = f"00-{trace_id}-00f067aa0ba902b7-01"

    async def scenario() -> None:
        for ingest in (a, b):
            await fed.start_bulk(ingest)
            await fed.take(ingest, VERSION, dispatched(ingest))
        await fed.feed()
        assert ids(bus.published) == [f"uid-{n}/{i}" for i in range(3) for n in "ab"]
        # Job a's items go on with the trace of the request that made it.
        traced = [m.headers.get("traceparent", "") for m in bus.published[::2]]
        assert all(trace_id in parent for parent in traced), traced
        assert {m.subject for m in bus.published} == {
            wire.work_subject("ns", "a", wire.Lane.BULK),
            wire.work_subject("ns", "b", wire.Lane.BULK),
        }
        assert bus.records.cursors[("ns", "a")] == FeedCursor(uid="uid-a", published=3)
        # A result frees one place of its tenant's window.
        fed.result_seen(result(b, 0))
        fed.result_seen(result(b, 0))  # a duplicate frees nothing
        await fed.feed()
        assert ids(bus.published)[6:] == ["uid-b/3"]
        assert await fed.published(b) == 4

    asyncio.run(scenario())
    depths = {d.tenant: d.waiting for d in fed.snapshot()}
    assert depths == {"alice": 10, "bob": 9}


def test_a_failed_publish_is_published_again_and_recorded_only_then() -> None:
    bus = RecordingBus()
    fed = feeder(bus, high_water=4)
    a = job("a", 8, "alice")

    async def scenario() -> None:
        await fed.start_bulk(a)
        await fed.take(a, VERSION, dispatched(a))
        bus.failing = True
        with pytest.raises(ConnectionError):
            await fed.feed()
        assert bus.records.cursors[("ns", "a")].published == 0
        bus.failing = False
        await fed.feed()
        assert ids(bus.published) == [f"uid-a/{i}" for i in range(4)]
        assert bus.records.cursors[("ns", "a")].published == 4

    asyncio.run(scenario())


def test_nothing_is_fed_while_outranked_and_then_from_the_other_controllers_cursor() -> None:
    bus = RecordingBus()
    outranked = True
    fed = feeder(bus, may_feed=lambda: not outranked)
    a = job("a", 20, "alice")

    async def scenario() -> None:
        nonlocal outranked
        await fed.start_bulk(a)
        await fed.take(a, VERSION, dispatched(a))
        assert await fed.feed() == 0
        assert bus.published == []
        # The other controller published 0-9 meanwhile and recorded it.
        bus.records.cursors[("ns", "a")] = FeedCursor(uid="uid-a", published=10)
        outranked = False
        await fed.feed()
        assert bus.published == []  # its 10 items fill the window (6)
        for index in range(6):
            fed.result_seen(result(a, index))
        await fed.feed()
        assert ids(bus.published) == ["uid-a/10", "uid-a/11"]

    asyncio.run(scenario())


def test_small_jobs_are_only_counted_and_a_job_without_cursor_was_published_whole() -> None:
    bus = RecordingBus()
    fed = feeder(bus)
    small, old = job("small", 3, "alice"), job("old", 30, "bob")

    async def scenario() -> None:
        assert fed.lane(small) is wire.Lane.INTERACTIVE
        await fed.take(small, VERSION, dispatched(small))
        # Dispatched by a controller before the feeder: no cursor, all published.
        await fed.take(old, VERSION, dispatched(old))
        await fed.feed()
        assert bus.published == []
        assert await fed.published(old) == 30

    asyncio.run(scenario())
    depths = {(d.lane, d.tenant): d.waiting for d in fed.snapshot()}
    assert depths == {(wire.Lane.INTERACTIVE, "alice"): 3, (wire.Lane.BULK, "bob"): 30}


@pytest.mark.parametrize("active", [True, False], ids=["active", "standby"])
def test_a_running_feeder_reports_its_queue_and_a_standby_reports_none(active: bool) -> None:
    bus = RecordingBus()
    fed = feeder(bus, interval=0.05, may_feed=lambda: active)
    ingest = job("gauged", 10, "carol")
    rounds: list[str] = []
    second_round = asyncio.Event()

    def progress(uid: str) -> JobProgress | None:
        rounds.append(uid)  # once per job and interval: the gauges are set right after
        if len(rounds) >= 2:
            second_round.set()
        return None

    def depth() -> float | None:
        return REGISTRY.get_sample_value(
            "emulsion_queue_depth", {"lane": "bulk", "tenant": "carol"}
        )

    async def scenario() -> None:
        await fed.start_bulk(ingest)
        await fed.take(ingest, VERSION, dispatched(ingest))
        stopping = asyncio.Event()
        running = asyncio.create_task(fed.run(stopping, progress))
        # Two intervals: the first's gauges are surely set once the second begins.
        await asyncio.wait_for(second_round.wait(), 10)
        stopping.set()
        await running

    asyncio.run(scenario())
    assert depth() == (10 if active else None)
