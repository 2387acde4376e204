"""Folds item results into each job's outcome record and its status, coalescing writes.

One `TrackedJob` per running job holds its progress in memory. Results are applied as
they arrive, but a running job is written at most once per `interval` (plus once at the
end). A write is, in this order: the FailureDetail of each newly failed item, the job's
OutcomeRecord (which items finished, in the records bucket, compare-and-set), and only
then the compact status (counts, conditions, examples). A result's message is
acknowledged once the record holding it is written: a crash loses nothing (the
redelivered result is then a no-op), and a status the apiserver will not take never
holds results back, since the record already has them. A conflict on the record (a
second replica, or our own write before a restart) is read, merged and written again.
All writes of one job are serialised by its lock, and each carries the whole
status the controller owns, so a later write never loses an earlier one's content. Each
write is also conditional on the resourceVersion last seen; on a conflict the recorded
status is merged in first, so another writer's (a second replica's) content survives too.
kopf's own bookkeeping (`status.kopf`) after a job's create handler is such a change; a
watch event showing that nothing but it changed since our write lets the next write go
ahead without the conflict, the re-read and the retry (see `observe`).

While the apiserver fails (429, 5xx, 403 while RBAC is being fixed), a job's reads and
writes are retried with capped exponential backoff and jitter, never at once: a tight
retry loop per job would hammer an apiserver that is already struggling. What is held
meanwhile is bounded: one result or acknowledgement per item and channel, however often
JetStream redelivers (every ack_wait) while nothing can be written.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from emulsion_contracts.ingestjob import IngestJob, InvalidSpec
from emulsion_contracts.jobrecords import FailureDetail, OutcomeRecord
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_contracts.reasons import FailureReason
from emulsion_controller import events, metrics
from emulsion_controller.bus import Bus, bounded
from emulsion_controller.kube import Conflict, Kube, Unwritable
from emulsion_controller.progress import JobProgress
from emulsion_runtime import telemetry
from emulsion_runtime.records_store import JobRecords, RecordConflict

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.controller")

Ack = Callable[[], Awaitable[None]]
# What a held result or acknowledgement is deduplicated by: the item index, and which
# consumer it came from (a result and a retries-exhausted advisory of one item are two
# messages, each to be acknowledged).
HeldKey = tuple[int, str]
RESULTS_CHANNEL = "results"

# Links kept per status span: enough to follow a sample of items, bounded for big jobs.
MAX_LINKS = 64
# Uids of deleted jobs remembered so their late results are dropped without a lookup.
GONE_REMEMBERED = 10_000
# Conflicting writes in a row before giving up this round (the caller retries later).
CONFLICT_RETRIES = 5
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
    # Whether the Event of how the job ended is due no more.
    end_announced: bool = False
    # The status holds an older controller's index ranges: the next write removes them
    # (merged into the record by then), so they never contradict the counts.
    stale_indexes: bool = False
    inbox: dict[HeldKey, tuple[ItemResult, Ack, trace.Link | None]] = field(default_factory=dict)
    unacked: dict[HeldKey, Ack] = field(default_factory=dict)
    links: list[trace.Link] = field(default_factory=list)
    changed: bool = False
    dispatching: bool = False
    # Whether the Dispatched Event is due no more: posted, or the status read already
    # said Dispatched (see _write).
    dispatch_announced: bool = False
    last_write: float = -math.inf
    # What the last read or write saw; every write is conditional on it (see _patch).
    resource_version: str | None = None
    # The status the controller owns as our last write left it (status.kopf aside).
    written: dict[str, Any] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    driver: asyncio.Task[None] | None = None


class StatusWriter:
    def __init__(
        self,
        kube: Kube,
        bus: Bus,
        interval: float,
        retry_ceiling: float = 30.0,
        recorder: events.EventRecorder | None = None,
    ) -> None:
        self._kube = kube
        self._recorder = recorder
        self._bus = bus
        self._interval = interval
        self._retry_ceiling = retry_ceiling
        self._jobs: dict[str, TrackedJob] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    # -- results ------------------------------------------------------------------------

    def submit(
        self,
        result: ItemResult,
        ack: Ack,
        headers: Mapping[str, str] | None,
        channel: str = RESULTS_CHANNEL,
    ) -> None:
        """Queue one item result; it is folded, written and then acknowledged.

        A result for an item already waiting here (a redelivery while writes fail) only
        replaces the acknowledgement held for it, so nothing grows with redeliveries:
        whether it waits to be folded (inbox) or, folded, for its write (unacked), where
        a later result of the same item could change nothing (the first outcome wins).
        """
        metrics.RESULTS.labels(result.outcome).inc()
        uid = result.job.uid
        if uid in self._gone:
            self._spawn(ack())
            return
        job = self._jobs.get(uid)
        if job is None:
            job = self._jobs[uid] = TrackedJob(result.job.namespace, result.job.name, uid)
        key = (result.index, channel)
        waiting = job.inbox.get(key)
        if key in job.unacked:
            metrics.RESULTS.labels("duplicate").inc()
            job.unacked[key] = ack
        elif waiting is not None:
            metrics.RESULTS.labels("duplicate").inc()
            job.inbox[key] = (waiting[0], ack, waiting[2])
        else:
            job.inbox[key] = (result, ack, _link(headers))
        if job.driver is None:
            job.driver = asyncio.create_task(self._drive(job), name=f"status {uid}")

    def held(self) -> int:
        """Results and acknowledgements held in memory until a status write succeeds."""
        jobs = list(self._jobs.values())
        return sum(len(job.inbox) + len(job.unacked) for job in jobs)

    def holds_results(self, uid: str) -> bool:
        """Whether results of this job are waiting to be written (so none is lost)."""
        job = self._jobs.get(uid)
        return job is not None and bool(job.inbox or job.changed)

    async def _drive(self, job: TrackedJob) -> None:
        """Fold, write and acknowledge until this job's inbox is empty and all is written.

        Every failure (the apiserver, NATS acks) is retried after a backoff from here;
        nothing escapes to be restarted at once.
        """
        failures = 0
        try:
            while job.inbox or job.changed:
                wait = 0.0
                try:
                    async with job.lock:
                        if job.progress is None and not await self._load(job):
                            return
                        self._apply_inbox(job)
                        assert job.progress is not None
                        interval = write_interval(self._interval, job.progress.total)
                        wait = job.last_write + interval - time.monotonic()
                        if job.changed and (job.progress.done or wait <= 0 or failures):
                            await self._write(job, "final" if job.progress.done else "progress")
                        elif not job.changed:
                            await self._acknowledge(job)
                            if job.progress.done and not job.dispatching:
                                # Only duplicates of a finished job: nothing to keep it for.
                                await self._finish(job)
                            failures = 0
                            continue
                    failures = 0
                except Unwritable as error:
                    await self._unwritable(job, error)
                    return
                except Exception:
                    failures += 1
                    delay = self.backoff(failures)
                    metrics.STATUS_RETRIES.inc()
                    log.exception(
                        "status of a job could not be read or written; retrying in %.1f s",
                        delay,
                        extra={"namespace": job.namespace, "job": job.name},
                    )
                    await asyncio.sleep(delay)
                    continue
                if job.changed:
                    # Coalescing: results arriving meanwhile join this job's next write.
                    await asyncio.sleep(max(0.0, wait))
        finally:
            job.driver = None

    def backoff(self, failures: int) -> float:
        """Capped exponential with equal jitter: many jobs failing at once spread out."""
        ceiling = min(self._retry_ceiling, self._interval * 2.0 ** min(failures, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (not for secrets)

    async def _load(self, job: TrackedJob) -> bool:
        body = await self._kube.get_job(job.namespace, job.name)
        if body is None or body.get("metadata", {}).get("uid") != job.uid:
            log.info(
                "results for a job that no longer exists are dropped",
                extra={"namespace": job.namespace, "job": job.name, "uid": job.uid},
            )
            self._drop(job)
            return False
        await self._resume(job, IngestJob.read(body))
        return True

    def _records(self) -> JobRecords:
        if self._bus.records is None:
            raise RuntimeError("the controller's bus was made without the records bucket")
        return self._bus.records

    async def recorded_progress(
        self, parsed: IngestJob
    ) -> tuple[JobProgress, OutcomeRecord | None, int | None]:
        """The job's progress as the apiserver and the records bucket know it: the status
        (conditions, times, a rejection; an older controller's index ranges, merged into
        the record once by the next write) with the outcome record merged in. Also the
        record as stored and its revision (None: no record yet)."""
        progress = JobProgress.from_job(parsed)
        ref = parsed.ref
        stored, revision = await self._records().outcomes(ref.namespace, ref.name, ref.uid)
        if stored is not None:
            progress.merge_record(stored)
        return progress, stored, revision

    async def _resume(self, job: TrackedJob, parsed: IngestJob) -> None:
        """Take up a job from what is stored about it (after a restart: all there is)."""
        try:
            upload_ids = (await self._bus.with_items(parsed)).spec.upload_ids()
        except InvalidSpec:
            # Its item list is gone or wrong: dispatch fails the job; no upload to release.
            upload_ids = ()
        progress, job.recorded, job.record_revision = await self.recorded_progress(parsed)
        job.progress = progress
        job.dispatch_announced = progress.dispatched
        job.end_announced = parsed.status.phase.finished
        job.upload_ids = upload_ids
        job.collection = parsed.spec.collection
        job.resource_version = parsed.metadata.resource_version
        status = parsed.status
        job.stale_indexes = bool(status.succeeded_indexes or status.failed_indexes)

    def _apply_inbox(self, job: TrackedJob) -> None:
        assert job.progress is not None
        inbox, job.inbox = job.inbox, {}
        for key, (result, ack, link) in inbox.items():
            if job.progress.record(result):
                job.changed = True
                if result.outcome != "succeeded":
                    job.details[result.index] = FailureDetail(
                        uid=job.uid,
                        index=result.index,
                        asset=result.asset,
                        reason=str(result.reason or FailureReason.UNKNOWN),
                        message=result.message,
                    )
                if link is not None and len(job.links) < MAX_LINKS:
                    job.links.append(link)
            else:
                metrics.RESULTS.labels("duplicate").inc()
            # A newer delivery's acknowledgement replaces the one held for the same item.
            job.unacked[key] = ack

    # -- dispatch -----------------------------------------------------------------------

    async def begin_dispatch(self, parsed: IngestJob) -> TrackedJob:
        """Track a job before its work is published, so early results fold into it."""
        ref = parsed.ref
        self._gone.pop(ref.uid, None)
        job = self._jobs.get(ref.uid)
        if job is None:
            job = self._jobs[ref.uid] = TrackedJob(ref.namespace, ref.name, ref.uid)
        async with job.lock:
            if job.progress is None:
                await self._resume(job, parsed)
        job.dispatching = True
        return job

    async def end_dispatch(self, job: TrackedJob, version: str | None) -> bool:
        """Record the job as dispatched (`version` None: leave it as it is); False if gone."""
        try:
            async with job.lock:
                assert job.progress is not None
                if version is not None:
                    job.progress.mark_dispatched(version, datetime.now(UTC))
                    job.changed = True
                if job.changed:
                    await self._write(job, "dispatch")
                return job.uid in self._jobs
        finally:
            job.dispatching = False
            if job.progress is not None and job.progress.done and job.uid in self._jobs:
                await self._finish(job)

    async def record_version(self, job: TrackedJob, version: str) -> str | None:
        """Persist a version picked by the controller before any item uses it; returns
        the version in effect (another writer's, if one was recorded first), or None if
        the job is gone.

        Conditional on the resourceVersion last seen: the status subresource does not
        check the uid, so a blind write could pin a version on a job of the same name
        created since, or overwrite a version another replica already published with.
        """
        async with job.lock:
            assert job.progress is not None
            for _ in range(CONFLICT_RETRIES):
                try:
                    written = await self._kube.patch_status(
                        job.namespace, job.name, job.uid, {"version": version}, job.resource_version
                    )
                except Conflict:
                    metrics.STATUS_CONFLICTS.inc()
                    body = await self._kube.get_job(job.namespace, job.name)
                    if body is None or body.get("metadata", {}).get("uid") != job.uid:
                        return None
                    job.resource_version = str(body["metadata"]["resourceVersion"])
                    recorded = IngestJob.read(body).version
                    if recorded:
                        job.progress.version = recorded
                        return recorded
                    continue
                if written is None:
                    return None
                job.progress.version = version
                self._wrote(job, written)
                return version
        raise RuntimeError(f"status of {job.namespace}/{job.name} kept changing under us")

    def catch_up(self, ref: JobRef) -> None:
        """Write a job's status again from its record (see Reconciler.reconcile)."""
        if ref.uid in self._gone:
            return
        job = self._jobs.get(ref.uid)
        if job is None:
            job = self._jobs[ref.uid] = TrackedJob(ref.namespace, ref.name, ref.uid)
        job.changed = True
        if job.driver is None:
            job.driver = asyncio.create_task(self._drive(job), name=f"status {ref.uid}")

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event of a job: adopt its resourceVersion if it holds nothing new to us.

        Right after a job's create handler, kopf records its own progress and diff base
        in `status.kopf`, so the job's next status write (often its last) met a conflict
        almost every time, then paid a re-read and a retry: three apiserver calls instead
        of one, on the thread pool all jobs share. When an event shows the status we own
        exactly as our last write left it, whatever changed since is someone else's
        field, and a write conditional on the event's resourceVersion loses nothing.
        Anything else (an older event, another writer's content) is left to the
        conflict-and-merge path as before.
        """
        metadata = body.get("metadata") or {}
        job = self._jobs.get(str(metadata.get("uid")))
        version = metadata.get("resourceVersion")
        if job is None or job.written is None or not version:
            return
        if version != job.resource_version and _owned(body) == job.written:
            job.resource_version = str(version)

    async def reject(self, job: TrackedJob, message: str) -> None:
        """Fail a job whose spec cannot be dispatched, and keep nothing of it."""
        try:
            async with job.lock:
                assert job.progress is not None
                job.progress.reject(message)
                job.changed = True
                job.dispatching = False
                await self._write(job, "rejected")
        finally:
            # Written or not (the caller retries), no tracker outlives the attempt.
            self._jobs.pop(job.uid, None)

    def announce(self, job: JobRef, event: events.JobEvent) -> None:
        """Post a Kubernetes Event about the job (a writer made without a recorder posts
        none)."""
        if self._recorder is not None:
            self._recorder.record(job, event)

    def progress_of(self, uid: str) -> JobProgress | None:
        job = self._jobs.get(uid)
        return job.progress if job else None

    # -- writing ------------------------------------------------------------------------

    async def _unwritable(self, job: TrackedJob, error: Unwritable) -> None:
        """The apiserver refuses this job's status as such: no retry can write it, and
        holding its results would hold them for ever (and, past JetStream's limit of
        unacknowledged messages, every tenant's). Fail the job with the reason (a
        condition, an Event), write what cannot grow if that is accepted, acknowledge
        everything held, and keep nothing of it."""
        assert job.progress is not None
        message = f"the apiserver refused the job's status ({error}); it ended here"
        log.error(message, extra={"namespace": job.namespace, "job": job.name})
        metrics.STATUS_PATCHES.labels("unwritable").inc()
        async with job.lock:
            job.progress.abandon(message)
            try:
                written = await self._kube.patch_status(
                    job.namespace,
                    job.name,
                    job.uid,
                    job.progress.to_status(datetime.now(UTC)),
                    None,
                )
                if written is not None:
                    self._wrote(job, written)
            except Exception:
                log.exception(
                    "even the compact status of a failed job could not be written",
                    extra={"namespace": job.namespace, "job": job.name},
                )
            try:
                await self._summarise(job)
            except Exception:
                log.exception(
                    "the summary of a failed job could not be written",
                    extra={"namespace": job.namespace, "job": job.name},
                )
        self.announce(
            JobRef(namespace=job.namespace, name=job.name, uid=job.uid),
            events.finished(job.progress.state),
        )
        try:
            await self._bus.release(job.uid, job.upload_ids)
        except Exception:
            log.exception("releasing a failed job's uploads failed")
        self._drop(job)

    async def _write(self, job: TrackedJob, kind: str) -> None:
        assert job.progress is not None
        # The Events this write makes true, posted once it succeeded and in this order
        # (a fast job's results can end it in the very write that records its dispatch).
        # `ends` is read before to_status stamps completedAt.
        queued = job.progress.dispatched and not job.dispatch_announced
        ends = job.progress.done and not job.end_announced
        # The record first: once it holds the results, they are acknowledged, whatever
        # becomes of the status write.
        await self._record(job)
        await self._acknowledge(job)
        status = job.progress.to_status(datetime.now(UTC))
        if job.progress.done:
            await self._summarise(job)
        links, job.links = job.links, []
        with tracer.start_as_current_span(
            "emulsion.controller.status",
            links=links,
            attributes={
                "emulsion.job": f"{job.namespace}/{job.name}",
                "emulsion.job.uid": job.uid,
                "emulsion.job.progress": status["progress"],
            },
        ):
            written = await self._patch(job, status)
        if not written:
            self._drop(job)
            return
        metrics.STATUS_PATCHES.labels(kind).inc()
        ref = JobRef(namespace=job.namespace, name=job.name, uid=job.uid)
        if queued:
            job.dispatch_announced = True
            progress = job.progress
            self.announce(ref, events.dispatched(progress.total, progress.version or "unknown"))
        if ends:
            job.end_announced = True
            self.announce(ref, events.finished(job.progress.state))
        job.last_write = time.monotonic()
        job.changed = False
        if job.progress.done and not job.dispatching:
            await self._finish(job)

    async def _patch(self, job: TrackedJob, status: dict[str, Any]) -> bool:
        """Write `status` unless the job changed meanwhile; then merge what it holds, retry.

        Each write carries the whole status from memory, so writing blindly over another
        writer's (a second replica during a rollout, or a restarted controller whose old
        self was still finishing) would lose its items. The resourceVersion precondition
        turns that into a conflict, and the merge keeps both sides' outcomes.
        """
        assert job.progress is not None
        for _ in range(CONFLICT_RETRIES):
            if job.stale_indexes:
                # null in a merge patch removes the field.
                status = {**status, "succeededIndexes": None, "failedIndexes": None}
            try:
                written = await self._kube.patch_status(
                    job.namespace, job.name, job.uid, status, job.resource_version
                )
            except Conflict:
                metrics.STATUS_CONFLICTS.inc()
                body = await self._kube.get_job(job.namespace, job.name)
                if body is None or body.get("metadata", {}).get("uid") != job.uid:
                    return False
                job.progress.merge(JobProgress.from_object(body))
                job.resource_version = body["metadata"]["resourceVersion"]
                job.written = None  # what we read is not what we wrote
                status = job.progress.to_status(datetime.now(UTC))
                continue
            if written is None:
                return False
            job.stale_indexes = False
            self._wrote(job, written)
            return True
        raise RuntimeError(f"status of {job.namespace}/{job.name} kept changing under us")

    async def _record(self, job: TrackedJob) -> None:
        """Write the failures folded since the last write, then the outcome record.

        Compare-and-set on the record's revision: another writer's outcomes (a second
        replica in a rollout, our own write before a restart) are read and merged, the
        recorded outcome of an index winning as in JobProgress.merge, then written again.
        """
        assert job.progress is not None
        records = self._records()
        details = job.details
        await bounded(records.put_failure(job.namespace, job.name, d) for d in details.values())
        for index in list(details):
            job.details.pop(index, None)
        for _ in range(CONFLICT_RETRIES):
            record = job.progress.outcome_record(job.uid)
            if record == job.recorded:
                return
            try:
                job.record_revision = await records.write_outcomes(
                    job.namespace, job.name, record, job.record_revision
                )
            except RecordConflict:
                metrics.RECORD_CONFLICTS.inc()
                stored, job.record_revision = await records.outcomes(
                    job.namespace, job.name, job.uid
                )
                if stored is not None:
                    job.progress.merge_record(stored)
                continue
            job.recorded = record
            return
        raise RuntimeError(f"outcomes of {job.namespace}/{job.name} kept changing under us")

    async def _summarise(self, job: TrackedJob) -> None:
        """How the job ended, for the API to tell once the job expired (idempotent)."""
        assert job.progress is not None
        summary = job.progress.summary(job.uid, job.collection)
        await self._records().put_summary(job.namespace, job.name, summary)

    def _wrote(self, job: TrackedJob, body: Mapping[str, Any]) -> None:
        job.resource_version = str(body["metadata"]["resourceVersion"])
        job.written = _owned(body)

    async def _acknowledge(self, job: TrackedJob) -> None:
        acks, job.unacked = job.unacked, {}
        for ack in acks.values():
            await ack()

    async def _finish(self, job: TrackedJob) -> None:
        self._jobs.pop(job.uid, None)
        self._bus.forget_items(job.uid)
        await self._bus.release(job.uid, job.upload_ids)
        log.info(
            "job finished",
            extra={
                "namespace": job.namespace,
                "job": job.name,
                "phase": str(job.progress.phase) if job.progress else None,
            },
        )

    # -- forgetting ---------------------------------------------------------------------

    def forget(self, uid: str) -> None:
        """The job is gone (deleted): drop its state; its late results are acked unread."""
        job = self._jobs.get(uid)
        if job is not None:
            self._drop(job)
        else:
            self._remember_gone(uid)

    def _drop(self, job: TrackedJob) -> None:
        self._jobs.pop(job.uid, None)
        self._bus.forget_items(job.uid)
        self._remember_gone(job.uid)
        acks = [ack for _, ack, _ in job.inbox.values()] + list(job.unacked.values())
        job.inbox, job.unacked, job.changed = {}, {}, False
        for ack in acks:
            self._spawn(ack())

    def _remember_gone(self, uid: str) -> None:
        self._gone[uid] = None
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("acknowledging a dropped result failed")

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        drivers = [job.driver for job in self._jobs.values() if job.driver is not None]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, *self._background, return_exceptions=True)


def _owned(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a job's status the controller writes: all but kopf's bookkeeping."""
    return {key: value for key, value in (body.get("status") or {}).items() if key != "kopf"}


def _link(headers: Mapping[str, str] | None) -> trace.Link | None:
    context = trace.get_current_span(telemetry.extract(headers)).get_span_context()
    return trace.Link(context) if context.is_valid else None
