"""Item results folded into status, with simulated processors on the real streams."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from emulsion_contracts import crd, indexes, keys, wire
from emulsion_contracts.messages import JobRef, WorkItem
from emulsion_controller.progress import STATUS_BYTES, stored_json_bytes
from emulsion_devstack.processes import ProcessRecord, until

from .conftest import Outcome, succeed


def _upload_id(source: str) -> str:
    """The upload id a staging key holds: what the controller's lease is keyed on."""
    parsed = keys.parse_key(source)
    assert parsed is not None and parsed.upload_id is not None
    return parsed.upload_id


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions", ())}


@pytest.mark.parametrize(
    ("failing", "phase", "complete", "failed"),
    [
        (set(), crd.Phase.SUCCEEDED, "True", "False"),
        # Ran to its end with something to show for it: Complete, not Failed.
        ({1, 3}, crd.Phase.PARTIALLY_FAILED, "True", "False"),
        ({0, 1, 2, 3}, crd.Phase.FAILED, "False", "True"),
    ],
)
def test_results_finish_the_job_in_the_phase_they_add_up_to(
    controller: ProcessRecord,
    jobs: Any,
    streams: Any,
    run: Any,
    failing: set[int],
    phase: crd.Phase,
    complete: str,
    failed: str,
) -> None:
    def outcome(work: WorkItem) -> str | None:
        return "DecompressionBomb" if work.index in failing else None

    async def scenario() -> dict[str, Any]:
        async with streams.processing(outcome):
            await asyncio.to_thread(jobs.create, "four", 4)
            status: dict[str, Any] = await asyncio.to_thread(jobs.wait_phase, "four", phase)
            return status

    status = run(scenario())
    assert status["total"] == 4
    assert status["succeeded"] == 4 - len(failing)
    assert status["failed"] == len(failing)
    assert status["progress"] == "4/4"
    recorded = jobs.outcomes("four")
    assert recorded.failed_set() == failing
    assert recorded.succeeded_set() == {0, 1, 2, 3} - failing
    assert "failedIndexes" not in status and "succeededIndexes" not in status
    # The first failures as examples, as many as the status's byte budget holds.
    listed = [f["index"] for f in status.get("failures", ())]
    assert listed == sorted(failing)[: len(listed)] and (listed or not failing)
    assert {f["reason"] for f in status["failures"]} <= {"DecompressionBomb"}
    assert status["startedAt"] <= status["completedAt"]
    assert status["duration"].endswith("s")
    found = conditions(status)
    assert found[crd.ConditionType.DISPATCHED]["status"] == "True"
    assert found[crd.ConditionType.COMPLETE]["status"] == complete
    assert found[crd.ConditionType.FAILED]["status"] == failed
    assert {c["observedGeneration"] for c in found.values()} == {1}
    assert status["observedGeneration"] == 1

    # A finished job holds no staging upload any more: the janitor may sweep it.
    async def lease() -> Any:
        async with streams.session() as js:
            leases = await js.key_value(wire.STAGING_LEASES_BUCKET)
            job = jobs.get("four")
            source = job["spec"]["items"][0]["source"]
            key = wire.staging_lease_key(_upload_id(source), job["metadata"]["uid"])
            try:
                return await leases.get(key)
            except Exception as error:
                return type(error).__name__

    assert run(lease()) in ("KeyNotFoundError", "KeyDeletedError")


async def processed(
    jobs: Any,
    streams: Any,
    name: str,
    items: int,
    phase: crd.Phase,
    wait: float,
    outcome: Outcome = succeed,
) -> tuple[dict[str, Any], float]:
    """A job of `items` items created and processed until it is in `phase`: its status
    and the seconds that took."""
    async with streams.processing(outcome):
        began = time.monotonic()
        await asyncio.to_thread(jobs.create, name, items)
        status: dict[str, Any] = await asyncio.to_thread(jobs.wait_phase, name, phase, timeout=wait)
        return status, time.monotonic() - began


