"""The API's IngestJob calls to the apiserver: create, read, list, delete and watch.

Apiserver failures become API errors here, once: throttling is 429 with Retry-After,
an unreachable or failing apiserver is 503, a schema rejection is 422.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import Gauge
from urllib3.exceptions import HTTPError as Urllib3Error

from emulsion_api.errors import ApiError
from emulsion_contracts import crd
from emulsion_contracts.blocking import Blocking

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = dict[str, Any]

OPEN_WATCHES = Gauge(
    "emulsion_api_open_watches", "Apiserver watches held open by long polls and event streams"
)


@dataclass(frozen=True)
class Change:
    kind: Literal["modified", "deleted"]
    job: Job


def _translate(error: Exception) -> ApiError:
    if isinstance(error, ApiException):
        if error.status == 429:
            retry_after = (error.headers or {}).get("Retry-After", "1")
            return ApiError(
                429,
                "overloaded",
                "the apiserver is throttling requests",
                headers={"Retry-After": retry_after},
            )
        if error.status == 422:
            return ApiError(
                422, "invalid_request", f"the apiserver rejected the job: {error.reason}"
            )
        if error.status in (401, 403):
            log.error("apiserver refused the API's credentials: %s", error.reason)
    else:
        log.warning("apiserver unreachable: %s", error)
    return ApiError(503, "unavailable", "the Kubernetes apiserver is unavailable")


class Kube:
    """IngestJobs in one namespace; every call runs on the shared blocking pool."""

    def __init__(self, api_client: Any, namespace: str, blocking: Blocking, watches: int) -> None:
        self._custom = client.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._blocking = blocking
        self._watch_pool = Blocking(watches, "watch")
        self._watch_slots = asyncio.Semaphore(watches)

    @property
    def namespace(self) -> str:
        return self._namespace

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await self._blocking.run(function, *args, **kwargs)
        except (ApiException, Urllib3Error, OSError) as error:
            raise _translate(error) from error

    def _resource(self) -> tuple[str, str, str, str]:
        return crd.GROUP, crd.VERSION, self._namespace, crd.PLURAL

    async def create(self, body: Job) -> Job:
        created = await self._call(
            self._custom.create_namespaced_custom_object, *self._resource(), body
        )
        return cast(Job, created)

    async def get(self, name: str) -> Job | None:
        try:
            job = await self._blocking.run(
                self._custom.get_namespaced_custom_object, *self._resource(), name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise _translate(error) from error
        except (Urllib3Error, OSError) as error:
            raise _translate(error) from error
        return cast(Job, job)

    async def list_page(
        self, label_selector: str, limit: int, continue_token: str | None
    ) -> tuple[list[Job], str | None]:
        """One page of IngestJobs (the apiserver's order: by name, so oldest first) and the
        token for the next; an expired or foreign token is 422 `invalid_cursor`."""
        arguments: dict[str, Any] = {"label_selector": label_selector, "limit": limit}
        if continue_token:
            arguments["_continue"] = continue_token
        try:
            listed = await self._blocking.run(
                self._custom.list_namespaced_custom_object, *self._resource(), **arguments
            )
        except ApiException as error:
            # 410: the token's snapshot was compacted away; 400: not a token at all.
            if continue_token and error.status in (400, 410):
                raise ApiError(
                    422, "invalid_cursor", "the cursor is expired or not valid; start again"
                ) from None
            raise _translate(error) from error
        except (Urllib3Error, OSError) as error:
            raise _translate(error) from error
        body = cast(dict[str, Any], listed)
        token = (body.get("metadata") or {}).get("continue") or None
        return cast(list[Job], body["items"]), token

    async def list(self, label_selector: str) -> list[Job]:
        listed = await self._call(
            self._custom.list_namespaced_custom_object,
            *self._resource(),
            label_selector=label_selector,
        )
        return cast(list[Job], cast(dict[str, Any], listed)["items"])

    async def delete(self, name: str) -> None:
        try:
            await self._blocking.run(
                self._custom.delete_namespaced_custom_object, *self._resource(), name
            )
        except ApiException as error:
            if error.status != 404:
                raise _translate(error) from error

    async def ready(self) -> bool:
        """True when the apiserver answers and lets us list IngestJobs (RBAC and CRD in place)."""
        try:
            await self._blocking.run(
                self._custom.list_namespaced_custom_object, *self._resource(), limit=1
            )
        except (ApiException, Urllib3Error, OSError):
            return False
        return True

    async def next_change(self, job: Job, seconds: float) -> Change | None:
        """The job's next change after the version in hand, or None after `seconds`.

        A Kubernetes watch from the job's resourceVersion, so nothing between the read
        and the watch is missed and no polling happens. Watches hold a thread each; past
        the configured number of open watches the request is refused with 429.
        """
        if self._watch_slots.locked():
            raise ApiError(
                429,
                "too_many_watches",
                "too many open watches; retry later",
                headers={"Retry-After": "1"},
            )
        async with self._watch_slots:
            try:
                with OPEN_WATCHES.track_inprogress():
                    return await self._watch_pool.run(self._watch_once, job, seconds)
            except (ApiException, Urllib3Error, OSError) as error:
                raise _translate(error) from error

    def _watch_once(self, job: Job, timeout: float) -> Change | None:
        metadata = job["metadata"]
        seconds = max(1, round(timeout))
        with _closing(watch.Watch()) as watcher:
            for event in watcher.stream(
                self._custom.list_namespaced_custom_object,
                *self._resource(),
                field_selector=f"metadata.name={metadata['name']}",
                resource_version=metadata["resourceVersion"],
                timeout_seconds=seconds,
                # The server ends the watch after `seconds`; the client bound covers a hang.
                _request_timeout=seconds + 5,
            ):
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    # Usually 410 Gone: the version is too old to watch from; re-read instead.
                    return None
                if obj.get("metadata", {}).get("uid") != metadata["uid"]:
                    continue
                if kind == "DELETED":
                    return Change("deleted", obj)
                if kind == "MODIFIED":
                    return Change("modified", obj)
        return None

    def close(self) -> None:
        self._watch_pool.close()


@contextmanager
def _closing(watcher: watch.Watch) -> Iterator[watch.Watch]:
    try:
        yield watcher
    finally:
        watcher.stop()
