"""The controller's JetStream side: signed work messages, staging leases, cancellations,
job versions for IngestJobs that came without one (made with kubectl), the item lists
of jobs that name theirs (spec.itemsRef), and the jobs' records (jobrecords)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from emulsion_contracts import natsauth, wire, worksigning
from emulsion_contracts.ingestjob import IngestJob, InvalidSpec, JobItem
from emulsion_runtime import clock, messaging, records_store
from emulsion_runtime.records_store import JobRecords
from emulsion_runtime.settings import NatsSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Requests in flight at once: enough to hide round trips, few enough not to flood NATS.
PIPELINE = 256
# Item lists kept in memory (by job uid) while their jobs run: a running job's list is
# read once, not on every restart of its tracker or re-dispatch. At 2,000 items of the
# longest names a list is ~1 MB; 64 of them bound the cache whatever the load, and a job
# pushed out is simply read again when it needs its items.
ITEM_LISTS_KEPT = 64


class ItemsUnavailable(Exception):
    """The item list could not be read now (NATS away): try again later, not a verdict."""


@dataclass(frozen=True)
class Outgoing:
    subject: str
    payload: bytes
    headers: dict[str, str]


async def bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run awaitables PIPELINE at a time, in order; the first failure is raised."""
    results: list[T] = []
    batch: list[Awaitable[T]] = []
    for call in calls:
        batch.append(call)
        if len(batch) == PIPELINE:
            results.extend(await asyncio.gather(*batch))
            batch = []
    if batch:
        results.extend(await asyncio.gather(*batch))
    return results


