"""Fan an IngestJob out: one work message per item, then record it as dispatched.

A job that names its items (spec.itemsRef) has them read from EMULSION_INGESTS first
(Bus.with_items); a list that is missing or not the one named fails the job as a whole
(InvalidSpec), NATS away is retried (ItemsUnavailable).

Order matters for restarts. The version is persisted before any message names it, so
a re-run reuses it; messages carry `Nats-Msg-Id: <uid>/<index>`, so a re-run after a
crash between publishing and recording is deduplicated by the stream; the status write
comes last, so a crash before it only means publishing again.

Interactive jobs (small, or marked so) are published whole to the interactive lane. A
bulk job is only marked Queued here, after its feed cursor (0) is recorded; the feeder
(feeder.py) publishes its items a window at a time, fairly across tenants.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from emulsion_contracts import crd, wire
from emulsion_contracts.ingestjob import IngestJob, InvalidSpec
from emulsion_controller import metrics
from emulsion_controller.feeder import Feeder
from emulsion_controller.folding import TrackedJob
from emulsion_controller.jetstream import Bus, Outgoing
from emulsion_controller.settings import INTERACTIVE_MAX_ITEMS
from emulsion_controller.status_writer import StatusWriter
from emulsion_runtime import telemetry

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.controller")


def work_messages(
    job: IngestJob,
    version: str,
    only: Container[int] | None = None,
    msg_id_suffix: str | None = None,
    lane: wire.Lane = wire.Lane.BULK,
) -> list[Outgoing]:
    """One message per item (or per item in `only`) on `lane`'s subject, carrying the
    current trace context.

    `msg_id_suffix` makes the message ids new (`<uid>/<index>/<suffix>`), so the stream's
    deduplication lets a deliberate re-dispatch through. Raises InvalidSpec. The job's
    items must be in hand (Bus.with_items).
    """
    ref = job.ref
    subject = wire.work_subject(ref.namespace, ref.name, lane)
    messages = []
    for index in range(len(job.spec.loaded_items())):
        if only is not None and index not in only:
            continue
        work = job.spec.work_item(ref, index, version)
        msg_id = wire.work_msg_id(ref.uid, index, redispatch=msg_id_suffix)
        headers = telemetry.message_headers(subject, {wire.HEADER_MSG_ID: msg_id})
        messages.append(Outgoing(subject, work.to_bytes(), headers))
    return messages


def annotated_context(job: IngestJob) -> Any:
    """The trace context the API recorded on the job (an empty one for kubectl jobs)."""
    annotations = job.metadata.annotations
    carrier = {}
    if crd.ANNOTATION_TRACEPARENT in annotations:
        carrier["traceparent"] = annotations[crd.ANNOTATION_TRACEPARENT]
    if crd.ANNOTATION_TRACESTATE in annotations:
        carrier["tracestate"] = annotations[crd.ANNOTATION_TRACESTATE]
    return telemetry.extract(carrier)


async def dispatch(
    body: Mapping[str, Any],
    bus: Bus,
    writer: StatusWriter,
    feeder: Feeder | None = None,
    interactive_max_items: int = INTERACTIVE_MAX_ITEMS,
) -> str:
    """Publish a job's work to its lane (`IngestJobSpec.lane`; a bulk job's: hand it to
    `feeder`) and mark it Queued; idempotent. Returns what was done. Without a feeder
    every job is published whole.

    Raises InvalidSpec for a job no work message can carry, after failing it for good;
    ItemsUnavailable when its item list cannot be read now.
    """
    parsed = IngestJob.read(body)
    namespace, name, uid = parsed.ref.namespace, parsed.ref.name, parsed.ref.uid
    began = time.monotonic()
    async with writer.dispatching(parsed) as job:
        assert job.progress is not None
        if job.progress.dispatched or job.progress.done:
            await writer.end_dispatch(job, None)
            if feeder is not None and job.progress.version:
                # A restart between marking it Queued and handing it over.
                await feeder.take(parsed, job.progress.version, job.progress)
            return "already dispatched"
        with tracer.start_as_current_span(
            "emulsion.controller.dispatch",
            context=annotated_context(parsed),
            attributes={"emulsion.job": f"{namespace}/{name}", "emulsion.job.uid": uid},
        ) as span:
            try:
                loaded = await bus.with_items(parsed)
            except InvalidSpec as error:
                # Final: the spec names an item list that is gone or not the one named.
                await _reject(writer, job, error)
                raise
            version = parsed.spec.version or job.progress.version
            if not version:
                # A job made with kubectl: its version comes from the clock the API's
                # versions come from, so it sorts among theirs by when it was minted.
                version = await writer.record_version(job, await bus.mint_version())
                if version is None:
                    return "job is gone"
            lane = (
                feeder.lane(parsed)
                if feeder is not None
                else parsed.spec.lane(interactive_max_items)
            )
            fed = feeder is not None and lane is wire.Lane.BULK
            try:
                # Built for a fed job too: a spec no message can carry fails it now.
                messages = work_messages(loaded, version, lane=lane)
            except InvalidSpec as error:
                # Final: the spec is immutable, so no retry could ever dispatch it.
                await _reject(writer, job, error)
                raise
            await bus.lease(uid, job.upload_ids)
            if fed:
                assert feeder is not None
                await feeder.start_bulk(parsed)
                fresh = 0
            else:
                fresh = await bus.publish(messages)
            span.set_attribute("emulsion.lane", str(lane))
            span.set_attribute("emulsion.items", len(messages))
            span.set_attribute("emulsion.items.new", fresh)
            metrics.ITEMS_DISPATCHED.inc(fresh)
            if not await writer.end_dispatch(job, version):
                return "job is gone"
            if feeder is not None:
                await feeder.take(parsed, version, job.progress)
    metrics.DISPATCH_LATENCY.observe(max(0.0, _age(parsed)))
    log.info(
        "job dispatched",
        extra={
            "namespace": namespace,
            "job": name,
            "items": len(messages),
            "lane": str(lane),
            "new": fresh,
            "seconds": round(time.monotonic() - began, 3),
        },
    )
    if fed:
        return f"{len(messages)} items queued for the feeder ({lane} lane)"
    return f"{len(messages)} items queued ({fresh} new, {lane} lane)"


async def _reject(writer: StatusWriter, job: TrackedJob, error: InvalidSpec) -> None:
    await writer.reject(job, str(error))
    log.warning("job rejected: %s", error, extra={"namespace": job.namespace, "job": job.name})


def _age(job: IngestJob) -> float:
    created = job.metadata.creation_timestamp
    return (datetime.now(UTC) - created).total_seconds() if created else 0.0
