"""Kubernetes Events on IngestJobs: what `kubectl describe ij` shows besides status.

The controller posts one Event per thing a person would want to see in a job's history:

| reason          | type    | when                                                  |
|-----------------|---------|-------------------------------------------------------|
| Dispatched      | Normal  | its work is queued                                    |
| DispatchFailed  | Warning | queueing failed and is retried (once per distinct error) |
| InvalidSpec     | Warning | its spec cannot become work; it failed as a whole     |
| Completed       | Normal  | every item succeeded                                  |
| PartiallyFailed | Warning | it ended with some items failed (how many, the first reasons) |
| Failed          | Warning | it ended with every item failed                       |
| Cancelled       | Normal  | it was deleted before it finished                     |

This module is the one place Events are decided and posted: the builders below, a
job's once-only Events (`Milestones`: Dispatched, how it ended), the DispatchFailed
Events told apart by their error, and the recorder that posts them all.

Why our own poster and not `kopf.event`: kopf's poster is reachable only from inside
kopf's per-object handler tasks (a context variable), while most jobs end in the status
writer's tasks, driven by NATS. So one recorder posts every Event of ours, from a queue,
in order, one at a time: Events are best effort, and must never delay or fail a job.
A full queue or a refused post drops the Event (counted and logged), nothing more.
kopf keeps posting its own: handler errors become Events (settings.posting in
operator.configure), its info chatter does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from emulsion_contracts import crd
from emulsion_contracts.crd import Phase
from emulsion_contracts.ingestjob import format_time
from emulsion_contracts.messages import JobRef
from emulsion_controller import metrics
from emulsion_controller.conditions import JobState
from emulsion_controller.progress import JobProgress

log = logging.getLogger(__name__)

COMPONENT: Final = "emulsion-controller"
REPORTING_COMPONENT: Final = f"{crd.GROUP}/controller"
# Events waiting to be posted; beyond this (an apiserver too slow for a burst of
# finishing jobs) new ones are dropped rather than held without bound.
QUEUE_LIMIT: Final = 2000
# The longest message posted: the events.k8s.io limit, which kubectl also shows whole.
MESSAGE_MAX: Final = 1024
# Failures named in a PartiallyFailed/Failed Event.
FAILURES_NAMED: Final = 3


class Reason(StrEnum):
    DISPATCHED = "Dispatched"
    DISPATCH_FAILED = "DispatchFailed"
    INVALID_SPEC = "InvalidSpec"
    STATUS_UNWRITABLE = "StatusUnwritable"
    COMPLETED = "Completed"
    PARTIALLY_FAILED = "PartiallyFailed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def action(self) -> str:
        """What the controller was doing (an Event's `action`)."""
        if self in (Reason.DISPATCHED, Reason.DISPATCH_FAILED, Reason.INVALID_SPEC):
            return "Dispatch"
        return "Cancel" if self == Reason.CANCELLED else "Finish"


@dataclass(frozen=True)
class JobEvent:
    reason: Reason
    message: str
    warning: bool = False

    @property
    def type(self) -> str:
        return "Warning" if self.warning else "Normal"


def dispatched(items: int, version: str) -> JobEvent:
    return JobEvent(Reason.DISPATCHED, f"{items} work items queued as version {version}")


def dispatch_failed(error: BaseException, retry_seconds: float) -> JobEvent:
    what = str(error) or type(error).__name__
    return JobEvent(
        Reason.DISPATCH_FAILED,
        f"queueing the work failed, retried every {retry_seconds:g} s: {what}",
        warning=True,
    )


def cancelled(finished: int, total: int, withdrawn: int) -> JobEvent:
    return JobEvent(
        Reason.CANCELLED,
        f"deleted before it finished: {finished} of {total} items had finished; "
        f"{withdrawn} queued items withdrawn, the rest change no asset",
    )


def finished(state: JobState) -> JobEvent:
    """How a job ended; when items failed, the first of those status lists are named
    (by index)."""
    if state.rejection is not None:
        return JobEvent(Reason(state.rejection_reason), state.rejection, warning=True)
    if state.phase == Phase.SUCCEEDED:
        return JobEvent(Reason.COMPLETED, state.message)
    named = "; ".join(
        f"[{f.index}] {f.asset or '?'}: {f.reason}" + (f" ({f.message})" if f.message else "")
        for f in sorted(state.failures, key=lambda f: f.index)[:FAILURES_NAMED]
    )
    message = state.message + (f"; first: {named}" if named else "")
    reason = Reason.PARTIALLY_FAILED if state.phase == Phase.PARTIALLY_FAILED else Reason.FAILED
    return JobEvent(reason, message, warning=True)


@dataclass
class Milestones:
    """A job's once-only Events, Dispatched and how it ended: each posted after the
    status write that makes it true, and in this order (a fast job's results can end it
    in the very write that records its dispatch)."""

    # Posted, or the status read already said so (see StatusWriter's resume).
    dispatched: bool = False
    ended: bool = False

    def pending(self, progress: JobProgress) -> tuple[bool, bool]:
        """Which of them the coming write makes true; read before the write (before
        to_status stamps completedAt)."""
        return progress.dispatched and not self.dispatched, progress.done and not self.ended

    def post_due(
        self,
        recorder: EventRecorder | None,
        job: JobRef,
        progress: JobProgress,
        due: tuple[bool, bool],
    ) -> None:
        """The write that made `due` true succeeded: post each (with no recorder, none)."""
        queued, ends = due
        if queued:
            self.dispatched = True
            post(recorder, job, dispatched(progress.total, progress.version or "unknown"))
        if ends:
            self.ended = True
            post(recorder, job, finished(progress.state))


def event_body(job: JobRef, event: JobEvent, instance: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about `job` (kubectl describe finds it by the involved object's
    kind, name, namespace and uid).

    Named as client-go's recorder names them, `<job>.<nanoseconds in hex>`: kubectl
    orders a job's Events by lastTimestamp, which is to the second, and a fast job's
    Dispatched and Completed are often in one second; ties keep the order they are
    listed in, which is by name, so a time-ordered name keeps them in order.
    """
    message = event.message
    if len(message) > MESSAGE_MAX:
        message = message[: MESSAGE_MAX - 3] + "..."
    stamp = f"{int(now.timestamp() * 1e6) * 1000:x}"
    # A name is at most 253 characters; a shortened job name must still end a label well.
    prefix = job.name[: 252 - len(stamp)].rstrip(".-")
    moment = format_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{prefix}.{stamp}", "namespace": job.namespace},
        "involvedObject": {
            "apiVersion": crd.API_VERSION,
            "kind": crd.KIND,
            "name": job.name,
            "namespace": job.namespace,
            "uid": job.uid,
        },
        "reason": str(event.reason),
        "message": message,
        "type": event.type,
        "action": event.reason.action,
        "source": {"component": COMPONENT},
        "reportingComponent": REPORTING_COMPONENT,
        "reportingInstance": instance[:128],
        "eventTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "firstTimestamp": moment,
        "lastTimestamp": moment,
        "count": 1,
    }


Post = Callable[[str, dict[str, Any]], Awaitable[None]]


def post(recorder: EventRecorder | None, job: JobRef, event: JobEvent) -> None:
    """Post an Event about the job (a part made without a recorder posts none)."""
    if recorder is not None:
        recorder.record(job, event)


class EventRecorder:
    """Queues Events and posts them in the background (see the module's note)."""

    def __init__(self, post: Post, instance: str, limit: int = QUEUE_LIMIT) -> None:
        self._post = post
        self._instance = instance
        self._queue: asyncio.Queue[tuple[JobRef, JobEvent, datetime]] = asyncio.Queue(limit)
        # The last DispatchFailed Event of each job whose dispatch is failing: a retry with
        # the same error posts no second one (kopf's own error Event says each retry).
        self._dispatch_errors: dict[str, str] = {}

    def dispatch_failing(self, job: JobRef, error: BaseException, retry_seconds: float) -> None:
        """A dispatch failed and is retried: DispatchFailed, unless it said this already."""
        event = dispatch_failed(error, retry_seconds)
        if self._dispatch_errors.get(job.uid) != event.message:
            self._dispatch_errors[job.uid] = event.message
            self.record(job, event)

    def dispatch_settled(self, uid: str) -> None:
        """The job's dispatch succeeded, failed for good, or the job is gone."""
        self._dispatch_errors.pop(uid, None)

    def record(self, job: JobRef, event: JobEvent) -> None:
        try:
            self._queue.put_nowait((job, event, datetime.now(UTC)))
        except asyncio.QueueFull:
            metrics.EVENTS.labels("dropped").inc()
            log.warning(
                "event dropped: too many waiting to be posted",
                extra={"namespace": job.namespace, "job": job.name, "reason": event.reason},
            )

    async def run(self, stopping: asyncio.Event) -> None:
        """Post queued Events, in order, until `stopping` is set."""
        while not stopping.is_set():
            try:
                job, event, at = await asyncio.wait_for(self._queue.get(), 0.5)
            except TimeoutError:
                continue
            await self._deliver(job, event, at)

    async def _deliver(self, job: JobRef, event: JobEvent, at: datetime) -> None:
        try:
            await self._post(job.namespace, event_body(job, event, self._instance, at))
        except Exception as error:
            metrics.EVENTS.labels("failed").inc()
            log.warning(
                "event could not be posted: %s",
                error,
                extra={"namespace": job.namespace, "job": job.name, "reason": event.reason},
            )
            return
        metrics.EVENTS.labels("posted").inc()
