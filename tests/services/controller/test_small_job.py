"""The small IngestJob on the real stack: items by reference, outcomes in the records
bucket, and the object as the apiserver stores it within 4 KB at any size.

- A job naming its items (spec.itemsRef, as the API writes it) is dispatched from the
  list read back from EMULSION_INGESTS; one whose list is missing or altered fails as a
  whole (InvalidSpec), with no retry loop.
- A 2,000-item job whose every item fails, with the longest names of characters Go
  escapes and the longest messages, ends with the whole object (metadata, spec, status,
  kopf's bookkeeping, managedFields) at most 4 KB read back from the apiserver, and every
  failure in the records bucket.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from emulsion_contracts import crd, keys, natsauth, wire
from emulsion_contracts.ingestjob import ItemsRef, JobItem
from emulsion_contracts.messages import ItemResult, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.progress import CONTROLLER_BYTES, FRAME_BYTES, stored_json_bytes
from emulsion_devstack.processes import ProcessRecord
from emulsion_runtime import records_store
from emulsion_runtime.records_store import JobRecords

from .conftest import Processor
from .test_bounded_status import OBJECT_BUDGET, api_metadata, controller_part

# Reasons a processor reports, cycled so each reason's items are spread out.
REASONS = [FailureReason.NOT_AN_IMAGE, FailureReason.DECOMPRESSION_BOMB, FailureReason.UNKNOWN]


class FailingProcessor(Processor):
    """Fails every item at once with the longest message a processor sends."""

    async def report(
        self, work: WorkItem, reason: str | None, headers: dict[str, str] | None
    ) -> int:
        result = ItemResult(
            job=work.job,
            index=work.index,
            outcome="failed",
            reason=REASONS[work.index % len(REASONS)],
            message="<&>" * 1365,
            collection=work.collection,
            asset=work.asset,
            version=work.version,
            committed=False,
            finished_at=datetime.now(UTC),
        )
        return await self.publish(result, headers)


def longest_items(count: int) -> list[JobItem]:
    """Staging keys and asset names at their limits, the names all '<' and 4-byte UTF-8."""
    upload = keys.new_ulid()
    return [
        JobItem(
            source=f"staging/gallery/{upload}/{index}.jpg",
            # 200 bytes of UTF-8: the API's limit (1,204 bytes as Go stores it).
            asset=f"{index:04d}" + "<" * 96 + "𝒜" * 25,
        )
        for index in range(count)
    ]


def put_items(stack: Any, run: Any, namespace: str, name: str, items: list[JobItem]) -> ItemsRef:
    async def put() -> ItemsRef:
        connection = await stack.nats_connect(natsauth.API_IDENTITY)
        try:
            return await records_store.put_items(connection.jetstream(), namespace, name, items)
        finally:
            await connection.close()

    ref: ItemsRef = run(put())
    return ref


def create_by_reference(jobs: Any, name: str, ref: ItemsRef) -> dict[str, Any]:
    manifest = {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {**api_metadata(name, jobs.namespace), "finalizers": [crd.FINALIZER]},
        "spec": {
            "collection": "gallery",
            "version": keys.new_ulid(),
            "itemsRef": ref.to_body(),
        },
    }
    body: dict[str, Any] = jobs.api.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, jobs.namespace, crd.PLURAL, manifest
    )
    return body


def stored_bytes(jobs: Any, name: str) -> int:
    """The job as the apiserver answers it, byte for byte: Go's JSON, as etcd holds it
    (plus the resourceVersion, which etcd keeps as the key's revision instead)."""
    response = jobs.api.get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, jobs.namespace, crd.PLURAL, name, _preload_content=False
    )
    return len(response.data.rstrip(b"\n"))


def test_a_job_by_reference_is_dispatched_from_its_checked_list(
    controller: ProcessRecord, jobs: Any, streams: Any, stack: Any, run: Any
) -> None:
    name = f"ref-{uuid.uuid4().hex[:6]}"
    ref = put_items(stack, run, jobs.namespace, name, longest_items(5))

    async def scenario() -> tuple[dict[str, Any], Processor]:
        async with streams.processing() as processor:
            await asyncio.to_thread(create_by_reference, jobs, name, ref)
            status = await asyncio.to_thread(jobs.wait_phase, name, crd.Phase.SUCCEEDED)
            return status, processor

    status, processor = run(scenario())
    assert (status["succeeded"], status["progress"]) == (5, "5/5")
    assert "succeededIndexes" not in status
    uid = jobs.get(name)["metadata"]["uid"]
    assert sorted(i for u, i in processor.processed if u == uid) == list(range(5))


