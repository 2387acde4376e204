"""Staging leases: which uploads running IngestJobs still need (a JetStream KV bucket).

The controller puts a lease per (upload id, job uid) when it dispatches a job and removes
its own when the job ends; the janitor only reads. An upload is held while any job's lease
on it is there. It has no Kubernetes access, by design.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from emulsion_contracts import wire


class Leases(Protocol):
    async def held(self, upload_id: str) -> bool: ...


# A sweep asks about up to a thousand uploads at once; more requests in flight than this
# only queue up in the server and time out on a busy one.
MAX_IN_FLIGHT: Final = 32
_KEY_PREFIX: Final = f"$KV.{wire.STAGING_LEASES_BUCKET}."


class KvLeases:
    def __init__(self, js: JetStreamContext, kv: KeyValue) -> None:
        self._js = js
        self._kv = kv
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @classmethod
    async def bind(cls, js: JetStreamContext) -> KvLeases:
        return cls(js, await js.key_value(wire.STAGING_LEASES_BUCKET))

    async def held(self, upload_id: str) -> bool:
        async with self._in_flight:
            # The subjects of every job's lease on this upload, deleted ones included
            # (a delete leaves a marker): each is read to tell a lease from a marker.
            info = await self._js.stream_info(
                wire.STAGING_LEASES_STREAM,
                subjects_filter=wire.staging_lease_subjects(upload_id),
            )
            for subject in info.state.subjects or {}:
                if await self._present(subject.removeprefix(_KEY_PREFIX)):
                    return True
            # A lease from before leases were per job, keyed by the upload id alone.
            return await self._present(upload_id)

    async def _present(self, key: str) -> bool:
        try:
            await self._kv.get(key)
        except KeyNotFoundError:  # also a deleted or purged lease
            return False
        return True
