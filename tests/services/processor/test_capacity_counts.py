"""The capacity model's processor figures are what the processor does: a new photo in
the default profile, processed on the real stack, makes exactly the S3 requests and the
NATS operations `emulsion_bench.capacity` counts for it (docs/capacity.md)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from emulsion_bench import capacity
from emulsion_contracts.messages import ItemResult
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.stack import Endpoints
from emulsion_processor.cancelled import CancelledJobs
from emulsion_processor.delivery import Delivery
from tests.counting import S3_CLASS, Counting

from .conftest import Bus, in_process_worker, jpeg, stage, work_item


def test_a_new_photo_costs_the_processor_what_the_model_counts(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(1200, 900)))
    s3_calls: Counter[str] = Counter()
    nats_calls: Counter[str] = Counter()
    # The message is delivered as the work durable delivers it, from a stream of the
    # test's own (the shared durable's other tests' items stay out of the count).
    stream, subject = f"CAPACITY_{uuid.uuid4().hex}", f"capacity-test.{uuid.uuid4().hex}"

    async def body(bus: Bus) -> ItemResult:
        await bus.js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        await bus.js.add_consumer(
            stream,
            ConsumerConfig(durable_name="capacity", ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
        )
        await bus.publish_signed(subject, item.to_bytes())
        subscription = await bus.js.pull_subscribe_bind(durable="capacity", stream=stream)
        (message,) = await subscription.fetch(1, timeout=10)
        counted = Bus(
            bus.connection,
            Counting(bus.js, {"publish": "publish"}, nats_calls),  # type: ignore[arg-type]
            Counting(bus.cancelled, {"get": "kv"}, nats_calls),  # type: ignore[arg-type]
            bus.signing_key,
        )
        acks = {name: "ack" for name in ("ack", "ack_sync", "nak", "term", "in_progress")}
        # As the service runs it: the watch of EMULSION_CANCELLED answers the check before
        # the work, and only the check guarding the commit reads the bucket.
        watch = CancelledJobs(bus.cancelled)
        watch.start()
        try:
            await asyncio.wait_for(watch.caught_up.wait(), 30)
            with in_process_worker(
                stack, Counting(s3, S3_CLASS, s3_calls), counted, tmp_path
            ) as worker:
                worker.cancelled_jobs = watch
                await Delivery(worker).handle(Counting(message, acks, nats_calls))  # type: ignore[arg-type]
        finally:
            await watch.stop()
        await subscription.unsubscribe()
        await bus.js.delete_stream(stream)
        return await bus.result(item)

    result = with_bus(body)
    assert result.committed
    assert dict(s3_calls) == capacity.processor_s3(len(DEFAULT_PROFILE.styles))
    assert dict(nats_calls) == capacity.PROCESSOR_NATS
