"""A running job as the controller holds it in memory, and the folding of its results
into its progress: no I/O here.

A result waits in the job's inbox until folded; folded, its acknowledgement waits in
`unacked` until the record holding it is written (status_writer.py), then settling.py
acknowledges it. What is held is bounded: one result or acknowledgement per item and
channel, however often JetStream redelivers while nothing can be written.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from emulsion_contracts.jobrecords import FailureDetail, OutcomeRecord
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_contracts.reasons import FailureReason
from emulsion_controller import events, metrics
from emulsion_controller.progress import JobProgress
from emulsion_runtime import telemetry

Ack = Callable[[], Awaitable[None]]
# What a held result or acknowledgement is deduplicated by: the item index, and which
# consumer it came from (a result and a retries-exhausted advisory of one item are two
# messages, each to be acknowledged).
HeldKey = tuple[int, str]
RESULTS_CHANNEL = "results"

# Links kept per status span: enough to follow a sample of items, bounded for big jobs.
MAX_LINKS = 64
# A running job's status is written at most once per `interval` up to this many items,
# then at an interval proportional to its size, up to MAX_INTERVAL: a 2,000-item job
# costs about as many etcd revisions while it runs as a 200-item one.
INTERVAL_ITEMS = 200
MAX_INTERVAL = 10.0


def write_interval(base: float, total: int) -> float:
    """The least time between two status writes of a running job of `total` items."""
    scaled = base * max(total, 0) / INTERVAL_ITEMS
    return max(base, min(MAX_INTERVAL, scaled))


@dataclass
class TrackedJob:
    namespace: str
    name: str
    uid: str
    progress: JobProgress | None = None
    upload_ids: tuple[str, ...] = ()
    collection: str = ""
    # The outcome record as last read or written, and the revision to write over (None:
    # there is none yet, so the next write creates it).
    recorded: OutcomeRecord | None = None
    record_revision: int | None = None
    # Failures folded but not yet in the records bucket (each written before its ack).
    details: dict[int, FailureDetail] = field(default_factory=dict)
    # Which of its once-only Events are due no more.
    milestones: events.Milestones = field(default_factory=events.Milestones)
    # The status holds an older controller's index ranges: the next write removes them
    # (merged into the record by then), so they never contradict the counts.
    stale_indexes: bool = False
    inbox: dict[HeldKey, tuple[ItemResult, Ack, trace.Link | None]] = field(default_factory=dict)
    unacked: dict[HeldKey, Ack] = field(default_factory=dict)
    links: list[trace.Link] = field(default_factory=list)
    changed: bool = False
    # Whether its work is being published now (written by StatusWriter's dispatch
    # methods alone): its end waits for the dispatch to be recorded.
    dispatching: bool = False
    last_write: float = -math.inf
    # What the last read or write saw; every write is conditional on it.
    resource_version: str | None = None
    # The status the controller owns as our last write left it (status.kopf aside).
    written: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    driver: asyncio.Task[None] | None = None

    @property
    def ref(self) -> JobRef:
        return JobRef(namespace=self.namespace, name=self.name, uid=self.uid)


def hold(
    job: TrackedJob,
    result: ItemResult,
    ack: Ack,
    headers: Mapping[str, str] | None,
    channel: str,
) -> None:
    """Hold one result until it is folded.

    A result for an item already waiting here (a redelivery while writes fail) only
    replaces the acknowledgement held for it, so nothing grows with redeliveries:
    whether it waits to be folded (inbox) or, folded, for its write (unacked), where
    a later result of the same item could change nothing (the first outcome wins).
    """
    key = (result.index, channel)
    waiting = job.inbox.get(key)
    if key in job.unacked:
        metrics.RESULTS.labels("duplicate").inc()
        job.unacked[key] = ack
    elif waiting is not None:
        metrics.RESULTS.labels("duplicate").inc()
        job.inbox[key] = (waiting[0], ack, waiting[2])
    else:
        job.inbox[key] = (result, ack, link(headers))


def fold(job: TrackedJob) -> None:
    """Fold the job's inbox into its progress; each acknowledgement then waits for the
    write that records it."""
    assert job.progress is not None
    inbox, job.inbox = job.inbox, {}
    for key, (result, ack, trace_link) in inbox.items():
        if job.progress.record(result):
            job.changed = True
            if result.outcome != "succeeded":
                job.details[result.index] = FailureDetail(
                    uid=job.uid,
                    index=result.index,
                    asset=result.asset,
                    reason=str(result.reason or FailureReason.UNKNOWN),
                    message=result.message,
                    attempts=result.attempts,
                )
            if trace_link is not None and len(job.links) < MAX_LINKS:
                job.links.append(trace_link)
        else:
            metrics.RESULTS.labels("duplicate").inc()
        # A newer delivery's acknowledgement replaces the one held for the same item.
        job.unacked[key] = ack


def link(headers: Mapping[str, str] | None) -> trace.Link | None:
    context = trace.get_current_span(telemetry.extract(headers)).get_span_context()
    return trace.Link(context) if context.is_valid else None
