"""Writes each job's outcome record and its status, coalescing writes.

One `TrackedJob` per running job holds its progress in memory (folding.py folds results
into it; outcomes.py writes its outcome record; settling.py acknowledges the results and
lets the job go; events.py posts the Events a write makes true). Results are applied as
they arrive, but a running job is written at most once per `interval` (plus once at the
end). A write is, in this order: the FailureDetail of each newly failed item, the job's
OutcomeRecord (which items finished, in the records bucket, compare-and-set), and only
then the compact status (counts, conditions, examples). A result's message is
acknowledged once the record holding it is written: a crash loses nothing (the
redelivered result is then a no-op), and a status the apiserver will not take never
holds results back, since the record already has them. A conflict on the record (a
second replica, or our own write before a restart) is read, merged and written again.
All writes of one job are serialised by its lock, and each carries the whole status the
controller owns, so a later write never loses an earlier one's content. Each write is
also conditional on the resourceVersion last seen; on a conflict the recorded status is
merged in first, so another writer's (a second replica's) content survives too. kopf's
own bookkeeping (`status.kopf`) after a job's create handler is such a change; a watch
event showing that nothing but it changed since our write lets the next write go ahead
without the conflict, the re-read and the retry (see `observe`).

While the apiserver fails (429, 5xx, 403 while RBAC is being fixed), a job's reads and
writes are retried with capped exponential backoff and jitter, never at once: a tight
retry loop per job would hammer an apiserver that is already struggling. What is held
meanwhile is bounded: one result or acknowledgement per item and channel, however often
JetStream redelivers (every ack_wait) while nothing can be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from emulsion_contracts.ingestjob import IngestJob, InvalidSpec
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_controller import events, folding, metrics
from emulsion_controller.apiserver import Conflict, Kube, Unwritable
from emulsion_controller.folding import RESULTS_CHANNEL, Ack, TrackedJob, write_interval
from emulsion_controller.jetstream import Bus
from emulsion_controller.outcomes import CONFLICT_RETRIES, Outcomes
from emulsion_controller.progress import JobProgress
from emulsion_controller.settling import Settler

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.controller")


class StatusWriter:
    def __init__(
        self,
        kube: Kube,
        bus: Bus,
        interval: float,
        retry_ceiling: float = 30.0,
        recorder: events.EventRecorder | None = None,
        results_seen: Callable[[ItemResult], None] | None = None,
    ) -> None:
        """`results_seen` hears of every outcome submitted (the feeder's refill)."""
        self._kube = kube
        self._results_seen = results_seen
        self._bus = bus
        self._interval = interval
        self._retry_ceiling = retry_ceiling
        self._outcomes = Outcomes(bus)
        self._settler = Settler(bus, recorder)

    # -- results ------------------------------------------------------------------------

    def submit(
        self,
        result: ItemResult,
        ack: Ack,
        headers: Mapping[str, str] | None,
        channel: str = RESULTS_CHANNEL,
    ) -> None:
        """Queue one item result; it is folded, written and then acknowledged (see
        folding.hold for a result already held)."""
        metrics.RESULTS.labels(result.outcome).inc()
        if self._results_seen is not None:
            self._results_seen(result)
        ref = result.job
        if self._settler.is_gone(ref.uid):
            self._settler.spawn(ack())
            return
        job = self._settler.track(ref.namespace, ref.name, ref.uid)
        folding.hold(job, result, ack, headers, channel)
        self._wake(job)

    def held(self) -> int:
        """Results and acknowledgements held in memory until a status write succeeds."""
        return self._settler.held()

    def holds_results(self, uid: str) -> bool:
        """Whether results of this job are waiting to be written (so none is lost)."""
        job = self._settler.jobs.get(uid)
        return job is not None and bool(job.inbox or job.changed)

    def _wake(self, job: TrackedJob) -> None:
        if job.driver is None:
            job.driver = asyncio.create_task(self._drive(job), name=f"status {job.uid}")

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
                        folding.fold(job)
                        assert job.progress is not None
                        interval = write_interval(self._interval, job.progress.total)
                        wait = job.last_write + interval - time.monotonic()
                        if job.changed and (job.progress.done or wait <= 0 or failures):
                            await self._write(job, "final" if job.progress.done else "progress")
                        elif not job.changed:
                            await self._settler.settle(job)
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

    async def _read(self, job: TrackedJob) -> dict[str, Any] | None:
        """The job as the apiserver has it now; None if it is gone or another of its name."""
        body = await self._kube.get_job(job.namespace, job.name)
        if body is None or body.get("metadata", {}).get("uid") != job.uid:
            return None
        return body

    async def _load(self, job: TrackedJob) -> bool:
        body = await self._read(job)
        if body is None:
            log.info(
                "results for a job that no longer exists are dropped",
                extra={"namespace": job.namespace, "job": job.name, "uid": job.uid},
            )
            self._settler.drop(job)
            return False
        await self._resume(job, IngestJob.read(body))
        return True

    async def _resume(self, job: TrackedJob, parsed: IngestJob) -> None:
        """Take up a job from what is stored about it (after a restart: all there is)."""
        try:
            upload_ids = (await self._bus.with_items(parsed)).spec.upload_ids()
        except InvalidSpec:
            # Its item list is gone or wrong: dispatch fails the job; no upload to release.
            upload_ids = ()
        progress, job.recorded, job.record_revision = await self._outcomes.recorded_progress(parsed)
        job.progress = progress
        job.milestones.dispatched = progress.dispatched
        job.milestones.ended = parsed.status.phase.finished
        job.upload_ids = upload_ids
        job.collection = parsed.spec.collection
        job.resource_version = parsed.metadata.resource_version
        status = parsed.status
        job.stale_indexes = bool(status.succeeded_indexes or status.failed_indexes)

    # -- dispatch: the one owner of a job's `dispatching` -------------------------------

    @contextlib.asynccontextmanager
    async def dispatching(self, parsed: IngestJob) -> AsyncIterator[TrackedJob]:
        """The job tracked while its work is published (see begin_dispatch); however the
        dispatch ends, it is over when this block is left."""
        job = await self.begin_dispatch(parsed)
        try:
            yield job
        finally:
            self._dispatch_over(job)

    async def begin_dispatch(self, parsed: IngestJob) -> TrackedJob:
        """Track a job before its work is published, so early results fold into it."""
        ref = parsed.ref
        self._settler.revive(ref.uid)
        job = self._settler.track(ref.namespace, ref.name, ref.uid)
        async with job.lock:
            if job.progress is None:
                await self._resume(job, parsed)
        job.dispatching = True
        return job

    def _dispatch_over(self, job: TrackedJob) -> None:
        """The job's end no longer waits for its dispatch to be recorded."""
        job.dispatching = False

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
                return job.uid in self._settler.jobs
        finally:
            self._dispatch_over(job)
            if job.progress is not None and job.progress.done and job.uid in self._settler.jobs:
                await self._settler.finish(job)

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
                    body = await self._read(job)
                    if body is None:
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

    async def reject(self, job: TrackedJob, message: str) -> None:
        """Fail a job whose spec cannot be dispatched, and keep nothing of it."""
        try:
            async with job.lock:
                assert job.progress is not None
                job.progress.reject(message)
                job.changed = True
                self._dispatch_over(job)
                await self._write(job, "rejected")
        finally:
            # Written or not (the caller retries), no tracker outlives the attempt.
            self._settler.jobs.pop(job.uid, None)

    # -- what others tell it ------------------------------------------------------------

    def catch_up(self, ref: JobRef) -> None:
        """Write a job's status again from its record (see LostResults.check)."""
        if self._settler.is_gone(ref.uid):
            return
        job = self._settler.track(ref.namespace, ref.name, ref.uid)
        job.changed = True
        self._wake(job)

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
        job = self._settler.jobs.get(str(metadata.get("uid")))
        version = metadata.get("resourceVersion")
        if job is None or job.written is None or not version:
            return
        if version != job.resource_version and _owned(body) == job.written:
            job.resource_version = str(version)

    def progress_of(self, uid: str) -> JobProgress | None:
        job = self._settler.jobs.get(uid)
        return job.progress if job else None

    def forget(self, uid: str) -> None:
        """The job is gone (deleted): drop its state; its late results are acked unread."""
        self._settler.forget(uid)

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
                await self._outcomes.summarise(job)
            except Exception:
                log.exception(
                    "the summary of a failed job could not be written",
                    extra={"namespace": job.namespace, "job": job.name},
                )
        await self._settler.give_up(job)

    async def _write(self, job: TrackedJob, kind: str) -> None:
        assert job.progress is not None
        due = job.milestones.pending(job.progress)
        # The record first: once it holds the results, they are acknowledged, whatever
        # becomes of the status write.
        await self._outcomes.store(job)
        await self._settler.acknowledge(job)
        status = job.progress.to_status(datetime.now(UTC))
        if job.progress.done:
            await self._outcomes.summarise(job)
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
            self._settler.drop(job)
            return
        metrics.STATUS_PATCHES.labels(kind).inc()
        job.last_write = time.monotonic()
        job.changed = False
        await self._settler.after_write(job, due)

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
                body = await self._read(job)
                if body is None:
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

    def _wrote(self, job: TrackedJob, body: Mapping[str, Any]) -> None:
        job.resource_version = str(body["metadata"]["resourceVersion"])
        job.written = _owned(body)

    async def close(self) -> None:
        await self._settler.close()


def _owned(body: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a job's status the controller writes: all but kopf's bookkeeping."""
    return {key: value for key, value in (body.get("status") or {}).items() if key != "kopf"}
