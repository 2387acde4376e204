"""The JetStream side of an IngestJob's records (`emulsion_contracts.jobrecords`): the item
list in the object store, the outcomes, failures and summary in the records bucket.

The API writes item lists and reads records; the controller reads item lists and writes
records. The records' models and their keys are `emulsion_contracts.jobrecords`'s.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as JetStreamNotFound
from nats.js.kv import KeyValue
from pydantic import BaseModel, ValidationError

from emulsion_contracts import wire
from emulsion_contracts.ingestjob import ItemsRef, JobItem
from emulsion_contracts.jobrecords import (
    FAILURE_MESSAGE_MAX,
    FailureDetail,
    FeedCursor,
    ItemsDocument,
    JobSummaryRecord,
    OutcomeRecord,
    cursor_key,
    encode_items,
    failure_index,
    failure_key,
    failures_filter,
    items_object_name,
    outcomes_key,
    summary_key,
)

__all__ = [
    "ItemsCorrupt",
    "ItemsMissing",
    "JobRecords",
    "RecordConflict",
    "get_items",
    "get_items_of_gone_job",
    "put_items",
]

_Record = TypeVar("_Record", bound=BaseModel)


class ItemsMissing(LookupError):
    """The job's item list is not in the store (never written, or past its retention)."""


class ItemsCorrupt(ValueError):
    """The stored item list is not the one the job names (digest, count or form)."""


class RecordConflict(RuntimeError):
    """Another writer changed the outcomes since they were read: read, merge, write again."""


async def put_items(
    js: JetStreamContext, namespace: str, job: str, items: Sequence[JobItem]
) -> ItemsRef:
    """Store a job's items before the job is created; the reference goes in its spec."""
    body = encode_items(items)
    name = items_object_name(namespace, job)
    store = await js.object_store(wire.INGESTS_STORE)
    await store.put(name, body)
    return ItemsRef(name=name, sha256=hashlib.sha256(body).hexdigest(), count=len(items))


async def _read_object(js: JetStreamContext, name: str) -> bytes:
    """An object's bytes, read message by message (the object's meta, then each chunk by
    subject) rather than through nats-py's ObjectStore.get, whose ordered consumer needs
    rights to create consumers and list every stream: the readers need only message gets.
    Raises ItemsMissing when there is no such object."""
    stream = wire.INGESTS_STREAM
    encoded = base64.urlsafe_b64encode(name.encode()).decode()
    try:
        meta = await js.get_last_msg(stream, f"$O.{wire.INGESTS_STORE}.M.{encoded}")
        info = json.loads(meta.data or b"{}")
    except JetStreamNotFound as error:
        raise ItemsMissing(f"item list {name} is not in {wire.INGESTS_STORE}") from error
    if info.get("deleted"):
        raise ItemsMissing(f"item list {name} was deleted from {wire.INGESTS_STORE}")
    chunks: list[bytes] = []
    subject, sequence = f"$O.{wire.INGESTS_STORE}.C.{info.get('nuid')}", 1
    try:
        for _ in range(int(info.get("chunks") or 0)):
            message = await js.get_msg(stream, seq=sequence, subject=subject, next=True)
            chunks.append(message.data or b"")
            sequence = (message.seq or sequence) + 1
    except JetStreamNotFound as error:
        raise ItemsMissing(f"item list {name} lost chunks in {wire.INGESTS_STORE}") from error
    return b"".join(chunks)


def _document(name: str, body: bytes) -> ItemsDocument:
    try:
        return ItemsDocument.model_validate_json(body)
    except ValidationError as error:
        raise ItemsCorrupt(f"item list {name} cannot be read: {error}") from error


async def get_items(js: JetStreamContext, ref: ItemsRef) -> tuple[JobItem, ...]:
    """The items `ref` names, checked against its digest and count.

    Raises ItemsMissing when there is no such object, ItemsCorrupt when its bytes are
    not the ones the job was created with; both are final for that job.
    """
    body = await _read_object(js, ref.name)
    if hashlib.sha256(body).hexdigest() != ref.sha256:
        raise ItemsCorrupt(f"item list {ref.name} does not match its sha256 {ref.sha256}")
    document = _document(ref.name, body)
    if len(document.items) != ref.count:
        raise ItemsCorrupt(
            f"item list {ref.name} holds {len(document.items)} items, the job {ref.count}"
        )
    return document.items


async def get_items_of_gone_job(
    js: JetStreamContext, namespace: str, job: str
) -> tuple[JobItem, ...]:
    """The item list stored under a job's name, unchecked: for a job no longer in the
    apiserver (expired by its TTL), whose spec — and so the digest — is gone with it.
    Only for showing what the job made; never to act on. Raises ItemsMissing, ItemsCorrupt.
    """
    name = items_object_name(namespace, job)
    return _document(name, await _read_object(js, name)).items


