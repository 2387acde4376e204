"""A job stays small and its writes bounded, whatever the job's size (no I/O).

- The whole job object as etcd stores it (Go's JSON escapes included) stays within
  4 KB, proven as a property over item counts, name lengths, reasons and messages with
  every item failed: metadata as the API writes it and as the apiserver completes it
  (managedFields of every writer included), the spec naming its items (itemsRef), kopf's
  bookkeeping, and the compact status the controller writes (counts, conditions, at most
  five examples, counts per reason; which items finished is in the outcome record).
- A running job's writes come at most once per an interval that grows with its size.
- A status the apiserver refuses as such (422/413) fails the job with a reason and the
  writer goes on acknowledging: nothing is held behind it.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from typing import Any, cast

from hypothesis import event, given, settings
from hypothesis import strategies as st

from emulsion_contracts import crd, keys
from emulsion_contracts.ingestjob import IngestJob, IngestJobStatus
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.apiserver import Kube, Unwritable
from emulsion_controller.folding import MAX_INTERVAL, write_interval
from emulsion_controller.jetstream import Bus
from emulsion_controller.progress import (
    CONTROLLER_BYTES,
    FRAME_BYTES,
    STATUS_BYTES,
    JobProgress,
    stored_json_bytes,
)
from emulsion_controller.status_writer import StatusWriter
from emulsion_devstack.processes import until

from .test_status_writer import UID, VERSION, FakeBus, FakeKube

# What the whole job object may take as etcd stores it (a small IngestJob).
OBJECT_BUDGET = 4096
NOW = datetime(2026, 12, 7, tzinfo=UTC)
ITEM_REASONS = [r for r in FailureReason if r not in ("InvalidSpec", "StatusUnwritable")]
# The 4 KB hold for namespaces, collections and profiles of up to this many characters
# (real ones are shorter); at the longest the names take (63), the job stays within
# OBJECT_AT_LONGEST_NAMES: bounded either way, whatever the items and their failures.
# At 16 the API's part takes up to 1,733 bytes (a four-digit item count), 5 over its frame.
NAME_LENGTH_FOR_4_KB = 15
OBJECT_AT_LONGEST_NAMES = 4600
# The managers the apiserver records (from the User-Agent of the shared client, and kopf's).
MANAGER = "Python"
KOPF = "kopf"


def api_metadata(name: str, namespace: str, collection: str = "gallery") -> dict[str, Any]:
    """A job's metadata as the API writes it (emulsion_api.jobs.build_jobs): its labels
    (managed-by, the collection's, a batch, the token's identity, an idempotency hash), the
    trace's parent and the request's digest. The client's idempotency key and a W3C
    tracestate are not written: either alone could take more than the status may."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            crd.LABEL_MANAGED_BY: "emulsion-api",
            crd.LABEL_COLLECTION: collection[:63],
            crd.LABEL_BATCH: keys.new_ulid().lower(),
            f"{crd.GROUP}/owner": "0123456789abcdef",
            f"{crd.GROUP}/idempotency": "f" * 40,
        },
        "annotations": {
            crd.ANNOTATION_TRACEPARENT: "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            f"{crd.GROUP}/request-sha256": "e" * 64,
        },
    }


def _fields(keys_: Any) -> dict[str, Any]:
    return {".": {}, **{f"f:{key}": {} for key in keys_}}


def stored_job(metadata: dict[str, Any], spec: dict[str, Any], status: dict[str, Any]) -> Any:
    """The job as the apiserver stores it once the API, kopf and the controller wrote it:
    the server's fields and one managedFields entry per writer, as measured on the stack
    (test_small_job), with the status an atomic list of conditions."""
    kopf = {
        "last-handled-configuration": json.dumps(
            {"spec": {"collection": spec["collection"]}},
            separators=(",", ":"),
        )
    }

    def entry(fields: dict[str, Any], subresource: str | None, manager: str = MANAGER) -> Any:
        found = {
            "apiVersion": crd.API_VERSION,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
            "manager": manager,
            "operation": "Update",
            "time": "2026-12-07T07:32:16Z",
        }
        if subresource:
            found["subresource"] = subresource
        return found

    api_fields = {
        "f:metadata": {
            "f:annotations": _fields(metadata["annotations"]),
            "f:finalizers": {".": {}, f'v:"{crd.FINALIZER}"': {}},
            "f:labels": _fields(metadata["labels"]),
        },
        "f:spec": {
            **_fields(k for k in spec if k != "itemsRef"),
            "f:itemsRef": _fields(spec["itemsRef"]),
        },
    }
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {
            **metadata,
            "creationTimestamp": "2026-12-07T07:32:16Z",
            "finalizers": [crd.FINALIZER],
            "generation": 1,
            "managedFields": [
                entry(api_fields, None),
                entry({"f:status": {"f:kopf": _fields(kopf)}}, "status", KOPF),
                entry({"f:status": _fields(status)}, "status"),
            ],
            "resourceVersion": "123456789",
            "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        },
        "spec": spec,
        "status": {**status, "kopf": kopf},
    }


