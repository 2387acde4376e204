"""The capacity model's janitor figures are what the janitor does: a promoted upload's GC
request, carried out on the real stack, makes exactly the S3 requests and the NATS
operations `emulsion_bench.capacity` counts for it (docs/capacity.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulsion_bench import capacity
from emulsion_contracts import keys, wire
from emulsion_contracts.messages import GcRequest
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.consumer import GcConsumer
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.settings import JanitorSettings
from tests.counting import S3_CLASS, Counting

from .conftest import Layout, connected


def test_a_promoted_upload_costs_the_janitor_what_the_model_counts(
    stack: Endpoints,
    s3: Any,
    layout: Layout,
    settings_for: Callable[..., JanitorSettings],
    run: Any,
) -> None:
    upload_id = keys.new_ulid()
    upload = layout.put(keys.staging_key("capacity", upload_id, "IMG_0001.jpg"))
    s3_calls: Counter[str] = Counter()
    nats_calls: Counter[str] = Counter()

    async def scenario() -> int:
        async with connected(stack) as bus:
            # The job that promoted it has finished: its lease was put, then released.
            await bus.lease(upload_id)
            await bus.release(upload_id)
            kv = await bus.js.key_value(wire.STAGING_LEASES_BUCKET)
            leases = KvLeases(
                Counting(bus.js, {"stream_info": "stream info"}, nats_calls),  # type: ignore[arg-type]
                Counting(kv, {"get": "kv"}, nats_calls),  # type: ignore[arg-type]
            )
            counted_s3 = Counting(s3, S3_CLASS, s3_calls)
            consumer = GcConsumer(
                bus.js, counted_s3, Deleter(counted_s3, leases, settings_for(), "gc")
            )
            request = GcRequest(
                reason="promoted",
                keys=(upload,),
                not_before=datetime.now(UTC),
                collection="capacity",
                asset="IMG_0001.jpg",
            )
            # One key: no progress to report on a message (`msg` unused).
            report = await consumer.carry_out(request, None)  # type: ignore[arg-type]
            return report.deleted

    assert run(scenario()) == 1
    assert not layout.exists(upload)
    assert dict(s3_calls) == capacity.JANITOR_S3
    assert dict(nats_calls) == capacity.JANITOR_NATS
