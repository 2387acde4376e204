"""The status writer's conditional writes against a stand-in apiserver and records
bucket (no I/O).

What is checked here is which resourceVersion each write is conditional on: a watch
event showing only kopf's bookkeeping since our last write lets the next write go
straight through, while anything else still goes the conflict-and-merge way; and that
the outcome record, written compare-and-set before the status, keeps another writer's
outcomes.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from emulsion_contracts import keys
from emulsion_contracts.ingestjob import IngestJob
from emulsion_contracts.jobrecords import OutcomeRecord
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_controller.apiserver import Conflict, Kube
from emulsion_controller.jetstream import Bus
from emulsion_controller.status_writer import StatusWriter
from emulsion_devstack.processes import until
from emulsion_runtime.records_store import JobRecords

VERSION = keys.new_ulid()
UID = "uid-1"


class FakeKube:
    """One IngestJob as the apiserver keeps it: merge patches, resourceVersion checks."""

    def __init__(self, items: int) -> None:
        self.revision = 1
        self.body: dict[str, Any] = {
            "metadata": {"namespace": "ns", "name": "job", "uid": UID, "generation": 1},
            "spec": {
                "collection": "gallery",
                "version": VERSION,
                "items": [
                    {"source": f"staging/u/{i}.jpg", "asset": f"{i}.jpg"} for i in range(items)
                ],
            },
            "status": {},
        }
        self.conditional_on: list[str | None] = []
        self.conflicts = 0
        self.reads = 0
        self._stamp()

    def _stamp(self) -> None:
        self.body["metadata"]["resourceVersion"] = str(self.revision)

    def event(self) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def someone_writes(self, status: dict[str, Any]) -> dict[str, Any]:
        """An unconditional merge of `status` by another writer (kopf, a second replica)."""
        self.body["status"].update(copy.deepcopy(status))
        # A merge patch's null removes the field.
        self.body["status"] = {k: v for k, v in self.body["status"].items() if v is not None}
        self.revision += 1
        self._stamp()
        return self.event()

    async def patch_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        self.conditional_on.append(resource_version)
        if resource_version is not None and resource_version != str(self.revision):
            self.conflicts += 1
            raise Conflict(resource_version)
        return self.someone_writes(status)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.event()


class FakeEntry:
    def __init__(self, key: str, value: bytes, revision: int) -> None:
        self.key, self.value, self.revision = key, value, revision


class FakeKV:
    """The part of a JetStream KV bucket JobRecords uses: revisions, create, update."""

    def __init__(self) -> None:
        self.entries: dict[str, FakeEntry] = {}
        self.sequence = 0
        self.failing = False
        self.failed = 0

    def _check(self) -> None:
        if self.failing:
            self.failed += 1
            raise TimeoutError("nats: timeout")

    def _put(self, key: str, value: bytes) -> int:
        self.sequence += 1
        self.entries[key] = FakeEntry(key, value, self.sequence)
        return self.sequence

    async def get(self, key: str) -> FakeEntry:
        self._check()
        if key not in self.entries:
            raise KeyNotFoundError
        return self.entries[key]

    async def put(self, key: str, value: bytes) -> int:
        self._check()
        return self._put(key, value)

    async def create(self, key: str, value: bytes) -> int:
        self._check()
        if key in self.entries:
            raise KeyWrongLastSequenceError
        return self._put(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        self._check()
        entry = self.entries.get(key)
        if entry is None or entry.revision != last:
            raise KeyWrongLastSequenceError
        return self._put(key, value)


class FakeBus:
    def __init__(self) -> None:
        self.kv = FakeKV()
        self.records = JobRecords(cast(Any, self.kv))

    async def release(self, job_uid: str, upload_ids: Any) -> None:
        return None

    async def with_items(self, job: IngestJob) -> IngestJob:
        return job

    def forget_items(self, uid: str) -> None:
        return None

    def outcomes(self) -> OutcomeRecord:
        return OutcomeRecord.model_validate_json(self.kv.entries["ns.job.outcomes"].value)


def result(index: int) -> ItemResult:
    return ItemResult(
        job=JobRef(namespace="ns", name="job", uid=UID),
        index=index,
        outcome="succeeded",
        collection="gallery",
        asset=f"{index}.jpg",
        version=keys.version_id(VERSION, index),
        finished_at=datetime(2026, 1, 2, tzinfo=UTC),
    )


async def acknowledged() -> None:
    return None


async def dispatched(
    kube: FakeKube, retry_ceiling: float = 30.0, bus: FakeBus | None = None
) -> StatusWriter:
    bus = bus or FakeBus()
    writer = StatusWriter(cast(Kube, kube), cast(Bus, bus), 0.001, retry_ceiling)
    job = await writer.begin_dispatch(IngestJob.read(kube.event()))
    assert await writer.end_dispatch(job, VERSION)
    return writer


async def fold_one_result(writer: StatusWriter, index: int) -> None:
    """Submit one result and wait until it is written and acknowledged (none held)."""
    writer.submit(result(index), acknowledged, None)

    async def written_and_acknowledged() -> bool:
        return writer.held() == 0

    await until(f"result {index} to be written", written_and_acknowledged, 10)


def test_an_event_with_only_kopfs_bookkeeping_spares_the_next_write_a_conflict() -> None:
    async def scenario() -> FakeKube:
        kube = FakeKube(items=2)
        writer = await dispatched(kube)
        # kopf records its handler progress and diff base once the create handler is done.
        writer.observe(kube.someone_writes({"kopf": {"progress": {}, "dispatched": True}}))
        await fold_one_result(writer, 0)
        return kube

    kube = asyncio.run(scenario())
    assert kube.conflicts == 0
    assert kube.reads == 0
    assert kube.conditional_on == ["1", "3"]
    assert kube.body["status"]["succeeded"] == 1
    assert kube.body["status"]["kopf"]["dispatched"] is True


def test_an_event_with_another_writers_content_still_goes_through_the_merge() -> None:
    async def scenario() -> tuple[FakeKube, FakeBus]:
        kube, bus = FakeKube(items=3), FakeBus()
        writer = await dispatched(kube, bus=bus)
        # A second replica folded item 2 meanwhile: into the record first, then status.
        revision = bus.kv.entries["ns.job.outcomes"].revision
        theirs_recorded = OutcomeRecord(uid=UID, total=3, succeeded="2")
        await bus.records.write_outcomes("ns", "job", theirs_recorded, revision)
        theirs = kube.event()["status"]
        theirs.update(succeeded=1, progress="1/3")
        writer.observe(kube.someone_writes(theirs))
        await fold_one_result(writer, 0)
        return kube, bus

    kube, bus = asyncio.run(scenario())
    assert kube.conflicts == 1
    assert kube.reads == 1
    assert bus.outcomes().succeeded == "0,2"
    assert kube.body["status"]["succeeded"] == 2
    assert "succeededIndexes" not in kube.body["status"]


def test_an_old_status_with_index_ranges_is_merged_into_the_record_once() -> None:
    """A job an older controller wrote (index ranges in status) resumes from them."""

    async def scenario() -> tuple[FakeKube, FakeBus]:
        kube, bus = FakeKube(items=3), FakeBus()
        kube.someone_writes(
            {
                "phase": "Processing",
                "succeeded": 1,
                "failed": 1,
                "succeededIndexes": "1",
                "failedIndexes": "2",
                "failureReasons": [{"reason": "NotAnImage", "count": 1, "indexes": "2"}],
            }
        )
        writer = await dispatched(kube, bus=bus)
        await fold_one_result(writer, 0)
        return kube, bus

    kube, bus = asyncio.run(scenario())
    recorded = bus.outcomes()
    assert (recorded.succeeded, recorded.failed) == ("0-1", "2")
    assert recorded.reasons == {"NotAnImage": "2"}
    status = kube.body["status"]
    assert (status["phase"], status["succeeded"], status["failed"]) == ("PartiallyFailed", 2, 1)
    assert status["failureReasons"] == [{"reason": "NotAnImage", "count": 1}]
    # The older controller's ranges are gone from the status: the record has them.
    assert "succeededIndexes" not in status and "failedIndexes" not in status


def test_a_stale_event_is_not_adopted() -> None:
    async def scenario() -> FakeKube:
        kube = FakeKube(items=3)
        writer = await dispatched(kube)
        stale = kube.event()  # what our dispatch write left
        await fold_one_result(writer, 0)
        writer.observe(stale)  # arrives late, after the next write
        await fold_one_result(writer, 1)
        return kube

    kube = asyncio.run(scenario())
    assert kube.conflicts == 0
    assert kube.conditional_on == ["1", "2", "3"]
    assert kube.body["status"]["succeeded"] == 2


@settings(max_examples=200, deadline=None)
@given(
    failures=st.integers(min_value=1, max_value=10_000),
    interval=st.floats(min_value=0.01, max_value=10),
    ceiling=st.floats(min_value=0.01, max_value=300),
)
def test_the_backoff_grows_is_capped_and_never_zero(
    failures: int, interval: float, ceiling: float
) -> None:
    writer = StatusWriter(cast(Kube, FakeKube(1)), cast(Bus, FakeBus()), interval, ceiling)
    cap = min(ceiling, interval * 2.0 ** min(failures, 64))
    assert cap / 2 <= writer.backoff(failures) <= cap


def test_redeliveries_while_the_apiserver_fails_are_held_once_per_item() -> None:
    class FailingKube(FakeKube):
        async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
            self.reads += 1
            raise RuntimeError("503")

    acked: list[int] = []

    def ack_of(delivery: int) -> Any:
        async def ack() -> None:
            acked.append(delivery)

        return ack

    async def scenario() -> tuple[int, int]:
        kube = FailingKube(items=3)
        writer = StatusWriter(cast(Kube, kube), cast(Bus, FakeBus()), 0.001, 0.01)
        for delivery in range(50):  # each item redelivered again and again
            writer.submit(result(delivery % 3), ack_of(delivery), None)
            await asyncio.sleep(0)
        held = writer.held()
        await writer.close()
        return held, kube.reads

    held, reads = asyncio.run(scenario())
    assert held == 3  # the newest delivery's acknowledgement of each item
    assert acked == []  # nothing acknowledged before it is written
    assert reads >= 1


def test_redeliveries_of_results_already_folded_are_held_once_per_item() -> None:
    """A tracked job's results wait as acknowledgements while the record cannot be
    written (NATS away); a redelivery of one of them only takes the older
    acknowledgement's place, and the newest is the one sent."""

    acked: list[int] = []

    def ack_of(delivery: int) -> Any:
        async def ack() -> None:
            acked.append(delivery)

        return ack

    async def scenario() -> tuple[list[int], FakeKube]:
        kube, bus = FakeKube(items=3), FakeBus()
        writer = await dispatched(kube, retry_ceiling=0.01, bus=bus)
        failing = bus.kv
        failing.failing = True
        held = []
        for round_ in range(5):  # each item redelivered again and again
            failed = failing.failed
            for index in range(3):
                writer.submit(result(index), ack_of(3 * round_ + index), None)
            held.append(writer.held())

            # The driver folds what came and fails its write before the next deliveries.
            async def attempted(before: int = failed) -> bool:
                return failing.failed > before

            await until("a write to be attempted", attempted, 5)
        failing.failing = False

        async def written() -> bool:
            return writer.held() == 0

        await until("the results to be written", written, 10)
        await writer.close()
        return held, kube

    held, kube = asyncio.run(scenario())
    assert max(held) == 3, held  # one per item, however often it was redelivered
    assert sorted(acked) == [12, 13, 14]  # the newest delivery of each item
    assert kube.body["status"]["succeeded"] == 3


