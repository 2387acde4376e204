"""A storage outage is waited out: no item in hand fails, and no delivery is spent on it.

MinIO is stopped for real (connections refused at once, as with a crashed or
restarting server), for several times the retry budget the processor used to have.
"""

from __future__ import annotations

import time
from typing import Any

from emulsion_contracts.messages import ItemResult
from emulsion_devstack.stack import Endpoints, LocalStack

from .conftest import Bus, jpeg, metric, running_processor, stage, wait_for, work_item

# The processor's retry schedule, scaled down so the outage below takes seconds: what is
# asserted is in units of that schedule, so it holds at any scale.
BASE_DELAY = 0.05
MAX_DELAY = 4 * BASE_DELAY
# The nak schedule the processor used to ask for before an item was RetriesExhausted:
# base, 2x, 4x and 8x the base delay, one delivery each, out of five. (The durable's
# backoff actually stretched it: a nak's delay only counts for the first redelivery.)
# What is asserted below holds for any outage length up to the outage budget: waiting
# in-process spends no delivery at all.
OLD_BUDGET = BASE_DELAY * (1 + 2 + 4 + 8)
IN_HAND = 4


def test_a_minio_outage_several_times_the_old_budget_loses_no_item(
    stack: Endpoints, s3: Any, with_bus: Any, local_stack: LocalStack
) -> None:
    items = [work_item(stage(s3, stack.bucket, jpeg(320, 240))) for _ in range(12)]

    async def publish(bus: Bus) -> None:
        for item in items:
            await bus.publish_work(item)

    async def results(bus: Bus) -> list[ItemResult]:
        found = [await bus.result(item, within=120) for item in items]
        assert await bus.pending_work() == 0
        return found

    with running_processor(
        local_stack,
        EMULSION_RETRY_DELAY_SECONDS=str(BASE_DELAY),
        EMULSION_RETRY_MAX_DELAY_SECONDS=str(MAX_DELAY),
        EMULSION_MAX_IN_FLIGHT=str(IN_HAND),
    ) as record:
        url = LocalStack.service_url(record)
        local_stack.stop("minio")
        try:
            began = time.monotonic()
            with_bus(publish)
            # Every item in hand refused again and again: five times the old budget.
            wait_for(
                "the items in hand to be refused through several old budgets",
                lambda: metric(url, "emulsion_processor_transient_retries_total") >= IN_HAND * 20,
                timeout=120,
            )
            outage = time.monotonic() - began
        finally:
            local_stack.start("minio")
        found = with_bus(results)
    assert outage > 4 * OLD_BUDGET
    assert [(r.outcome, r.committed) for r in found] == [("succeeded", True)] * len(items)
    # Waiting out the outage spent no delivery: every item finished on its first.
    assert {r.attempts for r in found} == {1}