def test_many_items_take_a_status_write_a_second_not_one_each(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    # 200 items make the point; `make bench-controller` runs thousand-item jobs.
    items = 200
    status, seconds = run(processed(jobs, streams, "many", items, crd.Phase.SUCCEEDED, 120))
    assert status["succeeded"] == items
    assert jobs.outcomes("many").succeeded == f"0-{items - 1}"
    writes = jobs.status_writes("many")
    # One a second at most while running (EMULSION_STATUS_INTERVAL_SECONDS=1), one at the
    # end, and kopf's own bookkeeping: results are folded together, never written one each.
    assert 2 <= len(writes) <= seconds + 4, (len(writes), seconds)
    assert len(writes) <= items // 5, len(writes)


def test_a_redelivered_result_changes_nothing(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any], int]:
        async with streams.processing() as processor:
            await asyncio.to_thread(jobs.create, "again", 3)
            await asyncio.to_thread(jobs.wait_phase, "again", crd.Phase.SUCCEEDED)
        before = await asyncio.to_thread(jobs.get, "again")
        writes = len(await asyncio.to_thread(jobs.status_writes, "again"))
        async with streams.session() as js:
            # The same result, delivered again (as after a lost ack).
            uid = before["metadata"]["uid"]
            assert processor.processed[(uid, 1)] == 1
            work = WorkItem(
                job=JobRef(namespace=jobs.namespace, name="again", uid=uid),
                index=1,
                source=before["spec"]["items"][1]["source"],
                collection="gallery",
                asset="img-1.jpg",
                version=f"{before['spec']['version']}-00001",
            )
            sequence = await processor.__class__(js).report(work, None, None)

            async def consumed() -> bool:
                info = await js.consumer_info(wire.EVENTS_STREAM, wire.CONTROLLER)
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                return bool(floor >= sequence and info.num_ack_pending == 0)

            await until("the duplicate to be acknowledged", consumed)
        after = await asyncio.to_thread(jobs.get, "again")
        return before, after, writes

    before, after, writes = run(scenario())
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"] == before["status"]
    assert len(jobs.status_writes("again")) == writes


def test_a_job_of_two_thousand_failed_items_keeps_a_small_status_written_few_times(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any, stack: Any
) -> None:
    """On the real apiserver and etcd: every item of a 2,000-item job fails (three reasons,
    interleaved); status counts them all per reason (the outcome record says which),
    lists examples, stays within its budget as etcd stores it, and is written at most once
    per 10 s while running."""
    items = crd.MAX_ITEMS
    reasons = ["DecompressionBomb", "NotAnImage", "CorruptImage"]

    def outcome(work: WorkItem) -> str | None:
        return reasons[work.index % len(reasons)]

    scenario = processed(jobs, streams, "thousands", items, crd.Phase.FAILED, 300, outcome)
    status, seconds = run(scenario)
    assert status["failed"] == items
    assert 1 <= len(status["failures"]) <= crd.MAX_FAILURES_LISTED
    counted = {c["reason"]: c for c in status["failureReasons"]}
    assert {r: c["count"] for r, c in counted.items()} == {
        r: len(range(i, items, len(reasons))) for i, r in enumerate(reasons)
    }
    assert all("indexes" not in c for c in counted.values())
    recorded = jobs.outcomes("thousands")
    assert recorded.failed == f"0-{items - 1}"
    assert indexes.expand(recorded.reasons["NotAnImage"]) == set(range(1, items, 3))
    owned = {k: v for k, v in status.items() if k != "kopf"}
    # Before the status was bounded, interleaved reasons' index ranges made it 11,128 bytes.
    assert stored_json_bytes(owned) <= STATUS_BYTES
    writes = jobs.status_writes("thousands")
    assert len(writes) <= seconds / 10 + 6, (len(writes), seconds)
