"""The API's IngestJob calls to the apiserver: create, read, list, delete and watch,
through the shared client (emulsion_runtime.ingestjobs).

Apiserver failures become API errors here, once: throttling is 429 with Retry-After,
an unreachable or failing apiserver is 503, a schema rejection is 422, an object too
large to store is 413. Only what waiting can cure is 503: a client retries that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from prometheus_client import Gauge

from emulsion_api.errors import ApiError
from emulsion_runtime.ingestjobs import (
    ApiServer,
    IngestJobs,
    KubeFailure,
    KubeTimeout,
)

__all__ = ["Change", "Kube", "KubeFailure", "KubeTimeout"]

# etcd's refusal of a write over its `--max-request-bytes`, which the apiserver passes on
# as a 500; the same object is refused again however long one waits.
ETCD_TOO_LARGE = "request is too large"

log = logging.getLogger(__name__)

Job = dict[str, Any]

OPEN_WATCHES = Gauge(
    "emulsion_api_open_watches", "Apiserver watches held open by long polls and event streams"
)
# What a transport failure can raise: the shared client's timeout, aiohttp's own errors.
UNREACHABLE = (aiohttp.ClientError, TimeoutError, ValueError)


@dataclass(frozen=True)
class Change:
    kind: Literal["modified", "deleted"]
    job: Job


def _translate(error: Exception) -> ApiError:
    if isinstance(error, KubeFailure):
        if error.status == 429:
            retry_after = error.headers.get("Retry-After", "1")
            return ApiError(
                429,
                "overloaded",
                "the apiserver is throttling requests",
                headers={"Retry-After": retry_after},
            )
        if error.status == 413 or (error.status == 500 and ETCD_TOO_LARGE in error.reason):
            return ApiError(
                413,
                "job_too_large",
                f"the apiserver could not store the job: {error.reason}",
            )
        if error.status in (400, 422):
            # "Too long", "Too many", a bad value: the request's fault, never cured by time.
            return ApiError(
                422, "invalid_request", f"the apiserver rejected the job: {error.reason}"
            )
        if error.status in (401, 403):
            log.error("apiserver refused the API's credentials: %s", error.reason)
    else:
        log.warning("apiserver unreachable: %s", error)
    return ApiError(503, "unavailable", "the Kubernetes apiserver is unavailable")


class Kube:
    """IngestJobs in one namespace, through the shared client."""

    def __init__(self, server: ApiServer, namespace: str, watches: int) -> None:
        self._jobs = IngestJobs(server)
        self._namespace = namespace
        self._watch_slots = asyncio.Semaphore(watches)

    @property
    def namespace(self) -> str:
        return self._namespace

    async def create(self, body: Job) -> Job:
        try:
            return await self._jobs.create(self._namespace, body)
        except (KubeFailure, *UNREACHABLE) as error:
            raise _translate(error) from error

    async def get(self, name: str) -> Job | None:
        try:
            return await self._jobs.get(self._namespace, name)
        except (KubeFailure, *UNREACHABLE) as error:
            raise _translate(error) from error

    async def list_page(
        self, label_selector: str, limit: int, continue_token: str | None
    ) -> tuple[list[Job], str | None]:
        """One page of IngestJobs (the apiserver's order: by name, so oldest first) and the
        token for the next; an expired or foreign token is 422 `invalid_cursor`."""
        try:
            return await self._jobs.list_page(
                self._namespace, label_selector, limit, continue_token
            )
        except KubeFailure as error:
            # 410: the token's snapshot was compacted away; 400: not a token at all.
            if continue_token and error.status in (400, 410):
                raise ApiError(
                    422, "invalid_cursor", "the cursor is expired or not valid; start again"
                ) from None
            raise _translate(error) from error
        except UNREACHABLE as error:
            raise _translate(error) from error

    async def list(self, label_selector: str) -> list[Job]:
        try:
            return await self._jobs.list(self._namespace, label_selector)
        except (KubeFailure, *UNREACHABLE) as error:
            raise _translate(error) from error

    async def annotate(self, name: str, uid: str, annotations: dict[str, str]) -> Job | None:
        """Merge `annotations` into the job (the one of `uid`); None if it is gone."""
        try:
            return await self._jobs.annotate(self._namespace, name, uid, annotations)
        except KubeFailure as error:
            if error.status in (404, 409):
                return None
            raise _translate(error) from error
        except UNREACHABLE as error:
            raise _translate(error) from error

    async def delete(self, name: str) -> None:
        try:
            await self._jobs.delete(self._namespace, name)
        except (KubeFailure, *UNREACHABLE) as error:
            raise _translate(error) from error

    async def ready(self) -> bool:
        """True when the apiserver answers and lets us list IngestJobs (RBAC and CRD in place)."""
        try:
            await self._jobs.list_page(self._namespace, None, 1, None)
        except (KubeFailure, *UNREACHABLE):
            return False
        return True

    async def next_change(self, job: Job, seconds: float) -> Change | None:
        """The job's next change after the version in hand, or None after `seconds`.

        A Kubernetes watch from the job's resourceVersion, so nothing between the read
        and the watch is missed and no polling happens. Past the configured number of
        open watches the request is refused with 429: a backstop, since every follow
        first holds a slot of its token and of the pod (limits.Limiter.following, the
        same total), so one token never fills this alone.
        """
        if self._watch_slots.locked():
            raise ApiError(
                429,
                "too_many_watches",
                "too many open watches; retry later",
                headers={"Retry-After": "1"},
            )
        async with self._watch_slots:
            with OPEN_WATCHES.track_inprogress():
                try:
                    return await self._watch_once(job, seconds)
                except (KubeFailure, *UNREACHABLE) as error:
                    raise _translate(error) from error

    async def _watch_once(self, job: Job, seconds_left: float) -> Change | None:
        metadata = job["metadata"]
        events = self._jobs.watch(
            self._namespace,
            name=metadata["name"],
            resource_version=metadata["resourceVersion"],
            seconds=max(1, round(seconds_left)),
        )
        # Closed on return, not when collected: the watch's connection goes back at once.
        async with contextlib.aclosing(events):
            async for event in events:
                if event.kind == "ERROR":
                    # Usually 410 Gone: the version is too old to watch from; re-read.
                    return None
                if event.object.get("metadata", {}).get("uid") != metadata["uid"]:
                    continue
                if event.kind == "DELETED":
                    return Change("deleted", event.object)
                if event.kind == "MODIFIED":
                    return Change("modified", event.object)
        return None

    async def close(self) -> None:
        await self._jobs.server.close()
