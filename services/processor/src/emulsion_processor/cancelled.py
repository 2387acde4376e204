"""The cancelled jobs, as a KV watch keeps them in memory.

An item used to read the cancelled bucket twice: before its work, and before its
commit. The first read only saves the work of an item whose job is gone (the controller
also withdraws such a job's queued work), so it is answered from this watch, at no
cost per item. The second read guards the commit and stays exact: a watch may lag or
lose its consumer to a NATS restart, and then only some work is wasted, never a commit
of a cancelled job made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from nats.errors import Error as NatsError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

log = logging.getLogger(__name__)

RETRY_SECONDS: Final = 5.0


class CancelledJobs:
    """Job uids in the cancelled bucket, followed by a watch restarted when it breaks."""

    def __init__(self, bucket: KeyValue) -> None:
        self._bucket = bucket
        self._uids: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    def __contains__(self, uid: object) -> bool:
        return uid in self._uids

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        while True:
            try:
                await self._watch()
            except (NatsError, TimeoutError, OSError) as error:
                log.warning("the cancelled-jobs watch broke, restarting: %s", error)
            await asyncio.sleep(RETRY_SECONDS)

    async def _watch(self) -> None:
        watcher = await self._bucket.watchall()
        try:
            async for entry in watcher:
                if entry is None:  # the bucket's current keys have all been seen
                    self.caught_up.set()
                elif entry.operation in (KV_DEL, KV_PURGE):
                    self._uids.discard(entry.key)
                else:
                    self._uids.add(entry.key)
        finally:
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await watcher.stop()