class JobRecords:
    """The records bucket, as the controller writes it and the API reads it."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def _read(self, key: str, model: type[_Record]) -> tuple[_Record | None, int | None]:
        """The record under `key` and its revision: (None, None) where there is none; a
        record that does not parse reads as none, at its revision."""
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None, None
        try:
            return model.model_validate_json(entry.value or b""), entry.revision
        except ValidationError:
            return None, entry.revision

    async def outcomes(
        self, namespace: str, job: str, uid: str
    ) -> tuple[OutcomeRecord | None, int | None]:
        """The job's outcomes and the revision to write over (None: create). A record of
        another uid reads as none, at its revision, so the next write replaces it."""
        record, revision = await self._read(outcomes_key(namespace, job), OutcomeRecord)
        return (record if record is not None and record.uid == uid else None), revision

    async def last_outcomes(self, namespace: str, job: str) -> OutcomeRecord | None:
        """The outcomes last written under this name, whatever job (uid) wrote them: for a
        job gone from the apiserver without a summary (deleted while it ran), whose uid
        nobody else knows any more. Never to write over (see `outcomes`)."""
        record, _ = await self._read(outcomes_key(namespace, job), OutcomeRecord)
        return record

    async def write_outcomes(
        self, namespace: str, job: str, record: OutcomeRecord, revision: int | None
    ) -> int:
        """Write over `revision` (None: only if absent); returns the new revision.

        Raises RecordConflict when someone wrote in between.
        """
        key = outcomes_key(namespace, job)
        try:
            if revision is None:
                return await self._kv.create(key, record.encode())
            return await self._kv.update(key, record.encode(), last=revision)
        except KeyWrongLastSequenceError as error:
            raise RecordConflict(key) from error

    async def put_failure(self, namespace: str, job: str, detail: FailureDetail) -> None:
        """Idempotent: a redelivered failure writes the same value again."""
        message = detail.message
        if message is not None and len(message) > FAILURE_MESSAGE_MAX:
            detail = detail.model_copy(update={"message": message[:FAILURE_MESSAGE_MAX]})
        await self._kv.put(failure_key(namespace, job, detail.index), detail.encode())

    async def failure_indexes(self, namespace: str, job: str) -> list[int]:
        """The indexes with a failure recorded (any uid), in order.

        A watch filtered by subject on the server: nats-py's `keys(filters=...)` reads
        every key of the bucket and filters by substring in the client.
        """
        watcher = await self._kv.watch(
            failures_filter(namespace, job), meta_only=True, ignore_deletes=True
        )
        found: list[int] = []
        try:
            async for entry in watcher:
                if entry is None:  # the end of what is stored now
                    break
                if (index := failure_index(entry.key)) is not None:
                    found.append(index)
        finally:
            await watcher.stop()
        return sorted(found)

    async def failures(
        self, namespace: str, job: str, uid: str, after: int = -1, limit: int = 100
    ) -> tuple[list[FailureDetail], int | None]:
        """Up to `limit` failures of the job with an index above `after`, in index order,
        and the index to continue after (None at the end)."""
        wanted = [i for i in await self.failure_indexes(namespace, job) if i > after]
        page: list[FailureDetail] = []
        for index in wanted:
            if len(page) == limit:
                return page, page[-1].index
            detail = await self.failure(namespace, job, uid, index)
            if detail is not None:
                page.append(detail)
        return page, None

    async def failure(self, namespace: str, job: str, uid: str, index: int) -> FailureDetail | None:
        detail, _ = await self._read(failure_key(namespace, job, index), FailureDetail)
        return detail if detail is not None and detail.uid == uid else None

    async def cursor(self, namespace: str, job: str, uid: str) -> int | None:
        """How many of a bulk job's items the feeder has published; None when nothing is
        recorded for this uid (a job published whole: interactive, or by an older
        controller)."""
        record, _ = await self._read(cursor_key(namespace, job), FeedCursor)
        return record.published if record is not None and record.uid == uid else None

    async def put_cursor(self, namespace: str, job: str, cursor: FeedCursor) -> None:
        """Written by one controller (the active one) after it published: no CAS."""
        await self._kv.put(cursor_key(namespace, job), cursor.encode())

    async def put_summary(self, namespace: str, job: str, summary: JobSummaryRecord) -> None:
        await self._kv.put(summary_key(namespace, job), summary.encode())

    async def summary(self, namespace: str, job: str) -> JobSummaryRecord | None:
        """The last summary written under this name (its uid says which job it was)."""
        summary, _ = await self._read(summary_key(namespace, job), JobSummaryRecord)
        return summary
