"""What the API keeps of an IngestJob outside etcd, and reads back: its item list (written
before the job), its outcomes, failures and summary (written by the controller).

The wire format is emulsion_contracts.jobrecords'; this module adds what the API needs
around it: a 503 with Retry-After whenever NATS cannot answer (a client retries that, as
it retries a mint), and a cache of item lists. An item list is immutable — it is named by
its SHA-256 in the job's spec — so a cached copy is never stale: the status page of a
2,000-item job polled every second reads its ~530 KB list once, not once per poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from emulsion_api.errors import ApiError
from emulsion_api.jetstream import RETRY_AFTER, Bus
from emulsion_contracts import wire
from emulsion_contracts.ingestjob import IngestJob, ItemsRef, JobItem
from emulsion_contracts.jobrecords import FailureDetail, JobSummaryRecord, OutcomeRecord
from emulsion_runtime import records_store
from emulsion_runtime.records_store import JobRecords

log = logging.getLogger(__name__)

# The longest a store or a read of records may take before the request is answered 503.
RECORDS_TIMEOUT: Final = 5.0
# Items kept in the cache, over all lists: 50,000 items are 25 job lists of 2,000, about
# 30 MB at the longest names the contract allows; most lists are far shorter.
CACHE_MAX_ITEMS: Final = 50_000

T = TypeVar("T")

_UNREACHABLE: Final = (NatsError, JetStreamError, TimeoutError, OSError)


def _unavailable(what: str) -> ApiError:
    return ApiError(
        503, "unavailable", f"the message bus is unavailable; {what}", headers=RETRY_AFTER
    )


class ItemsCache:
    """Item lists by SHA-256, least recently used out first, bounded by their items."""

    def __init__(self, max_items: int = CACHE_MAX_ITEMS) -> None:
        self._max_items = max_items
        self._lists: OrderedDict[str, tuple[JobItem, ...]] = OrderedDict()
        self._held = 0

    def get(self, sha256: str) -> tuple[JobItem, ...] | None:
        found = self._lists.get(sha256)
        if found is not None:
            self._lists.move_to_end(sha256)
        return found

    def put(self, sha256: str, items: tuple[JobItem, ...]) -> None:
        if sha256 in self._lists or len(items) > self._max_items:
            return
        self._lists[sha256] = items
        self._held += len(items)
        while self._held > self._max_items:
            _, dropped = self._lists.popitem(last=False)
            self._held -= len(dropped)

    def __len__(self) -> int:
        return len(self._lists)


class Records:
    def __init__(self, bus: Bus, namespace: str, cache: ItemsCache | None = None) -> None:
        self._bus = bus
        self._namespace = namespace
        self._cache = cache or ItemsCache()
        self._records: JobRecords | None = None

    async def put_items(self, job: str, items: Sequence[JobItem]) -> ItemsRef:
        """Store a job's item list before the job is created (its spec names the result)."""
        js = self._bus.jetstream()
        try:
            async with asyncio.timeout(RECORDS_TIMEOUT):
                ref = await records_store.put_items(js, self._namespace, job, items)
        except _UNREACHABLE as error:
            log.warning("cannot store the item list of %s: %s", job, error)
            raise _unavailable("the job's item list cannot be stored") from error
        self._cache.put(ref.sha256, tuple(items))
        return ref

    async def items(self, job: IngestJob) -> tuple[JobItem, ...] | None:
        """The job's items: inline (a job written with kubectl) or its stored list. None
        when the list is gone or is not the one the spec names: the controller fails such
        a job (InvalidSpec), and its status still answers, without items."""
        spec = job.spec
        if spec.items is not None:
            return spec.items
        ref = spec.items_ref
        assert ref is not None  # exactly one of the two (IngestJobSpec)
        cached = self._cache.get(ref.sha256)
        if cached is not None:
            return cached
        try:
            async with asyncio.timeout(RECORDS_TIMEOUT):
                found = await records_store.get_items(self._bus.jetstream(), ref)
        except (records_store.ItemsMissing, records_store.ItemsCorrupt) as error:
            log.warning("job %s: %s", job.metadata.name, error)
            return None
        except _UNREACHABLE as error:
            raise _unavailable("the job's items cannot be read") from error
        self._cache.put(ref.sha256, found)
        return found

    async def items_of_gone_job(self, job: str) -> tuple[JobItem, ...] | None:
        """The list stored under the name of a job no longer in the apiserver, if kept."""
        try:
            async with asyncio.timeout(RECORDS_TIMEOUT):
                return await records_store.get_items_of_gone_job(
                    self._bus.jetstream(), self._namespace, job
                )
        except (records_store.ItemsMissing, records_store.ItemsCorrupt):
            return None
        except _UNREACHABLE as error:
            raise _unavailable("the job's records cannot be read") from error

    async def _bucket(self) -> JobRecords:
        if self._records is None:
            kv: KeyValue = await self._bus.jetstream().key_value(wire.RECORDS_BUCKET)
            self._records = JobRecords(kv)
        return self._records

    async def _read(self, what: str, read: Callable[[JobRecords], Awaitable[T]]) -> T:
        """`read` of the records within their timeout; unavailable, saying the job's `what`
        cannot be read, when NATS does not answer."""
        try:
            async with asyncio.timeout(RECORDS_TIMEOUT):
                return await read(await self._bucket())
        except _UNREACHABLE as error:
            raise _unavailable(f"the job's {what} cannot be read") from error

    async def outcomes(self, job: str, uid: str) -> OutcomeRecord | None:
        record, _ = await self._read(
            "outcomes", lambda records: records.outcomes(self._namespace, job, uid)
        )
        return record

    async def last_outcomes(self, job: str) -> OutcomeRecord | None:
        return await self._read(
            "outcomes", lambda records: records.last_outcomes(self._namespace, job)
        )

    async def failures(
        self, job: str, uid: str, after: int, limit: int
    ) -> tuple[list[FailureDetail], int | None]:
        return await self._read(
            "failures",
            lambda records: records.failures(self._namespace, job, uid, after, limit),
        )

    async def summary(self, job: str) -> JobSummaryRecord | None:
        return await self._read("records", lambda records: records.summary(self._namespace, job))
