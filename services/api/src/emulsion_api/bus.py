"""The API's one message: GC requests for deleted assets, published to EMULSION_GC.

The connection is made in the background so the API serves ingests and status while
NATS is still coming up; a delete before it is connected answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError

from emulsion_api.errors import ApiError
from emulsion_contracts import keys, messaging, natsauth, telemetry
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import GcRequest
from emulsion_contracts.settings import NatsSettings

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


class Bus:
    def __init__(self, settings: NatsSettings) -> None:
        self._settings = settings
        self._connection: Client | None = None
        self._js: JetStreamContext | None = None
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._connecting = asyncio.create_task(self._connect_until_done(), name="nats-connect")

    async def _connect_until_done(self) -> None:
        while True:
            try:
                self._connection, self._js = await messaging.connect(
                    self._settings, natsauth.API_IDENTITY
                )
            except (NatsError, JetStreamError, OSError, TimeoutError) as error:
                log.warning("cannot reach NATS yet (%s); retrying", error)
                await asyncio.sleep(RETRY_SECONDS)  # a reconnect backoff, not a test wait
            else:
                log.info("connected to NATS")
                return

    async def publish_deleted(self, manifest: AssetManifest, not_before: datetime) -> None:
        """Hand the deleted asset's keys to the janitor, deduplicated per asset version."""
        if self._js is None:
            raise ApiError(503, "unavailable", "the message bus is not connected yet")
        request = GcRequest(
            reason="deleted",
            keys=tuple(sorted(manifest.live_keys())),
            not_before=not_before,
            collection=manifest.collection,
            asset=manifest.asset,
        )
        # The asset as its key segment: a header value stays ASCII whatever the name.
        segment = keys.asset_segment(manifest.asset)
        msg_id = f"deleted/{manifest.collection}/{segment}/{manifest.version}"
        headers = telemetry.message_headers(
            messaging.gc_subject("deleted"), {messaging.HEADER_MSG_ID: msg_id}
        )
        try:
            await self._js.publish(
                messaging.gc_subject("deleted"), request.to_bytes(), headers=headers, timeout=5
            )
        except (NatsError, JetStreamError, TimeoutError) as error:
            log.warning("GC publish failed: %s", error)
            raise ApiError(503, "unavailable", "the message bus is unavailable") from error

    async def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._connection is not None and not self._connection.is_closed:
            await self._connection.drain()