def controller_part(job: Any) -> int:
    """The bytes of a stored job that the controller's writes put there: the status
    (kopf's included) and the managedFields entries of the status subresource; each
    counted with the separators that join it to the rest."""
    status = stored_json_bytes(job["status"]) + len('"status":,')
    entries = [m for m in job["metadata"]["managedFields"] if m.get("subresource")]
    return status + sum(stored_json_bytes(m) + 1 for m in entries)


def failed_result(index: int, asset: str, reason: FailureReason, message: str) -> ItemResult:
    return ItemResult(
        job=JobRef(namespace="ns", name="job", uid=UID),
        index=index,
        outcome="failed",
        reason=reason,
        message=message,
        collection="gallery",
        asset=asset,
        version=keys.version_id(VERSION, index),
        finished_at=NOW,
    )


NAME_CHARS = ["a", "<", "&", "日", "𝒜"]


@settings(max_examples=150, deadline=None)
@given(
    total=st.sampled_from([1, 2, 200, 2000]) | st.integers(1, crd.MAX_ITEMS),
    name_length=st.integers(1, keys.ASSET_NAME_MAX),
    char=st.sampled_from(NAME_CHARS),
    # Distinct reasons; `interleaved` spreads each reason's items over the whole job.
    reasons=st.lists(
        st.sampled_from(ITEM_REASONS), min_size=1, max_size=len(ITEM_REASONS), unique=True
    ),
    interleaved=st.booleans(),
    message=st.text(alphabet=st.sampled_from(["<", "x", "日", "𝒜", "\u2028"]), max_size=1024),
    names_length=st.integers(1, 63),
)
def test_the_stored_job_whose_every_item_failed_stays_within_four_kilobytes(
    total: int,
    name_length: int,
    char: str,
    reasons: list[FailureReason],
    interleaved: bool,
    message: str,
    names_length: int,
) -> None:
    progress = JobProgress(total=total, generation=1)
    progress.mark_dispatched(VERSION, NOW)
    # The longest name of `char` the API takes (200 characters and 200 bytes of UTF-8).
    asset = (char * name_length).encode()[: keys.ASSET_NAME_MAX].decode(errors="ignore")
    for index in range(total):
        pick = index % len(reasons) if interleaved else index * len(reasons) // total
        assert progress.record(failed_result(index, asset or "a", reasons[pick], message))
    status = progress.to_status(NOW)
    assert stored_json_bytes(status) <= STATUS_BYTES
    assert status["phase"] == "Failed" and status["failed"] == total
    assert "failedIndexes" not in status and "succeededIndexes" not in status
    assert len(status.get("failures", ())) <= crd.MAX_FAILURES_LISTED
    assert all("indexes" not in c for c in status.get("failureReasons", ()))
    # The namespace, the collection and the profile at one length: each only adds bytes.
    namespace, collection, profile = "n" * names_length, "c" * names_length, "p" * names_length
    name = keys.new_ulid().lower()
    spec: dict[str, Any] = {
        "collection": collection,
        "profile": profile,
        "version": VERSION,
        "ttlSecondsAfterFinished": 31_536_000,
        "itemsRef": {"name": f"{namespace}/{name}", "sha256": "a" * 64, "count": total},
    }
    job = stored_job(api_metadata(name, namespace, collection), spec, status)
    size = stored_json_bytes(job)
    # The controller's part is bounded whatever the job; the API's by its names.
    ours = controller_part(job)
    assert ours <= CONTROLLER_BYTES, ours
    if names_length <= NAME_LENGTH_FOR_4_KB:
        assert size - ours <= FRAME_BYTES
        assert size <= OBJECT_BUDGET, size
    assert size <= OBJECT_AT_LONGEST_NAMES, size
    event(f"names within {NAME_LENGTH_FOR_4_KB} characters: {names_length <= NAME_LENGTH_FOR_4_KB}")
    # Read back as the next controller would: the counts and conditions it wrote.
    again = JobProgress.from_job(IngestJob.read(job))
    assert again.conditions == progress.conditions


