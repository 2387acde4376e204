"""The API's NATS side: job and tombstone versions from the shared clock, and GC requests
for deleted assets, published to EMULSION_GC.

The connection is made in the background; the API is not ready until it is made once.
Without NATS no version can be minted (emulsion_runtime.clock) nor an item list
stored (emulsion_api.records): an ingest or a delete then answers 503 with Retry-After,
and the client tries again. Reads of a job's items, outcomes and failures need NATS too
(the same 503); summaries and lists never do.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from nats.js.kv import KeyValue

from emulsion_api.errors import ApiError
from emulsion_contracts import natsauth, wire
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import GcRequest
from emulsion_runtime import clock, messaging, telemetry
from emulsion_runtime.settings import NatsSettings

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
# The longest a mint may take before the request is answered 503: a reconnecting client
# queues requests instead of failing them, and a caller must not hang on an outage.
MINT_TIMEOUT = 3.0
# What a 503 for an unreachable bus tells the client to wait.
RETRY_AFTER = {"Retry-After": "2"}


class Bus:
    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self._connection: Client | None = None
        self._js: JetStreamContext | None = None
        self._versions: KeyValue | None = None
        # One mint at a time in this process: its requests would otherwise lose the
        # compare-and-set to each other; only other replicas' mints still meet it.
        self._minting = asyncio.Lock()
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect_until_done(), name="nats-connect")

    async def _connect_until_done(self) -> None:
        while True:
            try:
                connection, js = await messaging.connect(self._settings, natsauth.API_IDENTITY)
                self._versions = await js.key_value(wire.CLOCK_BUCKET)
                self._connection, self._js = connection, js
            except (NatsError, JetStreamError, OSError, TimeoutError) as error:
                log.warning("cannot reach NATS yet (%s); retrying", error)
                await asyncio.sleep(RETRY_SECONDS)  # a reconnect backoff, not a test wait
            else:
                log.info("connected to NATS")
                return

    @property
    def connected_once(self) -> bool:
        """Whether the connection was made (it then reconnects by itself after an outage)."""
        return self._js is not None

    def jetstream(self) -> JetStreamContext:
        """The JetStream context, or 503 with Retry-After before the first connection."""
        if self._js is None:
            raise ApiError(
                503, "unavailable", "the message bus is not connected yet", headers=RETRY_AFTER
            )
        return self._js

    async def mint_versions(self, count: int = 1) -> list[str]:
        """`count` versions from the shared clock, or 503 with Retry-After without NATS."""
        if self._versions is None:
            raise ApiError(
                503, "unavailable", "the message bus is not connected yet", headers=RETRY_AFTER
            )
        try:
            async with asyncio.timeout(MINT_TIMEOUT), self._minting:
                return await clock.mint_versions(self._versions, count)
        except (NatsError, JetStreamError, TimeoutError, clock.ClockContended) as error:
            log.warning("cannot mint a version: %s", error)
            raise ApiError(
                503,
                "unavailable",
                "the message bus is unavailable; versions cannot be minted",
                headers=RETRY_AFTER,
            ) from error

    async def publish_deleted(self, manifest: AssetManifest, not_before: datetime) -> None:
        """Hand the deleted asset's keys to the janitor, deduplicated per asset version."""
        if self._js is None:
            raise ApiError(
                503, "unavailable", "the message bus is not connected yet", headers=RETRY_AFTER
            )
        request = GcRequest(
            reason="deleted",
            # Its capture-order index entry too: the asset leaves that order with its files.
            keys=tuple(sorted(manifest.stored_keys())),
            not_before=not_before,
            collection=manifest.collection,
            asset=manifest.asset,
        )
        msg_id = wire.deleted_gc_msg_id(manifest.collection, manifest.asset, manifest.version)
        headers = telemetry.message_headers(
            wire.gc_subject("deleted"), {wire.HEADER_MSG_ID: msg_id}
        )
        try:
            await self._js.publish(
                wire.gc_subject("deleted"), request.to_bytes(), headers=headers, timeout=5
            )
        except (NatsError, JetStreamError, TimeoutError) as error:
            log.warning("GC publish failed: %s", error)
            raise ApiError(
                503, "unavailable", "the message bus is unavailable", headers=RETRY_AFTER
            ) from error

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.drain()
