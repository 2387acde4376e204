"""What an IngestJob keeps outside etcd (emulsion_runtime.records_store), on the stack's NATS,
each side as its own identity: the API writes item lists, the controller reads them back
checked, and writes outcomes (compare-and-set), failures and summaries the API reads."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from emulsion_contracts import jobrecords, natsauth, wire
from emulsion_contracts.ingestjob import ItemsRef, JobItem
from emulsion_contracts.jobrecords import FailureDetail, JobSummaryRecord, OutcomeRecord
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import records_store
from emulsion_runtime.records_store import JobRecords


def items(count: int) -> list[JobItem]:
    return [
        JobItem(source=f"staging/c/01JQ{index:022d}/p{index}.jpg", asset=f"ü<{index}>.jpg")
        for index in range(count)
    ]


async def connected(stack: Endpoints, identity: str) -> Any:
    return await stack.nats_connect(identity)


def test_the_api_writes_an_item_list_the_controller_reads_checked(
    stack: Endpoints, run: Any
) -> None:
    job = f"j{uuid.uuid4().hex[:12]}"
    written = items(2000)

    async def scenario() -> tuple[ItemsRef, tuple[JobItem, ...]]:
        api = await connected(stack, natsauth.API_IDENTITY)
        controller = await connected(stack, natsauth.CONTROLLER_IDENTITY)
        try:
            ref = await records_store.put_items(api.jetstream(), "tenant-a", job, written)
            return ref, await records_store.get_items(controller.jetstream(), ref)
        finally:
            await api.drain()
            await controller.drain()

    ref, read = run(scenario())
    assert ref.count == 2000 and ref.name == f"tenant-a/{job}"
    assert list(read) == written


def test_a_missing_or_altered_item_list_is_refused(stack: Endpoints, run: Any) -> None:
    job = f"j{uuid.uuid4().hex[:12]}"

    async def scenario() -> list[type[Exception]]:
        api = await connected(stack, natsauth.API_IDENTITY)
        try:
            js = api.jetstream()
            ref = await records_store.put_items(js, "tenant-a", job, items(3))
            raised: list[type[Exception]] = []
            for wrong in (
                ref.model_copy(update={"sha256": "0" * 64}),
                ref.model_copy(update={"count": 4}),
                ref.model_copy(update={"name": f"tenant-a/{job}x"}),
            ):
                try:
                    await records_store.get_items(js, wrong)
                except (records_store.ItemsCorrupt, records_store.ItemsMissing) as error:
                    raised.append(type(error))
            return raised
        finally:
            await api.drain()

    assert run(scenario()) == [
        records_store.ItemsCorrupt,
        records_store.ItemsCorrupt,
        records_store.ItemsMissing,
    ]


def test_outcomes_are_compare_and_set_and_failures_page_in_index_order(
    stack: Endpoints, run: Any
) -> None:
    job, uid = f"j{uuid.uuid4().hex[:12]}.x", str(uuid.uuid4())

    async def scenario() -> dict[str, Any]:
        controller = await connected(stack, natsauth.CONTROLLER_IDENTITY)
        api = await connected(stack, natsauth.API_IDENTITY)
        try:
            kv = await controller.jetstream().key_value(wire.RECORDS_BUCKET)
            writer = JobRecords(kv)
            reader = JobRecords(await api.jetstream().key_value(wire.RECORDS_BUCKET))
            first = OutcomeRecord(uid=uid, total=250, succeeded="0-1")
            revision = await writer.write_outcomes("ns", job, first, None)
            conflict = False
            try:
                await writer.write_outcomes("ns", job, first, None)
            except records_store.RecordConflict:
                conflict = True
            second = first.model_copy(update={"failed": "2-249"})
            await writer.write_outcomes("ns", job, second, revision)
            for index in reversed(range(2, 250)):
                detail = FailureDetail(
                    uid=uid,
                    index=index,
                    asset=f"{index}.jpg",
                    reason="NotAnImage",
                    message="x" * 2000,
                )
                await writer.put_failure("ns", job, detail)
            # A stale record of another job of the same name is nobody's failure.
            await writer.put_failure(
                "ns", job, FailureDetail(uid="other", index=250, reason="NotAnImage")
            )
            summary = JobSummaryRecord(
                uid=uid,
                collection="c",
                phase="PartiallyFailed",
                total=250,
                succeeded=2,
                failed=248,
            )
            await writer.put_summary("ns", job, summary)
            pages, after = [], -1
            while True:
                page, cursor = await reader.failures("ns", job, uid, after=after, limit=100)
                pages.append([d.index for d in page])
                if cursor is None:
                    break
                after = cursor
            return {
                "conflict": conflict,
                "outcomes": await reader.outcomes("ns", job, uid),
                "other": await reader.outcomes("ns", job, "someone-else"),
                "pages": pages,
                "message": (await reader.failure("ns", job, uid, 2)),
                "summary": await reader.summary("ns", job),
                "none": await reader.failures("ns", job + "y", uid),
            }
        finally:
            await api.drain()
            await controller.drain()

    found = run(scenario())
    assert found["conflict"]
    record, _ = found["outcomes"]
    assert record.succeeded_set() == {0, 1} and record.failed_set() == set(range(2, 250))
    assert found["other"][0] is None
    assert [len(page) for page in found["pages"]] == [100, 100, 48]
    assert [index for page in found["pages"] for index in page] == list(range(2, 250))
    assert len(found["message"].message) == jobrecords.FAILURE_MESSAGE_MAX
    assert found["summary"].failed == 248
    assert found["none"] == ([], None)


@pytest.mark.parametrize("identity", [natsauth.PROCESSOR_IDENTITY, natsauth.JANITOR_IDENTITY])
def test_no_other_service_reads_item_lists_or_records(
    stack: Endpoints, run: Any, identity: str
) -> None:
    job = f"j{uuid.uuid4().hex[:12]}"

    async def scenario() -> list[str]:
        api = await connected(stack, natsauth.API_IDENTITY)
        other = await connected(stack, identity)
        refused: list[str] = []
        try:
            ref = await records_store.put_items(api.jetstream(), "ns", job, items(1))
            try:
                await records_store.get_items(other.jetstream(), ref)
            except Exception as error:  # any refusal will do
                refused.append(type(error).__name__)
            try:
                await other.jetstream().key_value(wire.RECORDS_BUCKET)
            except Exception as error:
                refused.append(type(error).__name__)
            return refused
        finally:
            await api.drain()
            await other.drain()

    assert len(run(scenario())) == 2
