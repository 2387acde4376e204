"""A work message's delivery, from receipt to its ack, nak, term or hand-back.

The order is what makes redelivery safe: the signature is checked before the body is
read; the item's result is published (and stored by JetStream) before the message is
acknowledged, so an item that loses its ack comes back and publishes the same result
again (under the same Nats-Msg-Id) without redoing the work (see `worker` for why the
work is idempotent).

A delivery ends in a result, a hand-back at shutdown (republished as a fresh message,
which spends nothing), or a crash, a hang or a dead render process: exactly the
deliveries `max_deliver` should count. Transient trouble spends none: it is waited out
where it happens (`patience`), with the message kept in hand by heartbeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from opentelemetry import trace
from pydantic import ValidationError

from emulsion_contracts import wire, worksigning
from emulsion_contracts.messages import ItemResult, JobRef, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_processor import metrics, patience
from emulsion_processor.errors import ItemRejected, OutageTooLong, RenderCrashed
from emulsion_processor.patience import TRANSIENT_ERRORS, Patience, retry_delay
from emulsion_processor.worker import ItemWorker
from emulsion_runtime import messaging, telemetry

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion_processor")

WORK_CONSUMER: Final = next(c for c in messaging.CONSUMERS if c.durable == wire.PROCESSORS)


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Hand the message back, to be redelivered after `delay` seconds."""

    delay: float


