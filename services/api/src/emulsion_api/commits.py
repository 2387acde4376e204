"""Group commit of concurrent small ingests: one IngestJob for the requests that arrive
while the previous create of the same caller, collection and profile is in flight.

Every `POST /v1/ingests` must write to the apiserver before it answers, and each job
costs the apiserver a create and the controller a dispatch and a few status patches. A
lone request is created at once, as before; requests that arrive while a create for
their (caller, collection, profile) is still running wait for it, then go together in
the next one. So nobody waits longer than one create for company, and under load the
number of writes grows with the apiserver's speed, not with the number of clients.

Each request is answered with its own items (`job_index` is where each sits in the
shared job); the job's name is every member's status URL. Requests with an
Idempotency-Key are never grouped (their label marks one request's jobs), nor are large
ones, and a group never names one asset twice (its versions would collide).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field

from emulsion_api.jobs import MAX_ITEMS_BYTES, Job, PlannedItem, item_bytes

log = logging.getLogger(__name__)

# A request with more items than this is created on its own: grouping pays for many small
# requests, and a large one is already one write for many items.
MAX_GROUPED_REQUEST_ITEMS = 100


@dataclass
class _Member:
    items: list[PlannedItem]
    trace_headers: Mapping[str, str]
    answer: asyncio.Future[tuple[Job, int]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def assets(self) -> set[str]:
        return {item.asset for item in self.items}

    @property
    def bytes(self) -> int:
        return sum(item_bytes(item) for item in self.items)


# Makes the job for a group: its items (members' in order) and the first member's trace.
Create = Callable[[list[PlannedItem], Mapping[str, str]], Awaitable[Job]]


class GroupCommit:
    def __init__(self, max_items: int, max_bytes: int = MAX_ITEMS_BYTES) -> None:
        self._max_items = max_items
        # The items' size as stored, so a group always fits in one job (see jobs.py).
        self._max_bytes = max_bytes
        self._queues: dict[Hashable, list[_Member]] = {}
        self._committers: dict[Hashable, asyncio.Task[None]] = {}

    async def submit(
        self,
        key: Hashable,
        items: list[PlannedItem],
        trace_headers: Mapping[str, str],
        create: Create,
    ) -> tuple[Job, int]:
        """The job holding `items`, and where the first of them sits in it."""
        member = _Member(items, trace_headers)
        self._queues.setdefault(key, []).append(member)
        if key not in self._committers:
            self._committers[key] = asyncio.create_task(self._commit(key, create))
        # A client that goes away does not take its group's create with it.
        return await asyncio.shield(member.answer)

    def _take(self, queue: list[_Member]) -> list[_Member]:
        """The next group: members in arrival order while their assets are new to it and
        the items fit in one job, by count and by stored size."""
        group: list[_Member] = []
        assets: set[str] = set()
        count = size = 0
        for member in queue:
            if group and (
                count + len(member.items) > self._max_items
                or size + member.bytes > self._max_bytes
                or assets & member.assets
            ):
                break
            group.append(member)
            assets |= member.assets
            count += len(member.items)
            size += member.bytes
        del queue[: len(group)]
        return group

    async def _commit(self, key: Hashable, create: Create) -> None:
        queue = self._queues[key]
        try:
            while queue:
                group = self._take(queue)
                items = [item for member in group for item in member.items]
                try:
                    job = await create(items, group[0].trace_headers)
                except Exception as error:  # every member answers with the create's error
                    for member in group:
                        member.answer.set_exception(error)
                    continue
                if len(group) > 1:
                    log.debug("one job for %d requests", len(group))
                offset = 0
                for member in group:
                    member.answer.set_result((job, offset))
                    offset += len(member.items)
        finally:
            # Nothing awaits between the queue found empty and these: no member is lost.
            del self._committers[key]
            del self._queues[key]
            for member in queue:
                if not member.answer.done():
                    member.answer.cancel()
