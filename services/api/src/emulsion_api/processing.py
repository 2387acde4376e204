"""Whether an asset is being made: which unfinished ingest has it as an item without an
outcome yet.

Read from what the API already keeps, never from a marker of its own (which something
would have to clear): the collection's IngestJobs (one apiserver list by the collection
label, at most once a second per collection per pod), then, only for the unfinished
ones, their item lists (immutable, cached by SHA-256: emulsion_api.records) and, only for
a job that has the asset, its outcomes record (one KV read). A collection without a
running ingest costs the one list; the answer may be a second old.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

from emulsion_api import jobs
from emulsion_api.deps import Services
from emulsion_contracts import crd
from emulsion_contracts.ingestjob import IngestJob

# How long one listing of a collection's jobs answers for it.
CACHE_SECONDS: Final = 1.0
# Collections whose listing is kept.
CACHE_COLLECTIONS: Final = 1024

_running: OrderedDict[tuple[str, str], tuple[float, list[IngestJob]]] = OrderedDict()


async def _unfinished(services: Services, collection: str) -> list[IngestJob]:
    key = (services.kube.namespace, collection)
    now = time.monotonic()
    cached = _running.get(key)
    if cached is not None and now - cached[0] < CACHE_SECONDS:
        return cached[1]
    listed = await services.kube.list(f"{crd.LABEL_COLLECTION}={jobs.collection_label(collection)}")
    running = [
        job
        for job in map(IngestJob.read, listed)
        if job.spec.collection == collection and not job.status.phase.finished
    ]
    # Newest first: of two ingests of one asset, the later one's version goes live last.
    running.sort(key=lambda job: job.version or "", reverse=True)
    _running[key] = (now, running)
    _running.move_to_end(key)
    while len(_running) > CACHE_COLLECTIONS:
        _running.popitem(last=False)
    return running


async def making(services: Services, collection: str, asset: str) -> str | None:
    """The name of the unfinished ingest making `asset` now (the newest), or None."""
    for job in await _unfinished(services, collection):
        items = await services.records.items(job)
        if not items:
            continue
        index = next((i for i, item in enumerate(items) if item.asset == asset), None)
        if index is None:
            continue
        uid = job.metadata.uid
        record = await services.records.outcomes(job.metadata.name, uid) if uid else None
        if record is None:
            return job.metadata.name
        try:
            done = record.succeeded_set() | record.failed_set()
        except ValueError:
            done = set()
        if index not in done:
            return job.metadata.name
    return None
