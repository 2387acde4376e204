"""Fair share within the bulk lane: the controller feeds bulk work a window at a time.

A work stream is first in, first out: a 5,000-photo import published whole sits in front
of everything that comes after it. So a bulk job is marked Queued at dispatch but its
items are published here: kept per tenant (the job's `emulsion.io/tenant` label, else
`ns:<namespace>`), each tenant's jobs in order of arrival and each job's items in index
order, round-robin across the tenants with work to publish, one item per tenant per
round. A tenant's outstanding items (published, no result yet) stay within its window,
`max(min_window, high_water // tenants)`, `tenants` counting those with items still to
publish: three tenants at once each get a third of `high_water`, a lone tenant all of it
(work-conserving: the processors, and KEDA, which sees only the stream, still see enough
work to scale to their maximum). A result frees room, and the next refill publishes the
next item of the tenant it freed. Refills come with each result, each new bulk job, and
every `interval` seconds. Interactive jobs are published whole at dispatch (dispatch.py);
they are counted here only for the queue metrics (`snapshot`).

Restart safety: how many of a bulk job's items were published (its cursor) is recorded
in the records bucket (`<ns>.<job>.cursor`) after the publish (publish, then record). A
controller that died in between publishes those items again from the older cursor, and
their message ids (`<uid>/<index>`) have the stream drop the copies within its ten-minute
duplicate window; later than that a copy is processed again (idempotent by version).
Dispatch records a cursor of 0 before it marks a bulk job Queued, so a job with no cursor
was published whole (interactive, or by an older controller). A resumed Queued job
rejoins here from its cursor, its open items being those below it without an outcome.

`FairShare` is the policy (no I/O, a hypothesis property in the tests); `Feeder` does the
publishing, the recording and the bookkeeping around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from emulsion_contracts import crd
from emulsion_contracts.ingestjob import IngestJob, InvalidSpec
from emulsion_contracts.jobrecords import FeedCursor
from emulsion_contracts.messages import ItemResult
from emulsion_contracts.wire import Lane
from emulsion_controller import metrics, queue_metrics
from emulsion_controller.backlog import LaneDepth
from emulsion_controller.jetstream import Bus, ItemsUnavailable, Outgoing
from emulsion_controller.progress import JobProgress
from emulsion_runtime import telemetry

log = logging.getLogger(__name__)
tracer = trace.get_tracer("emulsion.controller")


def tenant_of(job: IngestJob) -> str:
    """Whose work this is: the API's tenant label, else the job's namespace."""
    return job.metadata.labels.get(crd.LABEL_TENANT) or f"ns:{job.ref.namespace}"


@dataclass
class FedJob:
    """One job as the feeder accounts for it."""

    uid: str
    tenant: str
    lane: Lane
    total: int
    # Items 0 .. cursor - 1 have been published.
    cursor: int
    # Published items without a result yet.
    open: set[int] = field(default_factory=set)
    # When it was taken up (monotonic): the age of its oldest waiting item.
    since: float = 0.0

    @property
    def unpublished(self) -> int:
        return self.total - self.cursor

    @property
    def waiting(self) -> int:
        return self.unpublished + len(self.open)


class FairShare:
    """The bulk lane's round robin and windows, and every job's account (no I/O)."""

    def __init__(self, high_water: int, min_window: int) -> None:
        self.high_water = high_water
        self.min_window = min_window
        self.jobs: dict[str, FedJob] = {}
        # Per bulk tenant: its jobs with items still to publish, in order of arrival.
        self.queues: dict[str, deque[str]] = {}
        # Bulk tenants in their turn order (the next to serve first).
        self.turns: deque[str] = deque()
        # Per bulk tenant: its published items without a result.
        self.outstanding: dict[str, int] = {}

    # -- what comes in ------------------------------------------------------------------

    def add(
        self,
        uid: str,
        tenant: str,
        lane: Lane,
        total: int,
        cursor: int,
        finished: set[int] | frozenset[int] = frozenset(),
        since: float = 0.0,
    ) -> bool:
        """Account for a job: published up to `cursor`, `finished` having outcomes.
        Idempotent (False when it is known already); a job with nothing left is not kept."""
        if uid in self.jobs:
            return False
        cursor = max(0, min(cursor, total))
        job = FedJob(uid, tenant, lane, total, cursor, set(range(cursor)) - finished, since)
        if job.waiting == 0:
            return False
        self.jobs[uid] = job
        if lane is Lane.BULK:
            self.outstanding[tenant] = self.outstanding.get(tenant, 0) + len(job.open)
            if job.unpublished:
                self._enqueue(job)
        return True

    def result(self, uid: str, index: int) -> bool:
        """An item's outcome arrived; True when it freed room in the bulk lane."""
        job = self.jobs.get(uid)
        if job is None or index not in job.open:
            return False
        job.open.discard(index)
        freed = job.lane is Lane.BULK
        if freed:
            self.outstanding[job.tenant] -= 1
        if job.waiting == 0:
            self.drop(uid)
        return freed

    def drop(self, uid: str) -> FedJob | None:
        """The job ended or went away: forget it."""
        job = self.jobs.pop(uid, None)
        if job is None or job.lane is not Lane.BULK:
            return job
        tenant = job.tenant
        self.outstanding[tenant] -= len(job.open)
        queue = self.queues.get(tenant)
        if queue is not None and uid in queue:
            queue.remove(uid)
        if not queue:
            self.queues.pop(tenant, None)
            with contextlib.suppress(ValueError):
                self.turns.remove(tenant)
        if self.outstanding.get(tenant) == 0 and tenant not in self.queues:
            del self.outstanding[tenant]
        return job

    # -- what goes out ------------------------------------------------------------------

    def window(self) -> int:
        """Each bulk tenant's most outstanding items now."""
        return max(self.min_window, self.high_water // max(1, len(self.queues)))

    def plan(self) -> list[tuple[str, int]]:
        """The (job uid, index) to publish now, in order: one item per tenant with room
        per round, round after round, until no tenant has both room and items left.
        The accounts move as if they were published (see `unpublish`)."""
        planned: list[tuple[str, int]] = []
        while True:
            window = self.window()
            served = False
            for tenant in list(self.turns):
                if self.outstanding.get(tenant, 0) >= window:
                    continue
                planned.append(self._take(tenant))
                served = True
                if tenant in self.queues:  # its turn comes again after the others'
                    self.turns.remove(tenant)
                    self.turns.append(tenant)
            if not served:
                return planned

    def unpublish(self, uid: str, start: int) -> None:
        """Publishing the job's items from `start` on failed: they are to publish again."""
        job = self.jobs.get(uid)
        if job is None or start >= job.cursor:
            return
        retracted = {i for i in job.open if i >= start}
        job.open -= retracted
        self.outstanding[job.tenant] -= len(retracted)
        job.cursor = start
        queue = self.queues.get(job.tenant)
        if queue is None or uid not in queue:
            if queue is None:
                queue = self.queues[job.tenant] = deque()
                self.turns.appendleft(job.tenant)
            queue.appendleft(uid)

    def advance(self, uid: str, cursor: int) -> None:
        """Another controller published the job up to `cursor` (its recorded cursor):
        those items count as published without a result."""
        job = self.jobs.get(uid)
        if job is None or job.lane is not Lane.BULK or cursor <= job.cursor:
            return
        cursor = min(cursor, job.total)
        job.open.update(range(job.cursor, cursor))
        self.outstanding[job.tenant] += cursor - job.cursor
        job.cursor = cursor
        if not job.unpublished:
            queue = self.queues[job.tenant]
            queue.remove(uid)
            if not queue:
                del self.queues[job.tenant]
                self.turns.remove(job.tenant)

    def _take(self, tenant: str) -> tuple[str, int]:
        queue = self.queues[tenant]
        job = self.jobs[queue[0]]
        index = job.cursor
        job.cursor += 1
        job.open.add(index)
        self.outstanding[tenant] += 1
        if not job.unpublished:
            queue.popleft()
            if not queue:
                del self.queues[tenant]
                self.turns.remove(tenant)
        return job.uid, index

    def _enqueue(self, job: FedJob) -> None:
        queue = self.queues.get(job.tenant)
        if queue is None:
            queue = self.queues[job.tenant] = deque()
            self.turns.append(job.tenant)
        queue.append(job.uid)

    # -- what is seen -------------------------------------------------------------------

    def snapshot(self) -> list[LaneDepth]:
        """Waiting work per lane and tenant (unpublished and published without result)."""
        depths: dict[tuple[Lane, str], tuple[int, float | None]] = {}
        for job in self.jobs.values():
            waiting, oldest = depths.get((job.lane, job.tenant), (0, None))
            if job.waiting:
                since = job.since if oldest is None else min(oldest, job.since)
                depths[(job.lane, job.tenant)] = (waiting + job.waiting, since)
        return [
            LaneDepth(lane, tenant, waiting, oldest)
            for (lane, tenant), (waiting, oldest) in sorted(depths.items())
        ]


@dataclass
class _Feeding:
    """A bulk job's items to publish: the job (its items read in when needed), version."""

    job: IngestJob
    version: str


def _trace_context(job: IngestJob) -> Any:
    """The trace context the API recorded on the job (empty for kubectl jobs)."""
    annotations = job.metadata.annotations
    carrier = {
        key: annotations[annotation]
        for key, annotation in (
            ("traceparent", crd.ANNOTATION_TRACEPARENT),
            ("tracestate", crd.ANNOTATION_TRACESTATE),
        )
        if annotation in annotations
    }
    return telemetry.extract(carrier)


def _runs(plan: list[tuple[str, int]]) -> dict[str, list[int]]:
    """The plan's indexes per job, in order."""
    runs: dict[str, list[int]] = {}
    for uid, index in plan:
        runs.setdefault(uid, []).append(index)
    return runs


class Feeder:
    """Publishes bulk work fairly (FairShare), records cursors, keeps the accounts."""

    def __init__(
        self,
        bus: Bus,
        *,
        interactive_max_items: int,
        high_water: int,
        min_window: int,
        interval: float = 1.0,
        work_messages: Callable[..., list[Outgoing]],
        may_feed: Callable[[], bool] = lambda: True,
    ) -> None:
        """`work_messages` is dispatch.work_messages (passed in: dispatch uses this)."""
        self._bus = bus
        self.interactive_max_items = interactive_max_items
        self.interval = interval
        self.policy = FairShare(high_water, min_window)
        self._feeding: dict[str, _Feeding] = {}
        self._names: dict[str, tuple[str, str]] = {}
        # Cursors published past what is recorded.
        self._unrecorded: set[str] = set()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._may_feed = may_feed
        # Feeding was held back (a peer of a higher priority acted meanwhile).
        self._held_back = False
        self._work_messages = work_messages

    def lane(self, job: IngestJob) -> Lane:
        return job.spec.lane(self.interactive_max_items)

    # -- jobs coming and going ----------------------------------------------------------

    async def start_bulk(self, job: IngestJob) -> None:
        """A bulk job about to be marked Queued: its cursor recorded as 0 first, so a job
        without one reads as published whole (see the module's note)."""
        ref = job.ref
        await self._records().put_cursor(
            ref.namespace, ref.name, FeedCursor(uid=ref.uid, published=0)
        )

    async def take(self, job: IngestJob, version: str, progress: JobProgress) -> bool:
        """Account for a dispatched job (new, or resumed after a restart) from what is
        recorded; a bulk one is fed from its cursor. Idempotent."""
        ref = job.ref
        if ref.uid in self.policy.jobs or progress.done or not progress.dispatched:
            return False
        lane = self.lane(job)
        cursor = job.spec.count
        if lane is Lane.BULK:
            recorded = await self._records().cursor(ref.namespace, ref.name, ref.uid)
            if recorded is not None:
                cursor = recorded
        finished = progress.succeeded | progress.failed
        async with self._lock:
            taken = self.policy.add(
                ref.uid,
                tenant_of(job),
                lane,
                job.spec.count,
                cursor,
                finished,
                time.monotonic(),
            )
            if taken:
                self._names[ref.uid] = (ref.namespace, ref.name)
                if lane is Lane.BULK and cursor < job.spec.count:
                    self._feeding[ref.uid] = _Feeding(job, version)
        if taken:
            self.wake()
        return taken

    async def drop(self, uid: str) -> None:
        """The job is deleted: nothing more of it is published (a publish under way ends
        first, so a purge after this finds all there is)."""
        async with self._lock:
            self._forget(uid)

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: a job that ended (its every outcome recorded) is let go."""
        phase = crd.Phase.parse((body.get("status") or {}).get("phase"))
        if phase.finished:
            uid = str((body.get("metadata") or {}).get("uid"))
            if uid in self.policy.jobs:
                self._forget(uid)

    def result_seen(self, result: ItemResult) -> None:
        """An item's outcome arrived (results, advisories, lost results alike)."""
        uid = result.job.uid
        if self.policy.result(uid, result.index):
            self.wake()
        if uid not in self.policy.jobs:
            self._feeding.pop(uid, None)
            self._names.pop(uid, None)

    def reconcile(self, finished: Callable[[str], JobProgress | None]) -> None:
        """Close items whose outcomes the status writer folded but this did not see (they
        came before the job was resumed here)."""
        for uid, job in list(self.policy.jobs.items()):
            progress = finished(uid)
            if progress is None or not job.open:
                continue
            done = [i for i in job.open if i in progress.succeeded or i in progress.failed]
            for index in done:
                self.policy.result(uid, index)
            if uid not in self.policy.jobs:
                self._feeding.pop(uid, None)
                self._names.pop(uid, None)
            if done:
                self.wake()

    def _forget(self, uid: str) -> None:
        self.policy.drop(uid)
        self._feeding.pop(uid, None)
        self._names.pop(uid, None)
        self._unrecorded.discard(uid)

    # -- what others ask ----------------------------------------------------------------

    async def published(self, job: IngestJob) -> int:
        """How many of the job's items (from index 0) have been published: what lost
        results may look for."""
        ref = job.ref
        fed = self.policy.jobs.get(ref.uid)
        if fed is not None:
            return fed.cursor
        recorded = await self._records().cursor(ref.namespace, ref.name, ref.uid)
        return job.spec.count if recorded is None else recorded

    def snapshot(self) -> list[LaneDepth]:
        return self.policy.snapshot()

    # -- feeding ------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(
        self, stopping: asyncio.Event, progress: Callable[[str], JobProgress | None]
    ) -> None:
        """Refill whenever woken, and every `interval`; failures are retried."""
        reconciled = -math.inf
        while not stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() - reconciled >= self.interval:
                    # Over every job: once an interval, not on every result.
                    self.reconcile(progress)
                    reconciled = time.monotonic()
                    # A standby's accounts are not the queue: the active one reports it.
                    depths = self.snapshot() if self._may_feed() else []
                    queue_metrics.export(depths, reconciled)
                    metrics.FEED_ROUNDS.inc()
                await self.feed()
            except Exception:
                log.exception("feeding bulk work failed; retried")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_or(stopping), self.interval)

    async def _wake_or(self, stopping: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def feed(self) -> int:
        """Publish what the policy allows now, then record the cursors; returns how many
        items the stream took as new."""
        async with self._lock:
            if not self._may_feed():
                self._held_back = True
                return 0
            if self._held_back:
                await self._catch_up()
                self._held_back = False
            plan = self.policy.plan()
            fresh = 0
            if plan:
                fresh = await self._publish(plan)
            await self._record()
            return fresh

    async def _publish(self, plan: list[tuple[str, int]]) -> int:
        runs = _runs(plan)
        built: dict[str, Iterator[Outgoing]] = {}
        for uid, indexes in runs.items():
            feeding = self._feeding.get(uid)
            if feeding is None:  # it ended or went away since the plan
                self._forget(uid)
                continue
            try:
                loaded = await self._bus.with_items(feeding.job)
                ref = loaded.ref
                # Each item's trace goes on from the request that made the job, as at
                # dispatch (the messages carry the span's context).
                with tracer.start_as_current_span(
                    "emulsion.controller.feed",
                    context=_trace_context(loaded),
                    attributes={
                        "emulsion.job": f"{ref.namespace}/{ref.name}",
                        "emulsion.job.uid": ref.uid,
                        "emulsion.items": len(indexes),
                    },
                ):
                    messages = self._work_messages(
                        loaded, feeding.version, only=set(indexes), lane=Lane.BULK
                    )
            except ItemsUnavailable as error:
                log.warning("items of a bulk job cannot be read now: %s", error)
                self.policy.unpublish(uid, indexes[0])
                continue
            except InvalidSpec as error:
                # Dispatch read them: only a list gone from the store since comes here.
                # Its remaining items cannot be published; lost results ends the rest.
                log.error("items of a bulk job cannot be fed: %s", error)
                self._forget(uid)
                continue
            built[uid] = iter(messages)
        ordered = [next(built[uid]) for uid, _ in plan if uid in built]
        try:
            fresh = await self._bus.publish(ordered)
        except Exception:
            for uid in built:
                self.policy.unpublish(uid, runs[uid][0])
            raise
        self._unrecorded.update(built)
        metrics.ITEMS_DISPATCHED.inc(fresh)
        log.debug("fed bulk work", extra={"items": len(ordered), "new": fresh})
        return fresh

    async def _catch_up(self) -> None:
        """After a pause: the cursors another controller recorded meanwhile count."""
        records = self._records()
        for uid, job in list(self.policy.jobs.items()):
            names = self._names.get(uid)
            if job.lane is not Lane.BULK or names is None:
                continue
            recorded = await records.cursor(names[0], names[1], uid)
            if recorded is not None:
                self.policy.advance(uid, recorded)

    async def _record(self) -> None:
        records = self._records()
        for uid in list(self._unrecorded):
            job = self.policy.jobs.get(uid)
            names = self._names.get(uid)
            if job is None or names is None:
                self._unrecorded.discard(uid)
                continue
            namespace, name = names
            await records.put_cursor(namespace, name, FeedCursor(uid=uid, published=job.cursor))
            self._unrecorded.discard(uid)
            if not job.unpublished:
                self._feeding.pop(uid, None)

    def _records(self) -> Any:
        if self._bus.records is None:
            raise RuntimeError("the controller's bus was made without the records bucket")
        return self._bus.records