def test_the_measured_frame_of_a_two_thousand_item_job_every_item_failed() -> None:
    """The figure for the record, with the longest names and messages (see the report in
    docs/architecture.md): the status fitted to its budget, and the whole object."""
    progress = JobProgress(total=2000, generation=1)
    progress.mark_dispatched(VERSION, NOW)
    for index in range(2000):
        reason = ITEM_REASONS[index * 3 // 2000]
        assert progress.record(failed_result(index, "<" * 200, reason, "<" * 1024))
    status = progress.to_status(NOW)
    assert stored_json_bytes(status) <= STATUS_BYTES
    # The reasons stay counted even where the examples had to go.
    assert {c["reason"] for c in status["failureReasons"]} == {str(r) for r in ITEM_REASONS[:3]}


def _job(total: int, status: dict[str, Any]) -> IngestJob:
    return IngestJob.read(
        {
            "metadata": {"namespace": "ns", "name": "job", "uid": UID, "generation": 1},
            "spec": {
                "collection": "gallery",
                "version": VERSION,
                "items": [{"source": f"staging/u/{i}.jpg", "asset": "a"} for i in range(total)],
            },
            "status": status,
        }
    )


def test_a_status_written_before_failure_reasons_existed_still_reads() -> None:
    """An older controller's status: 50 failures listed, no counts per reason."""
    listed = [
        {"index": i, "reason": "NotAnImage", "asset": f"{i}.jpg", "message": "x" * 1024}
        for i in range(50)
    ]
    status = {"phase": "Processing", "failed": 60, "failedIndexes": "0-59", "failures": listed}
    job = _job(100, status)
    assert len(job.status.failures) == crd.MAX_FAILURES_LISTED
    progress = JobProgress.from_job(job)
    assert progress.reasons == {"NotAnImage": set(range(crd.MAX_FAILURES_LISTED))}
    assert IngestJobStatus.model_validate(progress.to_status(NOW))


def test_the_write_interval_grows_with_the_job_and_is_capped() -> None:
    assert write_interval(1.0, 1) == 1.0
    assert write_interval(1.0, 200) == 1.0
    assert write_interval(1.0, 1000) == 5.0
    assert write_interval(1.0, 2000) == MAX_INTERVAL
    assert write_interval(1.0, 20_000) == MAX_INTERVAL
    assert write_interval(0.5, 100) == 0.5
    assert write_interval(20.0, 1) == 20.0  # a longer base is never shortened


class RefusingKube(FakeKube):
    """Refuses (422) any status listing failures, as an apiserver refuses one too large."""

    def __init__(self, items: int) -> None:
        super().__init__(items)
        self.refused = 0

    async def patch_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        if status.get("failures"):
            self.refused += 1
            raise Unwritable(f"{namespace}/{name}: 422 Unprocessable Entity")
        return await super().patch_status(namespace, name, uid, status, resource_version)


def test_a_status_the_apiserver_refuses_fails_the_job_and_holds_nothing() -> None:
    asyncio.run(_refused())


async def _refused() -> None:
    kube = RefusingKube(4)
    writer = StatusWriter(cast(Kube, kube), cast(Bus, FakeBus()), 0.001)
    job = await writer.begin_dispatch(IngestJob.read(kube.event()))
    assert await writer.end_dispatch(job, VERSION)
    acks: list[int] = []

    def ack_of(index: int) -> Any:
        async def ack() -> None:
            acks.append(index)

        return ack

    writer.submit(failed_result(0, "0.jpg", FailureReason.NOT_AN_IMAGE, "no"), ack_of(0), None)

    async def acknowledged() -> bool:
        return acks == [0] and writer.held() == 0

    await until("the refused job's result to be acknowledged", acknowledged, 10)
    assert kube.refused >= 1
    status = IngestJobStatus.model_validate(kube.body["status"])
    assert status.phase == "Failed"
    failed = status.condition(crd.ConditionType.FAILED)
    assert failed is not None and failed.status == "True"
    assert failed.reason == FailureReason.STATUS_UNWRITABLE
    assert "422" in failed.message
    # The writer keeps nothing of the job: a late result is acknowledged unread.
    before = copy.deepcopy(kube.body)
    writer.submit(failed_result(1, "1.jpg", FailureReason.NOT_AN_IMAGE, "no"), ack_of(1), None)

    async def late_acknowledged() -> bool:
        return acks == [0, 1]

    await until("the late result to be acknowledged", late_acknowledged, 10)
    assert writer.held() == 0
    assert kube.body == before
    # A restarted controller reads the job as failed as a whole, not to be resumed.
    resumed = JobProgress.from_object(kube.event())
    assert resumed.done
    assert resumed.rejection_reason == FailureReason.STATUS_UNWRITABLE
    await writer.close()
