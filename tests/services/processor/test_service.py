"""The processor as a real process (`python -m emulsion_processor`) behind the real
`processors` durable: work published as the controller publishes it, results read from
the events stream as the controller reads them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from emulsion_contracts import keys, wire
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_devstack.processes import ProcessRecord, until
from emulsion_devstack.stack import Endpoints, LocalStack

from .conftest import NAMESPACE, Bus, jpeg, object_keys, running_processor, stage, work_item

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def processor(local_stack: LocalStack) -> Iterator[ProcessRecord]:
    with running_processor(local_stack) as record:
        yield record


def test_good_and_bad_items_each_get_a_result_and_the_worker_keeps_going(
    stack: Endpoints, s3: Any, with_bus: Any, processor: ProcessRecord
) -> None:
    good = work_item(stage(s3, stack.bucket, jpeg(1600, 1200)))
    text = work_item(stage(s3, stack.bucket, b"plain text, not a photo\n", "fake.jpg"))
    empty = work_item(stage(s3, stack.bucket, b"", "empty.jpg"))
    after = work_item(stage(s3, stack.bucket, jpeg(640, 480)))

    async def body(bus: Bus) -> None:
        for item in (good, text, empty, after):
            await bus.publish_work(item)
        results = {item.job.name: await bus.result(item) for item in (good, text, empty, after)}
        assert (results[good.job.name].outcome, results[good.job.name].committed) == (
            "succeeded",
            True,
        )
        assert {d.style: (d.width, d.height) for d in results[good.job.name].outputs}["large"] == (
            800,
            600,
        )
        assert (results[text.job.name].outcome, results[text.job.name].reason) == (
            "failed",
            "NotAnImage",
        )
        assert results[empty.job.name].reason == "EmptyFile"
        assert results[after.job.name].outcome == "succeeded"

        # A result is published before its work message is acknowledged, so the last ack
        # may reach the server just after the result reached this test: wait for it, well
        # within the work's ack wait (an unacknowledged item would still be pending then).
        async def all_acknowledged() -> bool:
            return await bus.pending_work() == 0

        await until("every work message acknowledged", all_acknowledged, within=10)

    with_bus(body)
    manifest = keys.manifest_key(good.collection, good.asset)
    assert s3.head_object(Bucket=stack.bucket, Key=manifest)
    assert len(object_keys(s3, stack.bucket, f"derivatives/{good.collection}/")) == 5


def test_the_trace_continues_from_the_work_message_to_the_result(
    stack: Endpoints, s3: Any, with_bus: Any, processor: ProcessRecord
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(300, 300)))
    subject = wire.events_subject(item.job.namespace, item.job.name)

    async def body(bus: Bus) -> dict[str, str]:
        headers = {
            wire.HEADER_MSG_ID: wire.work_msg_id(item.job.uid, item.index),
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        }
        await bus.publish_signed(
            wire.work_subject(item.job.namespace, item.job.name), item.to_bytes(), headers
        )
        await bus.result(item)
        stored = await bus.js.get_last_msg(wire.EVENTS_STREAM, subject)
        return dict(stored.headers or {})

    headers = with_bus(body)
    assert headers[wire.HEADER_MSG_ID] == f"{item.job.uid}/0/result"
    assert headers["traceparent"].split("-")[1] == TRACE_ID
    assert headers["traceparent"].split("-")[2] != "00f067aa0ba902b7"  # a processor span


def test_a_duplicate_delivery_stores_one_result_and_rewrites_nothing(
    stack: Endpoints, s3: Any, with_bus: Any, processor: ProcessRecord
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(1024, 768)))

    async def body(bus: Bus) -> None:
        await bus.publish_work(item)
        first = await bus.result(item)
        written = {
            k: s3.head_object(Bucket=stack.bucket, Key=k)["ETag"]
            for k in object_keys(s3, stack.bucket, f"derivatives/{item.collection}/")
        }
        # Past the dedup window, the same item comes again under another message id.
        await bus.publish_work(item, msg_id=f"{item.job.uid}/{item.index}/again")
        await wait_until_consumed(bus)
        results = await bus.results(item)
        assert len(results) == 1 and results[0] == first
        again = {
            k: s3.head_object(Bucket=stack.bucket, Key=k)["ETag"]
            for k in object_keys(s3, stack.bucket, f"derivatives/{item.collection}/")
        }
        assert again == written

    with_bus(body)
    prefix = f"originals/{item.collection}/{item.asset}/"
    assert len(object_keys(s3, stack.bucket, prefix)) == 1


async def wait_until_consumed(bus: Bus, within: float = 60.0) -> None:
    async def consumed() -> bool:
        return await bus.pending_work() == 0

    await until("every work item to be consumed", consumed, within)


@pytest.mark.parametrize("job_name", ["job-plain", "job.with.dots"])
def test_a_work_message_of_an_unknown_version_fails_its_item_as_invalid_message(
    stack: Endpoints, s3: Any, with_bus: Any, processor: ProcessRecord, job_name: str
) -> None:
    readable = work_item(stage(s3, stack.bucket, jpeg(10, 10)), index=7)
    item = readable.model_copy(
        update={"job": JobRef(namespace=NAMESPACE, name=job_name, uid=str(uuid.uuid4()))}
    )
    body = json.loads(item.to_bytes())
    body["v"] = 99

    async def scenario(bus: Bus) -> ItemResult:
        # Signed: a newer controller's message, which this processor trusts but cannot read.
        await bus.publish_signed(
            wire.work_subject(item.job.namespace, item.job.name),
            json.dumps(body).encode(),
            {wire.HEADER_MSG_ID: wire.work_msg_id(item.job.uid, item.index)},
        )
        result = await bus.result(item)
        await wait_until_consumed(bus)
        return result

    result = with_bus(scenario)
    assert (result.job, result.index, result.outcome, result.reason) == (
        item.job,
        7,
        "failed",
        "InvalidMessage",
    )
    assert (result.collection, result.asset, result.version) == (None, None, None)
    assert "v" in (result.message or "")


def test_an_unaddressable_work_message_is_terminated_and_the_worker_keeps_going(
    stack: Endpoints, s3: Any, with_bus: Any, processor: ProcessRecord
) -> None:
    after = work_item(stage(s3, stack.bucket, jpeg(10, 10)))

    async def scenario(bus: Bus) -> ItemResult:
        # Signed, so it gets past the signature check to the parsing this test is about.
        await bus.publish_signed(wire.work_subject(NAMESPACE, "no-id"), b"not json")
        await bus.publish_work(after)
        result = await bus.result(after)
        await wait_until_consumed(bus)
        return result

    assert with_bus(scenario).outcome == "succeeded"


def test_work_in_either_lane_or_on_the_subject_before_the_lanes_is_processed(
    stack: Endpoints, s3: Any, with_bus: Any, processor: ProcessRecord
) -> None:
    interactive = work_item(stage(s3, stack.bucket, jpeg(20, 20)))
    bulk = work_item(stage(s3, stack.bucket, jpeg(20, 20)))
    legacy = work_item(stage(s3, stack.bucket, jpeg(20, 20)))

    async def scenario(bus: Bus) -> list[ItemResult]:
        await bus.publish_work(interactive, lane=wire.Lane.INTERACTIVE)
        await bus.publish_work(bulk, lane=wire.Lane.BULK)
        # As a controller from before the lanes published it (still queued at an upgrade).
        await bus.publish_signed(
            wire.legacy_work_subject(legacy.job.namespace, legacy.job.name),
            legacy.to_bytes(),
            {wire.HEADER_MSG_ID: wire.work_msg_id(legacy.job.uid, legacy.index)},
        )
        results = [await bus.result(item) for item in (interactive, bulk, legacy)]
        await wait_until_consumed(bus)
        return results

    assert [result.outcome for result in with_bus(scenario)] == ["succeeded"] * 3
