"""Fan an IngestJob out: one work message per item, then record it as dispatched.

Order matters for restarts. The version is persisted before any message names it, so
a re-run reuses it; messages carry `Nats-Msg-Id: <uid>/<index>`, so a re-run after a
crash between publishing and recording is deduplicated by the stream; the status write
comes last, so a crash before it only means publishing again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Container, Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from emulsion_contracts import crd, keys, messaging, telemetry
from emulsion_contracts.messages import JobRef, StyleSpec, WorkItem
from emulsion_controller import metrics
from emulsion_controller.bus import Bus, Outgoing
from emulsion_controller.tracker import StatusWriter

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.controller")


class InvalidJob(ValueError):
    """A job whose items cannot become work messages; the message says which and why."""


def work_messages(
    body: Mapping[str, Any],
    version: str,
    only: Container[int] | None = None,
    msg_id_suffix: str | None = None,
) -> list[Outgoing]:
    """One message per item (or per item in `only`), carrying the current trace context.

    `msg_id_suffix` makes the message ids new (`<uid>/<index>/<suffix>`), so the stream's
    deduplication lets a deliberate re-dispatch through. Raises InvalidJob.
    """
    metadata, spec = body["metadata"], body["spec"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    job = JobRef(namespace=namespace, name=name, uid=uid)
    subject = messaging.work_subject(namespace, name)
    try:
        styles = tuple(StyleSpec.model_validate(s) for s in spec.get("styles") or ()) or None
    except ValidationError as error:
        raise InvalidJob(f"spec.styles: {error}") from error
    messages = []
    for index, item in enumerate(spec["items"]):
        if only is not None and index not in only:
            continue
        try:
            work = WorkItem(
                job=job,
                index=index,
                source=item["source"],
                collection=spec["collection"],
                asset=item["asset"],
                version=keys.version_id(version, index),
                profile=spec.get("profile") or "default",
                styles=styles,
            )
        except (ValidationError, keys.InvalidKey, KeyError) as error:
            raise InvalidJob(f"spec.items[{index}]: {error}") from error
        msg_id = messaging.work_msg_id(uid, index)
        if msg_id_suffix:
            msg_id = f"{msg_id}/{msg_id_suffix}"
        headers = telemetry.inject({messaging.HEADER_MSG_ID: msg_id})
        messages.append(Outgoing(subject, work.to_bytes(), headers))
    return messages


def annotated_context(body: Mapping[str, Any]) -> Any:
    """The trace context the API recorded on the job (an empty one for kubectl jobs)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    carrier = {}
    if crd.ANNOTATION_TRACEPARENT in annotations:
        carrier["traceparent"] = annotations[crd.ANNOTATION_TRACEPARENT]
    if crd.ANNOTATION_TRACESTATE in annotations:
        carrier["tracestate"] = annotations[crd.ANNOTATION_TRACESTATE]
    return telemetry.extract(carrier)


async def dispatch(body: Mapping[str, Any], bus: Bus, writer: StatusWriter) -> str:
    """Publish a job's work and mark it Queued; idempotent. Returns what was done."""
    metadata, spec = body["metadata"], body["spec"]
    namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
    began = time.monotonic()
    job = writer.begin_dispatch(body)
    try:
        assert job.progress is not None
        if job.progress.dispatched or job.progress.done:
            await writer.end_dispatch(job, None)
            return "already dispatched"
        with tracer.start_as_current_span(
            "emulsion.controller.dispatch",
            context=annotated_context(body),
            attributes={"emulsion.job": f"{namespace}/{name}", "emulsion.job.uid": uid},
        ) as span:
            version = spec.get("version") or job.progress.version
            if not version:
                version = keys.new_ulid()
                if not await writer.record_version(job, version):
                    return "job is gone"
            try:
                messages = work_messages(body, version)
            except InvalidJob as error:
                # Final: the spec is immutable, so no retry could ever dispatch it.
                await writer.reject(job, str(error))
                log.warning("job rejected: %s", error, extra={"namespace": namespace, "job": name})
                raise
            await bus.lease(uid, job.upload_ids)
            fresh = await bus.publish(messages)
            span.set_attribute("emulsion.items", len(messages))
            span.set_attribute("emulsion.items.new", fresh)
            metrics.ITEMS_DISPATCHED.inc(fresh)
            if not await writer.end_dispatch(job, version):
                return "job is gone"
    finally:
        job.dispatching = False
    metrics.DISPATCH_LATENCY.observe(max(0.0, _age(metadata)))
    log.info(
        "job dispatched",
        extra={
            "namespace": namespace,
            "job": name,
            "items": len(messages),
            "new": fresh,
            "seconds": round(time.monotonic() - began, 3),
        },
    )
    return f"{len(messages)} items queued ({fresh} new)"


def _age(metadata: Mapping[str, Any]) -> float:
    created = metadata.get("creationTimestamp")
    if not created:
        return 0.0
    moment = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (datetime.now(UTC) - moment).total_seconds()
