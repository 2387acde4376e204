"""Notify latency, open loop: `POST /v1/ingests` with one item at a fixed arrival rate.

Each of `clients` clients (one HTTP connection pool each) sends a request every
1/`rate` seconds whether or not earlier ones were answered, from a random phase within
its first period (seeded, so runs compare). A latency is measured from the moment the
request was *due*, not when it went out, so a stalled client cannot hide the queueing
it causes (no coordinated omission).

Every request names an upload of its own (a tiny staged JPEG, uploaded before the clock
starts), since the janitor may remove an upload once a job has consumed it.
"""

from __future__ import annotations

import asyncio
import io
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image

from emulsion_bench.stats import percentile
from emulsion_contracts import keys
from emulsion_runtime import storage


@dataclass(frozen=True)
class Load:
    clients: int
    rate_per_client: float
    seconds: float

    @property
    def requests(self) -> int:
        return max(1, round(self.clients * self.rate_per_client * self.seconds))

    def schedule(self, seed: int = 14) -> list[tuple[int, float]]:
        """(client, due time in seconds from the start) for every request, in due order."""
        rng = random.Random(seed)  # noqa: S311 - a reproducible schedule, not a secret
        period = 1 / self.rate_per_client
        phases = [rng.uniform(0, period) for _ in range(self.clients)]
        due = [
            (client, phases[client] + number * period)
            for number in range(self.requests // self.clients + 1)
            for client in range(self.clients)
        ]
        return sorted(due, key=lambda entry: entry[1])[: self.requests]


def tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 90, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


def stage_uploads(
    s3: Any,
    bucket: str,
    count: int,
    collection: str,
    body: bytes | None = None,
    name: str = "notify.jpg",
) -> list[str]:
    """`count` distinct tiny uploads in `collection`'s staging area, as presigned uploads
    would leave them (`body`: a tiny JPEG unless given, e.g. bytes that are no image)."""
    body = tiny_jpeg() if body is None else body
    staged = []
    for _ in range(count):
        key = keys.staging_key(collection, keys.new_ulid(), name)
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="image/jpeg",
            Metadata={storage.UPLOAD_COLLECTION_METADATA: collection},
        )
        staged.append(key)
    return staged


async def open_loop(
    api_url: str, token: str, load: Load, upload_keys: Sequence[str], collection: str
) -> dict[str, Any]:
    schedule = load.schedule()
    if len(upload_keys) < len(schedule):
        raise ValueError(f"{len(schedule)} requests need as many uploads")
    latencies: list[float] = []
    errors: list[str] = []
    jobs: list[str] = []
    sessions = [
        httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60.0
        )
        for _ in range(load.clients)
    ]

    async def one(number: int, client: int, due: float, began: float) -> None:
        delay = began + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = {
            "collection": collection,
            "items": [{"upload_key": upload_keys[number], "asset": f"n{number:05d}.jpg"}],
        }
        response = await sessions[client].post("/v1/ingests", json=body)
        latencies.append(time.perf_counter() - (began + due))
        if response.status_code == 202:
            jobs.extend(response.json().get("jobs") or [])
        else:
            errors.append(f"{response.status_code}: {response.text[:200]}")

    try:
        began = time.perf_counter()
        await asyncio.gather(
            *(one(number, client, due, began) for number, (client, due) in enumerate(schedule))
        )
        seconds = time.perf_counter() - began
    finally:
        await asyncio.gather(*(session.aclose() for session in sessions))
    return {
        "clients": load.clients,
        "rate_per_client": load.rate_per_client,
        "offered_per_second": load.clients * load.rate_per_client,
        "requests": len(schedule),
        "errors": len(errors),
        "first_errors": errors[:5],
        "seconds": seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "latencies_ms": [round(latency * 1000, 2) for latency in latencies],
        "jobs": jobs,
    }


async def wait_finished(api_url: str, token: str, jobs: Sequence[str], within: float) -> int:
    """Wait until every job has finished (so the next phase starts on a quiet stack);
    returns how many had not after `within` seconds."""
    pending = list(jobs)
    deadline = time.monotonic() + within
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    ) as http:

        async def finished(job: str) -> bool:
            async with limit:
                response = await http.get(f"/v1/ingests/{job}", params={"item_limit": 0})
            return response.status_code == 200 and bool(response.json().get("finished"))

        while pending and time.monotonic() < deadline:
            done = await asyncio.gather(*(finished(job) for job in pending))
            pending = [job for job, is_done in zip(pending, done, strict=True) if not is_done]
            if pending:
                await asyncio.sleep(0.5)  # a poll interval, with the deadline above
    return len(pending)