def test_pinning_a_version_is_conditional_and_yields_to_one_already_pinned() -> None:
    """A job made without a version: the controller's pick is written only over the
    resourceVersion it read (the status subresource does not check the uid), and a
    version another replica pinned first is the one used."""

    async def scenario() -> tuple[str | None, FakeKube]:
        kube = FakeKube(items=2)
        del kube.body["spec"]["version"]
        writer = StatusWriter(cast(Kube, kube), cast(Bus, FakeBus()), 0.001)
        job = await writer.begin_dispatch(IngestJob.read(kube.event()))
        kube.someone_writes({"version": VERSION})  # a second replica pinned its own
        pinned = await writer.record_version(job, keys.new_ulid())
        return pinned, kube

    pinned, kube = asyncio.run(scenario())
    assert pinned == VERSION
    assert kube.conditional_on == ["1"]
    assert kube.body["status"]["version"] == VERSION


def test_a_record_ahead_of_the_status_is_written_again() -> None:
    """A crash between the record (results acknowledged) and the status write: the
    record ends the job, and catching up writes the status it adds up to."""

    async def scenario() -> FakeKube:
        kube, bus = FakeKube(items=2), FakeBus()
        kube.someone_writes({"phase": "Processing", "version": VERSION})
        record = OutcomeRecord(uid=UID, total=2, succeeded="0", failed="1", reasons={"X": "1"})
        await bus.records.write_outcomes("ns", "job", record, None)
        writer = StatusWriter(cast(Kube, kube), cast(Bus, bus), 0.001)
        writer.catch_up(JobRef(namespace="ns", name="job", uid=UID))

        async def finished() -> bool:
            return bool(kube.body["status"].get("phase") == "PartiallyFailed")

        await until("the status to catch up with the record", finished, 10)
        await writer.close()
        return kube

    status = asyncio.run(scenario()).body["status"]
    assert (status["succeeded"], status["failed"], status["progress"]) == (1, 1, "2/2")
    assert status["failureReasons"] == [{"reason": "X", "count": 1}]