@pytest.mark.parametrize("wrong", ["missing", "altered"])
def test_a_job_whose_item_list_is_missing_or_altered_fails_as_a_whole(
    controller: ProcessRecord, jobs: Any, streams: Any, stack: Any, run: Any, wrong: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    ref = put_items(stack, run, jobs.namespace, name, longest_items(3))
    if wrong == "missing":
        ref = ref.model_copy(update={"name": f"{jobs.namespace}/{name}-gone"})
    else:
        ref = ref.model_copy(update={"sha256": "0" * 64})
    create_by_reference(jobs, name, ref)
    status = jobs.wait_phase(name, crd.Phase.FAILED)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == FailureReason.INVALID_SPEC
    assert "spec.itemsRef" in failed["message"]
    assert ("not in" if wrong == "missing" else "sha256") in failed["message"]

    # Failed for good, as a whole: nothing was queued, no item counted.
    async def queued() -> int:
        async with streams.session() as js:
            return int(await streams.queued_on(js, jobs.namespace, name))

    assert run(queued()) == 0
    assert status["total"] == 3 and status.get("failed", 0) == 0


@pytest.mark.parametrize("total", [1, 200, crd.MAX_ITEMS])
def test_a_job_whose_every_item_failed_stays_within_four_kilobytes(
    controller: ProcessRecord, jobs: Any, streams: Any, stack: Any, run: Any, total: int
) -> None:
    name = keys.new_ulid().lower()
    ref = put_items(stack, run, jobs.namespace, name, longest_items(total))

    async def scenario() -> dict[str, Any]:
        async with streams.session() as js:
            processor = FailingProcessor(js, lambda work: "fail")
            stopping = asyncio.Event()
            task = asyncio.create_task(processor.run(stopping))
            try:
                await asyncio.to_thread(create_by_reference, jobs, name, ref)
                status: dict[str, Any] = await asyncio.to_thread(
                    jobs.wait_phase, name, crd.Phase.FAILED, timeout=120
                )
                return status
            finally:
                stopping.set()
                await task

    status = run(scenario())
    assert (status["failed"], status["succeeded"]) == (total, 0), status
    size = stored_bytes(jobs, name)
    stored = jobs.get(name)
    ours, frame = controller_part(stored), stored_json_bytes(stored) - controller_part(stored)
    print(f"{total} items, every one failed: {size} bytes stored ({ours} the controller's)")
    # The model the property test proves the bound on holds on the real apiserver.
    assert ours <= CONTROLLER_BYTES, ours
    assert frame <= FRAME_BYTES, frame
    assert size <= OBJECT_BUDGET, size
    assert "failedIndexes" not in status
    assert all("indexes" not in c for c in status["failureReasons"])
    assert sum(c["count"] for c in status["failureReasons"]) == total
    uid = jobs.get(name)["metadata"]["uid"]

    async def read_records() -> tuple[Any, list[int], Any]:
        # As the API reads them.
        connection = await stack.nats_connect(natsauth.API_IDENTITY)
        try:
            kv = await connection.jetstream().key_value(wire.RECORDS_BUCKET)
            reader = JobRecords(kv)
            outcomes, _ = await reader.outcomes(jobs.namespace, name, uid)
            failed = await reader.failure_indexes(jobs.namespace, name)
            summary = await reader.summary(jobs.namespace, name)
            return outcomes, failed, summary
        finally:
            await connection.close()

    outcomes, failed, summary = run(read_records())
    assert outcomes is not None and outcomes.failed == ("0" if total == 1 else f"0-{total - 1}")
    assert set(outcomes.reasons) == {str(r) for r in REASONS[:total]}
    assert failed == list(range(total))
    assert summary is not None and summary.uid == uid
    assert (summary.phase, summary.failed, summary.total) == ("Failed", total, total)


def test_a_job_an_older_controller_left_half_done_resumes_from_its_index_ranges(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    """Its status's ranges are merged into the outcome record once, then removed."""
    jobs.create("older", 3)
    jobs.api.patch_namespaced_custom_object_status(
        crd.GROUP,
        crd.VERSION,
        jobs.namespace,
        crd.PLURAL,
        "older",
        {"status": {"phase": "Processing", "total": 3, "succeeded": 1, "succeededIndexes": "1"}},
    )
    controllers.start()

    async def scenario() -> dict[str, Any]:
        async with streams.processing():
            status: dict[str, Any] = await asyncio.to_thread(
                jobs.wait_phase, "older", crd.Phase.SUCCEEDED
            )
            return status

    status = run(scenario())
    assert (status["succeeded"], status["progress"]) == (3, "3/3")
    assert "succeededIndexes" not in status and "failedIndexes" not in status
    assert jobs.outcomes("older").succeeded == "0-2"
