"""Every item ends with exactly one outcome, even when its result never arrives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from emulsion_contracts import crd, wire
from emulsion_contracts.messages import ItemResult, JobRef, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_devstack.processes import ProcessRecord

# Items without a result for 2 s (and no work message left) are reconciled.
RECONCILE = {
    "EMULSION_RESULT_DEADLINE_SECONDS": "2",
    "EMULSION_RECONCILE_INTERVAL_SECONDS": "0.5",
    "EMULSION_REDISPATCH_ROUNDS": "2",
}


def test_a_lost_result_is_redispatched_and_the_job_succeeds(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    controllers.start(RECONCILE)
    lost = {1, 3}
    seen: set[tuple[str, int]] = set()

    def outcome(work: WorkItem) -> str | None:
        key = (work.job.uid, work.index)
        if work.job.namespace == jobs.namespace and work.index in lost and key not in seen:
            seen.add(key)
            return "drop"  # the work is taken, its result never published
        return None

    async def scenario() -> tuple[dict[str, Any], Any, str]:
        async with streams.processing(outcome) as processor:
            body = await asyncio.to_thread(jobs.create, "lossy", 5)
            status = await asyncio.to_thread(jobs.wait_phase, "lossy", crd.Phase.SUCCEEDED)
            return status, processor, str(body["metadata"]["uid"])

    status, processor, uid = run(scenario())
    # (Other tests' leftover jobs may be reconciled meanwhile: only this job counts.)
    assert ours(processor.dropped, uid) == {index: 1 for index in lost}
    # Re-dispatched once each, processed once each; nothing else was done twice.
    assert ours(processor.processed, uid) == {index: 1 for index in range(5)}
    assert jobs.outcomes("lossy").succeeded == "0-4"
    assert status["failed"] == 0


def test_a_result_lost_every_time_fails_its_item_with_a_reason(
    controllers: Any, jobs: Any, streams: Any, run: Any
) -> None:
    controllers.start(RECONCILE)

    def outcome(work: WorkItem) -> str | None:
        return "drop" if work.job.namespace == jobs.namespace and work.index == 2 else None

    async def scenario() -> tuple[dict[str, Any], Any, str]:
        async with streams.processing(outcome) as processor:
            body = await asyncio.to_thread(jobs.create, "hopeless", 4)
            status = await asyncio.to_thread(
                jobs.wait_phase, "hopeless", crd.Phase.PARTIALLY_FAILED
            )
            return status, processor, str(body["metadata"]["uid"])

    status, processor, uid = run(scenario())
    # Dispatched, then re-dispatched twice (the budget), then given up on.
    assert ours(processor.dropped, uid) == {2: 3}
    recorded = jobs.outcomes("hopeless")
    assert (recorded.succeeded_set(), recorded.failed_set()) == ({0, 1, 3}, {2})
    assert recorded.reasons == {"ResultLost": "2"}
    assert [(f["index"], f["reason"]) for f in status["failures"]] == [(2, "ResultLost")]


def ours(counts: Any, uid: str) -> dict[int, int]:
    return {index: n for (job, index), n in counts.items() if job == uid}


def test_a_result_without_collection_asset_or_version_is_folded_by_job_and_index(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    body = jobs.create("unreadable", 2)
    jobs.wait_phase("unreadable", crd.Phase.QUEUED)
    job = JobRef(namespace=jobs.namespace, name="unreadable", uid=body["metadata"]["uid"])

    async def report() -> None:
        async with streams.session() as js:
            for result in (
                ItemResult(job=job, index=0, outcome="succeeded", finished_at=datetime.now(UTC)),
                # Contract 3: a work message whose body could not be read.
                ItemResult(
                    job=job,
                    index=1,
                    outcome="failed",
                    reason=FailureReason.INVALID_MESSAGE,
                    message="work message body is not JSON",
                    finished_at=datetime.now(UTC),
                ),
            ):
                await js.publish(
                    wire.events_subject(jobs.namespace, "unreadable"), result.to_bytes()
                )

    run(report())
    status = jobs.wait_phase("unreadable", crd.Phase.PARTIALLY_FAILED)
    assert jobs.outcomes("unreadable").succeeded == "0"
    assert status["failures"] == [
        {"index": 1, "reason": "InvalidMessage", "message": "work message body is not JSON"}
    ]