class Bus:
    def __init__(
        self,
        connection: Client,
        js: JetStreamContext,
        leases: KeyValue,
        cancelled: KeyValue,
        signing_key: bytes,
        versions: KeyValue | None = None,
        records: JobRecords | None = None,
    ) -> None:
        self.connection = connection
        self.js = js
        self._leases = leases
        self._cancelled = cancelled
        self._signing_key = signing_key
        self._versions = versions
        self.records = records
        self._item_lists: OrderedDict[str, tuple[JobItem, ...]] = OrderedDict()

    @classmethod
    async def connect(cls, settings: NatsSettings, signing_key: bytes) -> Bus:
        # The bootstrap identity: this connect creates what is missing.
        connection, js = await messaging.connect(settings, natsauth.CONTROLLER_IDENTITY)
        leases = await js.key_value(wire.STAGING_LEASES_BUCKET)
        cancelled = await js.key_value(wire.CANCELLED_BUCKET)
        versions = await js.key_value(wire.CLOCK_BUCKET)
        records = JobRecords(await js.key_value(wire.RECORDS_BUCKET))
        return cls(connection, js, leases, cancelled, signing_key, versions, records)

    async def with_items(self, job: IngestJob) -> IngestJob:
        """The job with its items in hand: inline ones as they are, a referenced list
        read from EMULSION_INGESTS (checked against its digest) or from the cache.

        Raises InvalidSpec when the list is missing or not the one the spec names: final,
        the spec is immutable and no retry could make it right. Raises ItemsUnavailable
        when NATS cannot be asked now.
        """
        ref = job.spec.items_ref
        if job.spec.items is not None or ref is None:
            return job
        uid = job.metadata.uid or ""
        items = self._item_lists.get(uid)
        if items is None:
            try:
                items = await records_store.get_items(self.js, ref)
            except (records_store.ItemsMissing, records_store.ItemsCorrupt) as error:
                raise InvalidSpec(f"spec.itemsRef: {error}") from error
            except Exception as error:
                raise ItemsUnavailable(
                    f"item list {ref.name} could not be read: {error}"
                ) from error
            self._item_lists[uid] = items
            while len(self._item_lists) > ITEM_LISTS_KEPT:
                self._item_lists.popitem(last=False)
        else:
            self._item_lists.move_to_end(uid)
        return job.model_copy(update={"spec": job.spec.with_items(items)})

    def forget_items(self, uid: str) -> None:
        """The job finished or went away: its item list is not needed any more."""
        self._item_lists.pop(uid, None)

    async def publish(self, messages: Sequence[Outgoing]) -> int:
        """Sign each work message, publish, and wait for every ack; returns how many the
        stream took as new. Every work message leaves through here, first dispatches and
        re-dispatches alike, so none goes out unsigned."""
        acks = await bounded(
            self.js.publish(
                m.subject,
                m.payload,
                headers=worksigning.signed_headers(
                    self._signing_key, m.subject, m.payload, m.headers
                ),
            )
            for m in messages
        )
        return sum(1 for ack in acks if not ack.duplicate)

    async def mint_version(self) -> str:
        """A job version from the shared clock (see emulsion_runtime.clock)."""
        if self._versions is None:
            raise RuntimeError("this bus was made without the version clock")
        return await clock.mint_version(self._versions)

    async def lease(self, job_uid: str, upload_ids: Iterable[str]) -> None:
        """Tell the janitor these staging uploads are in use by this job."""
        await bounded(
            self._leases.put(wire.staging_lease_key(upload_id, job_uid), job_uid.encode())
            for upload_id in upload_ids
        )

    async def release(self, job_uid: str, upload_ids: Iterable[str]) -> None:
        """Drop this job's leases; other jobs' leases on the same uploads stay."""
        await bounded(self._release_one(job_uid, upload_id) for upload_id in upload_ids)

    async def _release_one(self, job_uid: str, upload_id: str) -> None:
        key = wire.staging_lease_key(upload_id, job_uid)
        try:
            await self._leases.get(key)
        except KeyNotFoundError:  # never leased, or released already: leave no marker
            return
        await self._leases.delete(key)

    async def mark_cancelled(self, job_uid: str) -> None:
        """Mark a kept job cancelled (its cancel annotation): processors end each of its
        items still to come with a Cancelled failure, so every item gets its outcome. Its
        queued work is not purged: an item purged would have no result, and the job
        would never finish."""
        await self._cancelled.put(job_uid, b"cancel asked for")

    async def cancel(self, job_uid: str, namespace: str, name: str) -> int:
        """Mark the job cancelled for processors, then drop its work still queued.

        The mark comes first: a processor holding one of the items in hand right now
        checks it before committing, and the purge cannot reach that item.
        """
        await self._cancelled.put(job_uid, b"deleted while running")
        queued = 0
        for subject in _job_work_filters(namespace, name):
            info = await self.js.stream_info(wire.WORK_STREAM, subjects_filter=subject)
            queued += sum((info.state.subjects or {}).values())
            await self.js.purge_stream(wire.WORK_STREAM, subject=subject)
        return queued

    async def queued_indexes(self, job_uid: str, namespace: str, name: str) -> set[int]:
        """Items of this job whose work message is still in the work stream (either lane,
        or the legacy subject of work published before the lanes).

        A work-queue stream drops a message once a processor acknowledges it, so what is
        left is work still waiting, being done, being retried, or out of deliveries and
        about to be reported by its advisory. Read without consuming (direct gets by
        subject); a job of an earlier uid under the same name is told apart by the
        message id (`<uid>/<index>`, with a suffix on re-dispatches).
        """
        found: set[int] = set()
        for subject in _job_work_filters(namespace, name):
            sequence = 0
            while True:
                try:
                    msg = await self.js.get_msg(
                        wire.WORK_STREAM, sequence + 1, subject=subject, next=True
                    )
                except NotFoundError:
                    break
                sequence = int(msg.seq or 0)
                work_id = wire.parse_work_msg_id((msg.headers or {}).get(wire.HEADER_MSG_ID))
                if work_id is not None and work_id.job_uid == job_uid:
                    found.add(work_id.index)
        return found

    async def results_backlog(self) -> int:
        """Results in the events stream the controller has not been handed yet."""
        info = await self.js.consumer_info(wire.EVENTS_STREAM, wire.CONTROLLER)
        return int(info.num_pending or 0)

    async def close(self) -> None:
        """Flush what is written (acks above all), then close.

        Not `drain()`: it waits out its full timeout (30 s) on the pull subscriptions
        once they are stopped, longer than a pod's termination grace allows. Nothing is
        lost by closing: a result not yet acknowledged is delivered again.
        """
        if self.connection.is_closed:
            return
        with contextlib.suppress(Exception):
            await self.connection.flush(timeout=2)
        await self.connection.close()


def _job_work_filters(namespace: str, name: str) -> tuple[str, str]:
    """A job's work in the stream: both lanes, and the legacy form an upgrade left."""
    return wire.job_work_subjects(namespace, name), wire.legacy_work_subject(namespace, name)
