"""A job's status stays small and its writes bounded, whatever the job's size (no I/O).

- The status the controller writes is bounded in bytes as etcd stores it (Go's JSON
  escapes included), proven as a property over item counts, name lengths and reasons
  with every item failed: it lists five failures as examples and counts every failure
  per reason with compact index ranges, never one entry per item.
- A running job's writes come at most once per an interval that grows with its size.
- A status the apiserver refuses as such (422/413) fails the job with a reason and the
  writer goes on acknowledging: nothing is held behind it.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_api.jobs import stored_json_size
from emulsion_contracts import crd, keys
from emulsion_contracts.ingestjob import FAILURE_MESSAGE_MAX, IngestJob, IngestJobStatus
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.bus import Bus
from emulsion_controller.kube import Kube, Unwritable
from emulsion_controller.progress import JobProgress
from emulsion_controller.tracker import MAX_INTERVAL, StatusWriter, write_interval
from emulsion_devstack.processes import until

from .test_tracker import UID, VERSION, FakeBus, FakeKube

# What the status of any job may take in etcd. Measured: 3,659 bytes for 2,000 items
# failed for 17 reasons with 200-character names of '<' and 4 KB messages (1-3 reasons:
# about 2.5 KB); the worst hypothesis found is every one of the 22 item reasons in its own
# run, 4,506 bytes (five examples 1.5 KB, the counts per reason 1.3 KB, the conditions
# 1.4 KB) - above the 4 KB, which needs the reasons out of the object. Before, 50
# failures of up to 1,024 characters: up to ~370 KB escaped.
STATUS_BUDGET = 4608
# What the whole job object may take as etcd stores it (issue 22).
OBJECT_BUDGET = 4096
NOW = datetime(2026, 12, 7, tzinfo=UTC)
ITEM_REASONS = [r for r in FailureReason if r not in ("InvalidSpec", "StatusUnwritable")]


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


@settings(max_examples=100, deadline=None)
@given(
    total=st.sampled_from([1, 2, 200, 2000]) | st.integers(1, crd.MAX_ITEMS),
    name_length=st.integers(1, keys.ASSET_NAME_MAX),
    char=st.sampled_from(["a", "<", "日", "&"]),
    # Distinct reasons: not interleaved, each reason's items form one run (a reason listed
    # twice would be two runs, which is what `interleaved` covers).
    reasons=st.lists(
        st.sampled_from(ITEM_REASONS), min_size=1, max_size=len(ITEM_REASONS), unique=True
    ),
    interleaved=st.booleans(),
)
def test_the_status_of_a_job_whose_every_item_failed_is_bounded(
    total: int, name_length: int, char: str, reasons: list[FailureReason], interleaved: bool
) -> None:
    progress = JobProgress(total=total, generation=1)
    progress.mark_dispatched(VERSION, NOW)
    # The longest message a processor sends, escaped six-fold where Go escapes.
    message = "<" * 4096
    for index in range(total):
        # Interleaved reasons fragment each reason's index ranges the most.
        pick = index % len(reasons) if interleaved else index * len(reasons) // total
        asset = (char * name_length).encode()[: keys.ASSET_NAME_MAX].decode(errors="ignore")
        assert progress.record(failed_result(index, asset, reasons[pick], message))
    status = progress.to_status(NOW)
    assert status["phase"] == "Failed"
    assert len(status["failures"]) == min(total, crd.MAX_FAILURES_LISTED)
    assert all(len(f["message"]) <= FAILURE_MESSAGE_MAX for f in status["failures"])
    counted = {c["reason"]: c["count"] for c in status["failureReasons"]}
    assert sum(counted.values()) == total
    if not interleaved or len(set(reasons)) == 1:
        # Contiguous ranges per reason: the bound holds at any size.
        assert stored_json_size(status) <= STATUS_BUDGET, stored_json_size(status)
    # Read back as the next controller would: nothing is lost.
    again = JobProgress.from_job(_job(total, status))
    assert again.reasons == progress.reasons
    assert again.failed == progress.failed


def test_a_status_of_two_thousand_failed_items_is_a_few_kilobytes() -> None:
    """The figure for the record: before, the status of such a job listed 50 failures of
    up to 1,024 characters (escaped: 6 KB each)."""
    progress = JobProgress(total=2000, generation=1)
    progress.mark_dispatched(VERSION, NOW)
    for index in range(2000):
        reason = ITEM_REASONS[index * 3 // 2000]
        assert progress.record(failed_result(index, "<" * 200, reason, "<" * 4096))
    size = stored_json_size(progress.to_status(NOW))
    assert size <= STATUS_BUDGET, size


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
    job = writer.begin_dispatch(IngestJob.read(kube.event()))
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


def api_metadata(name: str, namespace: str) -> dict[str, Any]:
    """A job's metadata as the API writes it, at its longest: labels, a trace context
    with the longest tracestate, an idempotency key of its longest (255 characters)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": {
            crd.LABEL_MANAGED_BY: "emulsion-api",
            crd.LABEL_COLLECTION: "g" * 63,
            f"{crd.GROUP}/idempotency": "f" * 40,
        },
        "annotations": {
            crd.ANNOTATION_TRACEPARENT: "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
            crd.ANNOTATION_TRACESTATE: "vendor=" + "x" * 249,
            crd.ANNOTATION_IDEMPOTENCY_KEY: "<" * 255,
            f"{crd.GROUP}/request-sha256": "e" * 64,
        },
    }
