"""The controller's two durable consumers: item results, and work that ran out of retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from emulsion_contracts import wire
from emulsion_contracts.messages import ItemResult, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.jetstream import Bus
from emulsion_controller.status_writer import StatusWriter
from emulsion_runtime.consuming import PullLoop

log = logging.getLogger(__name__)

BATCH = 256
EXHAUSTED_CHANNEL = "exhausted"


async def consume_results(bus: Bus, writer: StatusWriter, stopping: asyncio.Event) -> None:
    async def handle(msg: Msg) -> None:
        try:
            result = ItemResult.model_validate_json(msg.data)
        except ValidationError as error:
            # Can never be folded; redelivering it would only repeat this line forever.
            log.error("rejected a malformed item result: %s", error, extra={"subject": msg.subject})
            await msg.term()
            return
        writer.submit(result, msg.ack, msg.headers)

    # Ends only with `stopping`, or with ConsumerGone: then liveness fails and the process exits.
    loop = PullLoop(bus.js, wire.EVENTS_STREAM, wire.CONTROLLER, handle, room=BATCH)
    await loop.run(stopping)


async def consume_exhausted(bus: Bus, writer: StatusWriter, stopping: asyncio.Event) -> None:
    """Fold each work message that ran out of deliveries as a failed item."""

    async def handle(msg: Msg) -> None:
        try:
            advisory = json.loads(msg.data)
            sequence = int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", 0))
        except (ValueError, KeyError, TypeError) as error:
            log.error("rejected a malformed advisory: %s", error)
            await msg.term()
            return
        try:
            work_msg = await bus.js.get_msg(wire.WORK_STREAM, sequence)
        except NotFoundError:
            # Purged with a cancelled job, or aged out: nothing is left to report.
            log.warning("work message %d of an advisory is gone", sequence)
            await msg.ack()
            return
        try:
            work = WorkItem.model_validate_json(work_msg.data or b"{}")
        except ValidationError as error:
            # Not ours to fold (no job to report it to); a redelivery would not change that.
            log.error("work message %d is not a work item: %s", sequence, error)
            await msg.term()
            return
        result = ItemResult.failed(
            work,
            FailureReason.RETRIES_EXHAUSTED,
            f"gave up after {deliveries} deliveries",
            deliveries,
        )

        async def settle() -> None:
            # Only once the failure is in the job's status may the work message go.
            with contextlib.suppress(NotFoundError):
                await bus.js.delete_msg(wire.WORK_STREAM, sequence)
            await msg.ack()

        writer.submit(result, settle, work_msg.headers, EXHAUSTED_CHANNEL)

    durable = wire.CONTROLLER_ADVISORIES
    await PullLoop(bus.js, wire.ADVISORIES_STREAM, durable, handle, room=BATCH).run(stopping)