class Delivery:
    """The delivery protocol: each work message handled to its ack, or given back.

    The item's own work is `worker`'s; this decides what becomes of the message.
    """

    def __init__(self, worker: ItemWorker) -> None:
        self.worker = worker
        self.settings = worker.settings
        self.signing_key = worker.settings.signing_key()

    async def handle(self, msg: Msg) -> None:
        """Process `msg` to a published result and an ack; give it back only at shutdown."""
        received = time.monotonic()
        if not await self._trusted(msg):
            return
        try:
            item = WorkItem.from_bytes(msg.data)
        except ValidationError as error:
            await self._invalid_message(msg, error)
            return
        assert isinstance(item, WorkItem)
        deliveries = int(msg.metadata.num_delivered)
        handed_back = _int_header(msg, wire.HEADER_HANDED_BACK)
        attempt = handed_back + deliveries
        context = telemetry.extract(msg.headers)
        attributes: dict[str, str | int] = {
            "emulsion.job": f"{item.job.namespace}/{item.job.name}",
            "emulsion.index": item.index,
            "emulsion.version": item.version,
            "messaging.delivery": attempt,
            **telemetry.messaging_attributes(
                telemetry.Operation.PROCESS,
                msg.subject,
                (msg.headers or {}).get(wire.HEADER_MSG_ID),
            ),
        }
        waiting = patience.begin(self.settings.outage_budget_seconds)
        with (
            tracer.start_as_current_span(
                telemetry.messaging_span_name(telemetry.Operation.PROCESS, msg.subject),
                context=context,
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            ) as span,
            self._heartbeat(msg, waiting),
        ):
            metrics.IN_FLIGHT.inc()
            try:
                result = await self.result_or_give_back(item, attempt, deliveries)
                if isinstance(result, GiveBack):
                    # Only a dead render process gets here: counted, as a crash must be.
                    await msg.nak(delay=result.delay)
                    return
                span.set_attribute("emulsion.outcome", result.outcome)
                if result.reason:
                    span.set_attribute("emulsion.reason", result.reason)
                await self._publish_and_ack(msg, item.job, item.index, result)
            except asyncio.CancelledError:
                # Shutdown ran out of drain time: hand the item to another worker now.
                metrics.GIVEN_BACK.labels("shutdown").inc()
                await asyncio.shield(self.hand_back(msg))
                raise
            finally:
                metrics.IN_FLIGHT.dec()
                metrics.ITEM_SECONDS.observe(time.monotonic() - received)

    async def hand_back(self, msg: Msg) -> None:
        """Give `msg` back without spending a delivery: republish it, then ack this copy.

        A nak would count against `max_deliver`, so a few rolling restarts during an
        outage could fail an item that never crashed anything. The copy gets its own
        Nats-Msg-Id (the original's is still in the duplicate window) and carries the
        deliveries so far, so `attempts` stays true. A crash between the two steps leaves
        both copies, which is harmless: every item is idempotent. The copy keeps the
        controller's signature header: it signs only the subject and body, both unchanged.
        """
        headers = dict(msg.headers or {})
        original_id = headers.get(wire.HEADER_MSG_ID, "")
        headers[wire.HEADER_MSG_ID] = wire.handback_msg_id(original_id)
        headers[wire.HEADER_HANDED_BACK] = str(
            _int_header(msg, wire.HEADER_HANDED_BACK) + int(msg.metadata.num_delivered)
        )
        try:
            await self.worker.clients.js.publish(msg.subject, msg.data, headers=headers)
            await msg.ack_sync()
        except (NatsError, TimeoutError, OSError) as error:
            log.warning("could not republish a handed-back item, giving it back: %s", error)
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await msg.nak()

    async def _trusted(self, msg: Msg) -> bool:
        """Whether `msg` carries the controller's signature; one that does not is terminated.

        Checked before the body is even parsed: an unsigned or forged item must not make
        this processor read a source, write a key, commit a manifest, ask for a GC or
        publish a result (a forged result could end a real job's item). Terminated, not
        given back: no redelivery can ever make it verify.
        """
        headers = msg.headers or {}
        cause = worksigning.refusal(
            self.signing_key, msg.subject, msg.data, headers.get(worksigning.HEADER)
        )
        if cause is None:
            return True
        log.warning(
            "refused a work message whose signature is %s; terminated without reading it",
            cause,
            extra={
                "subject": msg.subject,
                "msg_id": headers.get(wire.HEADER_MSG_ID),
                "cause": cause,
            },
        )
        metrics.REFUSED.labels(cause).inc()
        await msg.term()
        return False

    async def _invalid_message(self, msg: Msg, error: ValidationError) -> None:
        """A work message that cannot be read fails as an item, if it can be addressed."""
        address = wire.work_address(msg.subject, (msg.headers or {}).get(wire.HEADER_MSG_ID))
        if address is None:
            # No job to report to: nothing can ever come of redelivering it.
            log.error("terminating an unreadable, unaddressable work message: %s", error)
            await msg.term()
            metrics.ITEMS.labels("failed", FailureReason.INVALID_MESSAGE).inc()
            return
        job, index = address.job, address.index
        log.error("work message %s/%s cannot be read: %s", job.name, index, error)
        result = ItemResult(
            job=job,
            index=index,
            outcome="failed",
            reason=FailureReason.INVALID_MESSAGE,
            message=f"the work message cannot be read: {_first_line(error)}",
            attempts=int(msg.metadata.num_delivered),
            finished_at=datetime.now(UTC),
        )
        await self._publish_and_ack(msg, job, index, result)

    async def result_or_give_back(
        self, item: WorkItem, attempt: int, deliveries: int | None = None
    ) -> ItemResult | GiveBack:
        """The item's final result, or how long to wait before a dead renderer is retried."""
        deliveries = attempt if deliveries is None else deliveries
        try:
            return await self.worker.process(item, attempt)
        except ItemRejected as rejected:
            log.info("item %s/%s failed: %s", item.job.name, item.index, rejected)
            return ItemResult.failed(item, rejected.reason, rejected.message, attempt)
        except OutageTooLong as outage:
            return ItemResult.failed(item, FailureReason.RETRIES_EXHAUSTED, str(outage), attempt)
        except RenderCrashed as crash:
            return self._after_crash(item, attempt, deliveries, str(crash))
        except TRANSIENT_ERRORS as error:
            # Transient trouble is waited out where it happens; one that slipped past is
            # given back like a crash rather than mistaken for a fault of the item.
            return self._after_crash(item, attempt, deliveries, f"{type(error).__name__}: {error}")
        except Exception as error:
            # Not transient (that is waited out where it happens) and not the image's
            # known faults: a defect that would recur on every delivery. Fail it now.
            log.exception("unexpected error on %s/%s", item.job.name, item.index)
            message = f"unexpected {type(error).__name__}: {error}"
            return ItemResult.failed(item, FailureReason.RENDER_FAILED, message, attempt)

    def _after_crash(
        self, item: WorkItem, attempt: int, deliveries: int, problem: str
    ) -> ItemResult | GiveBack:
        if deliveries >= WORK_CONSUMER.max_deliver:
            message = f"gave up after {attempt} deliveries; last error: {problem}"
            return ItemResult.failed(item, FailureReason.RETRIES_EXHAUSTED, message, attempt)
        log.warning(
            "giving back %s/%s (delivery %d): %s", item.job.name, item.index, attempt, problem
        )
        metrics.GIVEN_BACK.labels("crash").inc()
        return GiveBack(retry_delay(self.settings.retry_delay_seconds, deliveries))

    async def _publish_and_ack(
        self, msg: Msg, job: JobRef, index: int, outcome: ItemResult
    ) -> None:
        try:
            await patience.publish(
                self.worker.clients.js,
                wire.events_subject(job.namespace, job.name),
                outcome.to_bytes(),
                wire.result_msg_id(job.uid, index),
                self.settings,
            )
        except (*TRANSIENT_ERRORS, OutageTooLong) as error:
            # Unacknowledged, the item comes back; its result is then published again
            # (under the same Nats-Msg-Id) without redoing the work.
            log.warning("could not publish the result of %s/%s: %s", job.name, index, error)
            metrics.GIVEN_BACK.labels("transient").inc()
            await msg.nak(delay=self.settings.retry_delay_seconds)
            return
        # Confirmed (a round trip), not a plain ack: a plain ack saves ~1 ms per item, but
        # the fault suite's disk-full case then saw an item delivered twice, which the
        # promise "waiting spends no delivery" forbids; until that is understood, the
        # confirmed ack that kept it at one delivery stays.
        await msg.ack_sync()
        metrics.ITEMS.labels(outcome.outcome, outcome.reason or "").inc()

    @contextmanager
    def _heartbeat(self, msg: Msg, waiting: Patience | None = None) -> Iterator[None]:
        async def beat() -> None:
            # Bounded, so an item stuck for good (a wedged decoder, a hung socket) is
            # redelivered to another worker instead of being kept alive forever. Time
            # spent waiting out an outage is not work, so it extends the bound.
            started = time.monotonic()
            while time.monotonic() < (
                started + self.settings.max_item_seconds + (waiting.waited if waiting else 0)
            ):
                await asyncio.sleep(self.settings.heartbeat_seconds)
                try:
                    await msg.in_progress()
                except NatsError as error:
                    log.warning("in-progress heartbeat failed: %s", error)

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()


def _int_header(msg: Msg, name: str) -> int:
    value = (msg.headers or {}).get(name, "")
    return int(value) if value.isdigit() else 0


def _first_line(error: ValidationError) -> str:
    return (
        str(error).splitlines()[0]
        + "; "
        + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
    )
