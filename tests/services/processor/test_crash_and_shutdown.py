"""A processor killed mid-item, or asked to stop, loses nothing.

Each test starts its own processor process (none other is running in this module), gives
it a deliberately slow item — a full-resolution decode and a 4000x4000 PNG style — and
acts while `emulsion_processor_in_flight` says the item is in hand.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path
from typing import Any

from PIL import Image

from emulsion_contracts import wire
from emulsion_contracts.messages import StyleSpec, WorkItem
from emulsion_devstack.processes import ProcessRecord
from emulsion_devstack.stack import Endpoints, LocalStack
from tests.consumers import redelivered_after

from .conftest import Bus, metric, object_keys, running_processor, stage, wait_for, work_item

SLOW_STYLES = (StyleSpec(name="poster", width=4000, height=4000, fit="crop", format="png"),)


def slow_item(stack: Endpoints, s3: Any) -> WorkItem:
    buffer = io.BytesIO()
    Image.effect_noise((2000, 2000), 80).convert("RGB").save(buffer, "JPEG", quality=95)
    return work_item(stage(s3, stack.bucket, buffer.getvalue()), styles=SLOW_STYLES)


def wait_in_hand(record: ProcessRecord) -> None:
    url = LocalStack.service_url(record)
    wait_for("the item to be in hand", lambda: metric(url, "emulsion_processor_in_flight") >= 1)


def exit_status(record: ProcessRecord) -> int:
    # The stack spawned it from this process, so it is our child to wait for.
    _, status = os.waitpid(record.pid, 0)
    return os.waitstatus_to_exitcode(status)


def sigterm_with_the_item_in_hand(
    local_stack: LocalStack, with_bus: Any, item: WorkItem, drain_seconds: str
) -> None:
    """Publish `item` to a processor of its own (drain time `drain_seconds`), send it
    SIGTERM while the item is in hand, and see it exit cleanly."""

    async def publish(bus: Bus) -> None:
        await bus.publish_work(item)

    with running_processor(local_stack, EMULSION_DRAIN_SECONDS=drain_seconds) as record:
        with_bus(publish)
        wait_in_hand(record)
        os.killpg(record.pid, signal.SIGTERM)
        assert exit_status(record) == 0


def test_a_worker_killed_mid_item_has_it_redelivered_and_completed(
    stack: Endpoints, s3: Any, with_bus: Any, local_stack: LocalStack
) -> None:
    item = slow_item(stack, s3)
    scratch = Path(stack.data_dir) / "scratch"

    async def publish(bus: Bus) -> None:
        await bus.publish_work(item)

    with running_processor(local_stack) as doomed:
        with_bus(publish)
        wait_in_hand(doomed)
        os.killpg(doomed.pid, signal.SIGKILL)
        assert exit_status(doomed) == -signal.SIGKILL
    leftovers = scratch / f"proc-{doomed.pid}"
    assert leftovers.exists()  # a crash cannot clean up after itself...

    async def no_result_yet(bus: Bus) -> int:
        return len(await bus.results(item))

    assert with_bus(no_result_yet) == 0
    # Heartbeats well inside the shortened redelivery wait below, so the item is not taken
    # from the next worker while it works on it.
    with running_processor(local_stack, EMULSION_HEARTBEAT_SECONDS="0.5") as successor:
        assert not leftovers.exists()  # ...so the next worker does
        # JetStream redelivers the dead worker's item after the durable's AckWait (30 s);
        # what is tested is that it is redelivered and completed, not the 30 s.
        with redelivered_after(stack, wire.PROCESSORS, seconds=1):
            wait_in_hand(successor)

        async def redelivered(bus: Bus) -> Any:
            return await bus.result(item, within=120)

        result = with_bus(redelivered)
    assert (result.outcome, result.committed, result.attempts) == ("succeeded", True, 2)
    assert [(d.style, d.width, d.height) for d in result.outputs] == [("poster", 4000, 4000)]
    assert len(object_keys(s3, stack.bucket, f"derivatives/{item.collection}/")) == 1


def test_sigterm_finishes_the_item_in_hand_and_exits_cleanly(
    stack: Endpoints, s3: Any, with_bus: Any, local_stack: LocalStack
) -> None:
    item = slow_item(stack, s3)
    # Drain time to spare: on a busy machine the slow item may need longer than the default.
    sigterm_with_the_item_in_hand(local_stack, with_bus, item, drain_seconds="120")

    async def finished(bus: Bus) -> Any:
        results = await bus.results(item)
        assert await bus.pending_work() == 0
        return results

    results = with_bus(finished)
    assert [(r.outcome, r.attempts) for r in results] == [("succeeded", 1)]


def test_sigterm_past_the_drain_time_hands_the_item_back(
    stack: Endpoints, s3: Any, with_bus: Any, local_stack: LocalStack
) -> None:
    item = slow_item(stack, s3)
    sigterm_with_the_item_in_hand(local_stack, with_bus, item, drain_seconds="0")

    async def nothing_yet(bus: Bus) -> int:
        return len(await bus.results(item))

    assert with_bus(nothing_yet) == 0
    with running_processor(local_stack):

        async def taken_over(bus: Bus) -> Any:
            return await bus.result(item, within=60)

        result = with_bus(taken_over)
    assert (result.outcome, result.attempts) == ("succeeded", 2)
