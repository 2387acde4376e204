"""The fast path: the durable `janitor` consumer of EMULSION_GC.

A request not yet due goes back with a delay until `not_before` (no busy loop). A due one
is deleted through the Deleter in its trace: the delete span is a child of the producer's
context from the message headers. Refusals that pass with time (grace, lease, the cap's
allowance) put the message back with a delay; other refusals are final and the message is
acknowledged. A store that fails mid-request puts it back with a delay too: left
unacknowledged, it would wait out the consumer's backoff instead (up to 15 minutes at its
third delivery). A dry run acknowledges nothing: every request goes back for a real janitor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry import trace
from pydantic import ValidationError

from emulsion_contracts import wire
from emulsion_contracts.messages import GcRequest
from emulsion_janitor import metrics
from emulsion_janitor.deleter import Deleter, DeletionReport
from emulsion_janitor.guards import Guard, StoredObject, WindowBudget, area_of
from emulsion_janitor.store import MAX_BATCH, stat
from emulsion_runtime import messaging, telemetry
from emulsion_runtime.blocking import run_blocking
from emulsion_runtime.consuming import PullLoop

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.janitor")

_JANITOR_CONSUMER: Final = next(c for c in messaging.CONSUMERS if c.durable == wire.JANITOR)
# How long a dry run leaves a request alone before it is offered again.
DRY_RUN_REDELIVERY: Final = 600.0
# How long a request waits after the store failed under it (a delete or a stat).
STORE_RETRY_DELAY: Final = 30.0
# The store's failures that a later attempt may get past; the deleter reports a failed
# delete itself, a stat raises one of these.
STORE_TROUBLE: Final = (ClientError, BotoCoreError, OSError, TimeoutError)


def due_in(request: GcRequest, now: datetime) -> float:
    """Seconds until the request may be carried out (<= 0: now)."""
    not_before = request.not_before
    if not_before.tzinfo is None:  # a producer that left out the zone means UTC
        not_before = not_before.replace(tzinfo=UTC)
    return (not_before - now).total_seconds()


class GcConsumer:
    def __init__(self, js: JetStreamContext, s3: Any, deleter: Deleter) -> None:
        self.js = js
        self.s3 = s3
        self.deleter = deleter
        self._pulling: PullLoop | None = None
        settings = deleter.settings
        # The sweep's cap, applied to the fast path per sweep interval.
        self.budget = WindowBudget(settings.max_deletions_per_sweep, settings.sweep_interval)
        self._capped_window_logged = False

    @property
    def dry_run(self) -> bool:
        return self.deleter.settings.dry_run

    @property
    def bound(self) -> bool:
        return self._pulling is not None and self._pulling.bound

    async def run(self, stopping: asyncio.Event, fetch_batch: int = 64) -> None:
        """Fetch and handle until `stopping` is set; the batch in hand is always finished.

        Ends early only when the durable is gone (ConsumerGone): the process then exits.
        """
        self._pulling = PullLoop(
            self.js, wire.GC_STREAM, wire.JANITOR, self._handle_counted, room=fetch_batch
        )
        await self._pulling.run(stopping)

    async def _handle_counted(self, msg: Msg) -> None:
        try:
            await self.handle(msg)
        except Exception:
            # Left unacknowledged (the loop logs it): delivered again after ack_wait.
            metrics.GC_MESSAGES.labels("error").inc()
            raise

    async def handle(self, msg: Msg) -> None:
        try:
            request = GcRequest.model_validate_json(msg.data)
        except ValidationError as error:
            # It can never be carried out; redelivering it would only repeat this line.
            log.error("rejected a malformed GC request: %s", error, extra={"subject": msg.subject})
            metrics.GC_MESSAGES.labels("malformed").inc()
            if self.dry_run:
                await self._leave(msg)
            else:
                await msg.term()
            return
        wait = due_in(request, datetime.now(UTC))
        if wait > 0:
            metrics.GC_MESSAGES.labels("deferred").inc()
            await msg.nak(delay=wait)
            return
        with telemetry.messaging_span(
            telemetry.Operation.PROCESS,
            msg.subject,
            msg.headers,
            {"emulsion.gc.reason": request.reason, "emulsion.gc.keys": len(request.keys)},
        ) as span:
            try:
                report = await self.carry_out(request, msg)
            except STORE_TROUBLE as error:
                log.warning(
                    "the store failed under a GC request; trying again in %.0f s: %s",
                    STORE_RETRY_DELAY,
                    error,
                    extra={"subject": msg.subject},
                )
                metrics.GC_MESSAGES.labels("retry").inc()
                await msg.nak(delay=STORE_RETRY_DELAY)
                return
            span.set_attribute("emulsion.gc.deleted", report.deleted)
            span.set_attribute("emulsion.gc.freed_bytes", report.freed_bytes)
            span.set_attribute("emulsion.gc.refused", sum(report.refused.values()) + report.failed)
        await self.settle(msg, report)

    async def carry_out(self, request: GcRequest, msg: Msg) -> DeletionReport:
        report = DeletionReport()
        for start in range(0, len(request.keys), MAX_BATCH):
            found = await self._stat_all(request.keys[start : start + MAX_BATCH])
            report.add(await self.deleter.delete(found, request.reason, self.budget))
            if start + MAX_BATCH < len(request.keys):
                await msg.in_progress()  # a very long request must not outlive ack_wait
        if report.refused[Guard.CAP]:
            # Tried again once the allowance refills; until then the keys stay.
            report.retry_after = max(report.retry_after or 0.0, self.budget.refills_in() + 1.0)
            self._log_cap()
        else:
            self._capped_window_logged = False
        return report

    def _log_cap(self) -> None:
        if self._capped_window_logged:
            return
        self._capped_window_logged = True
        log.warning(
            "GC requests reached the deletion cap of %d keys per %.0f s"
            " (EMULSION_JANITOR_MAX_DELETIONS_PER_SWEEP); the rest waits %.0f s",
            self.budget.limit,
            self.budget.window,
            self.budget.refills_in(),
        )

    async def _stat_all(self, batch: Sequence[str]) -> list[StoredObject]:
        """The keys that still exist, with size and age; gone ones were deleted already."""

        async def one(key: str) -> StoredObject | None:
            if area_of(key) is None:
                # Never asked about, only refused: the guards see it with an unknown age.
                return StoredObject(key, 0, None)
            return await run_blocking(stat, self.s3, self.deleter.bucket, key)

        found = await asyncio.gather(*(one(key) for key in dict.fromkeys(batch)))
        return [stored for stored in found if stored is not None]

    async def _leave(self, msg: Msg) -> None:
        """Give the message back untouched, for a janitor that deletes."""
        metrics.GC_MESSAGES.labels("left").inc()
        await msg.nak(delay=DRY_RUN_REDELIVERY)

    async def settle(self, msg: Msg, report: DeletionReport) -> None:
        if self.dry_run:
            # A dry run acted on nothing, so it consumes nothing: acknowledging after only
            # reporting would drop the request for good.
            await self._leave(msg)
            return
        if report.retry_after is None and not report.failed:
            metrics.GC_MESSAGES.labels("done").inc()
            await msg.ack()
            return
        delivered = msg.metadata.num_delivered or 1
        if delivered >= _JANITOR_CONSUMER.max_deliver:
            log.warning(
                "giving up on a GC request after %d deliveries; the sweep will collect the rest",
                delivered,
                extra={"subject": msg.subject},
            )
            metrics.GC_MESSAGES.labels("given_up").inc()
            await msg.ack()
            return
        metrics.GC_MESSAGES.labels("retry").inc()
        await msg.nak(delay=report.retry_after or STORE_RETRY_DELAY)
