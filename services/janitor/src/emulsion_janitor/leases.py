"""Staging leases: which uploads running IngestJobs still need (a JetStream KV bucket).

The controller puts a lease (key: upload id) when it dispatches a job and removes it when
the job ends; the janitor only reads. It has no Kubernetes access, by design.
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from emulsion_contracts import messaging


class Leases(Protocol):
    async def held(self, upload_id: str) -> bool: ...


# A sweep asks about up to a thousand uploads at once; more requests in flight than this
# only queue up in the server and time out on a busy one.
MAX_IN_FLIGHT: Final = 32


class KvLeases:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @classmethod
    async def bind(cls, js: JetStreamContext) -> KvLeases:
        return cls(await js.key_value(messaging.STAGING_LEASES_BUCKET))

    async def held(self, upload_id: str) -> bool:
        async with self._in_flight:
            try:
                await self._kv.get(upload_id)
            except KeyNotFoundError:  # also a deleted or purged lease
                return False
        return True
