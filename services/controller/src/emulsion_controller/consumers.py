"""The controller's two durable consumers: item results, and work that ran out of retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from emulsion_contracts import messaging
from emulsion_contracts.messages import ItemResult, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.bus import Bus
from emulsion_controller.tracker import StatusWriter

log = logging.getLogger(__name__)

BATCH = 256
RETRY_DELAY = 1.0
EXHAUSTED_CHANNEL = "exhausted"
CONSUMER_CHECK_INTERVAL = 5.0


class ConsumerGone(RuntimeError):
    """The durable consumer (or its stream) no longer exists: this loop can never fold
    anything again. Not retried: the process ends, and its restart recreates the durable
    (`ensure_jetstream` at start-up)."""


async def _pull_forever(
    bus: Bus,
    stream: str,
    durable: str,
    handle: Callable[[Msg], Awaitable[None]],
    stopping: asyncio.Event,
) -> None:
    subscription = await bus.js.pull_subscribe_bind(durable=durable, stream=stream)
    checked = time.monotonic()
    while not stopping.is_set():
        try:
            batch = await subscription.fetch(BATCH, timeout=1.0)
        except TimeoutError:  # nothing to fetch (nats' own TimeoutError is a subclass)
            # A deleted durable looks just like an idle one to a pull (nats-py skips the
            # server's 409 "Consumer Deleted"), so an idle loop asks now and then.
            if time.monotonic() - checked > CONSUMER_CHECK_INTERVAL:
                checked = time.monotonic()
                await _check_consumer(bus, stream, durable)
            continue
        except Exception:
            await _check_consumer(bus, stream, durable)
            # NATS away (it reconnects by itself) or a server hiccup: retry, never give up.
            log.exception("fetching from %s failed; retrying", durable)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RETRY_DELAY)
            continue
        for msg in batch:
            try:
                await handle(msg)
            except Exception:
                # Left unacknowledged: JetStream delivers it again after ack_wait.
                log.exception("could not handle a message", extra={"subject": msg.subject})


async def _check_consumer(bus: Bus, stream: str, durable: str) -> None:
    """Raise ConsumerGone if the server says the durable is gone; anything else may pass."""
    try:
        await bus.js.consumer_info(stream, durable)
    except NotFoundError as error:
        raise ConsumerGone(f"durable consumer {durable} of stream {stream} is gone") from error
    except Exception:
        return  # cannot tell now (NATS away): the fetch is simply retried


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

    await _pull_forever(bus, messaging.EVENTS_STREAM, messaging.CONTROLLER, handle, stopping)


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
            work_msg = await bus.js.get_msg(messaging.WORK_STREAM, sequence)
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
                await bus.js.delete_msg(messaging.WORK_STREAM, sequence)
            await msg.ack()

        writer.submit(result, settle, work_msg.headers, EXHAUSTED_CHANNEL)

    await _pull_forever(
        bus, messaging.ADVISORIES_STREAM, messaging.CONTROLLER_ADVISORIES, handle, stopping
    )
