"""Both lanes' work on the real stack: an item that ran out of deliveries at either lane's
durable is reported as a failed item, and a deleted job's work is purged from either lane
and from the subject work had before the lanes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulsion_contracts import crd, wire
from emulsion_devstack.processes import ProcessRecord


@pytest.mark.parametrize("lane", list(wire.Lane))
def test_work_out_of_deliveries_in_either_lane_fails_its_item(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any, lane: wire.Lane
) -> None:
    name = f"exhausted-{lane}"
    manifest = jobs.manifest(name, 2)
    manifest["spec"]["priority"] = str(lane)
    jobs.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    jobs.wait_phase(name, crd.Phase.QUEUED)

    async def exhaust_first_item() -> None:
        async with streams.session() as js:
            queued = await streams.read_queue(js, jobs.namespace, name)
            assert {msg.subject for msg in queued} == {
                wire.work_subject(jobs.namespace, name, lane)
            }
            # What the server publishes when the lane's durable gives up on a message;
            # the advisories stream keeps it for the controller.
            advisory = {"stream": wire.WORK_STREAM, "stream_seq": queued[0].seq, "deliveries": 5}
            subject = wire.max_deliveries_advisory(wire.WORK_CONSUMERS[lane])
            ack = await js.publish(subject, json.dumps(advisory).encode())
            assert ack.stream == wire.ADVISORIES_STREAM

    run(exhaust_first_item())
    recorded = streams.wait_for(
        f"{name}'s first item to fail",
        lambda: r if (r := jobs.outcomes(name)).failed_set() else None,
        30,
    )
    assert recorded.failed_set() == {0}
    assert recorded.reasons == {"RetriesExhausted": "0"}  # reason: the indexes it failed


def test_a_deleted_jobs_work_is_purged_from_both_lanes_and_the_legacy_subject(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    jobs.create("purged", 3, finalizer=True)
    jobs.wait_phase("purged", crd.Phase.QUEUED)

    async def publish_legacy() -> None:
        # A leftover of a controller from before the lanes, on the four-token subject.
        async with streams.session() as js:
            subject = wire.legacy_work_subject(jobs.namespace, "purged")
            await js.publish(subject, b"{}", headers={wire.HEADER_MSG_ID: "legacy/0"})

    async def queued() -> int:
        async with streams.session() as js:
            legacy = wire.legacy_work_subject(jobs.namespace, "purged")
            info = await js.stream_info(wire.WORK_STREAM, subjects_filter=legacy)
            left = sum((info.state.subjects or {}).values())
            return int(left) + int(await streams.queued_on(js, jobs.namespace, "purged"))

    run(publish_legacy())
    assert run(queued()) == 4
    jobs.delete("purged")
    streams.wait_for("the job to be gone", lambda: jobs.get("purged") is None)
    assert run(queued()) == 0
