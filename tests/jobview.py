"""A job as the suites' oracles read it: items and outcome index sets filled in.

The API's jobs name their items (`spec.itemsRef`) and the controller keeps their outcomes
in the records bucket (emulsion_contracts.jobrecords), so the object from the apiserver no
longer holds either. The oracles check every item by index, so they read the job through
`resolve`, which fills `spec.items` from the item list and `status.succeededIndexes` /
`status.failedIndexes` from the outcomes record, exactly as stored (a job written with
inline items, or a status that still has its sets, is left as it is).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
from collections.abc import Mapping
from typing import Any

from emulsion_contracts import wire
from emulsion_contracts.ingestjob import ItemsRef
from emulsion_runtime import messaging, records_store
from emulsion_runtime.settings import NatsSettings

Job = dict[str, Any]


async def resolve_async(js: Any, job: Mapping[str, Any]) -> Job:
    resolved: Job = copy.deepcopy(dict(job))
    spec, metadata = resolved.get("spec") or {}, resolved.get("metadata") or {}
    status = resolved.setdefault("status", {}) if "status" in resolved else None
    if "itemsRef" in spec and "items" not in spec:
        ref = ItemsRef.model_validate(spec["itemsRef"])
        spec["items"] = [item.to_body() for item in await records_store.get_items(js, ref)]
    if status is not None and "succeededIndexes" not in status:
        records = records_store.JobRecords(await js.key_value(wire.RECORDS_BUCKET))
        record, _ = await records.outcomes(
            metadata.get("namespace", ""), metadata.get("name", ""), metadata.get("uid", "")
        )
        if record is not None:
            status["succeededIndexes"] = record.succeeded
            status["failedIndexes"] = record.failed
    return resolved


def resolve(settings: NatsSettings, jobs: Mapping[str, Mapping[str, Any]]) -> dict[str, Job]:
    """Each job of `jobs` resolved, over one connection (from synchronous test code)."""

    async def run() -> dict[str, Job]:
        import nats

        connection = await nats.connect(**messaging.connect_options(settings))
        try:
            js = connection.jetstream()
            return {name: await resolve_async(js, job) for name, job in jobs.items()}
        finally:
            await connection.drain()

    # In a worker thread: a caller may be inside a running loop (Playwright's sync API).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def finished(job: Mapping[str, Any]) -> tuple[int, int]:
    """(finished, total) from the counts the controller writes into status."""
    status = job.get("status") or {}
    done = int(status.get("succeeded") or 0) + int(status.get("failed") or 0)
    return done, int(status.get("total") or 0)
