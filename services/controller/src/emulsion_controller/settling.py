"""The jobs the status writer tracks, and what follows each write.

A folded result is acknowledged once the record holding it is written (`acknowledge`);
a status written posts the Events it made true (`after_write`); a job that ended, its
dispatch recorded, releases its staging leases and its item list (`finish`); a job that
is gone (deleted, replaced) is dropped, everything it held acknowledged unread, and
remembered for a while so its late results are dropped without a lookup (`drop`,
`forget`); one whose status the apiserver refuses is failed and dropped (`give_up`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable

from emulsion_controller import events
from emulsion_controller.folding import TrackedJob
from emulsion_controller.jetstream import Bus

log = logging.getLogger(__name__)

# Uids of deleted jobs remembered so their late results are dropped without a lookup.
GONE_REMEMBERED = 10_000


class Settler:
    def __init__(self, bus: Bus, recorder: events.EventRecorder | None = None) -> None:
        self._bus = bus
        self._recorder = recorder
        self.jobs: dict[str, TrackedJob] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

    def track(self, namespace: str, name: str, uid: str) -> TrackedJob:
        """The job as tracked, tracked from now on if it was not."""
        job = self.jobs.get(uid)
        if job is None:
            job = self.jobs[uid] = TrackedJob(namespace, name, uid)
        return job

    def is_gone(self, uid: str) -> bool:
        return uid in self._gone

    def revive(self, uid: str) -> None:
        """The job is being dispatched (again): its results count."""
        self._gone.pop(uid, None)

    def held(self) -> int:
        """Results and acknowledgements held in memory until a status write succeeds."""
        jobs = list(self.jobs.values())
        return sum(len(job.inbox) + len(job.unacked) for job in jobs)

    async def acknowledge(self, job: TrackedJob) -> None:
        acks, job.unacked = job.unacked, {}
        for ack in acks.values():
            await ack()

    async def settle(self, job: TrackedJob) -> None:
        """Nothing new to write: acknowledge what is held (only duplicates), and let a
        finished job go, unless its dispatch is still to be recorded."""
        await self.acknowledge(job)
        await self.finish_if_over(job)

    async def after_write(self, job: TrackedJob, due: tuple[bool, bool]) -> None:
        """A status write succeeded: post the Events it made true, then let the job go if
        it is over."""
        assert job.progress is not None
        job.milestones.post_due(self._recorder, job.ref, job.progress, due)
        await self.finish_if_over(job)

    async def finish_if_over(self, job: TrackedJob) -> None:
        if job.progress is not None and job.progress.done and not job.dispatching:
            await self.finish(job)

    async def give_up(self, job: TrackedJob) -> None:
        """The job failed where its status was refused: say how it ended, release its
        uploads, and keep nothing of it."""
        assert job.progress is not None
        events.post(self._recorder, job.ref, events.finished(job.progress.state))
        try:
            await self._bus.release(job.uid, job.upload_ids)
        except Exception:
            log.exception("releasing a failed job's uploads failed")
        self.drop(job)

    async def finish(self, job: TrackedJob) -> None:
        self.jobs.pop(job.uid, None)
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

    def forget(self, uid: str) -> None:
        """The job is gone (deleted): drop its state; its late results are acked unread."""
        job = self.jobs.get(uid)
        if job is not None:
            self.drop(job)
        else:
            self._remember_gone(uid)

    def drop(self, job: TrackedJob) -> None:
        self.jobs.pop(job.uid, None)
        self._bus.forget_items(job.uid)
        self._remember_gone(job.uid)
        acks = [ack for _, ack, _ in job.inbox.values()] + list(job.unacked.values())
        job.inbox, job.unacked, job.changed = {}, {}, False
        for ack in acks:
            self.spawn(ack())

    def _remember_gone(self, uid: str) -> None:
        self._gone[uid] = None
        while len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)

    def spawn(self, work: Awaitable[None]) -> None:
        """Acknowledge in the background: a dropped result waits for nothing."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("acknowledging a dropped result failed")

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        drivers = [job.driver for job in self.jobs.values() if job.driver is not None]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, *self._background, return_exceptions=True)
