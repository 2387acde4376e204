"""The controller's own apiserver calls (kopf makes its own): IngestJob reads and writes,
the Events it posts about them, and kopf's ClusterKopfPeering object.

Through the shared async client (emulsion_runtime.ingestjobs): no thread per call, and
every call bounded (10 s connect, 30 s read; see REQUEST_TIMEOUT there). The connection
pool's size bounds how many requests the controller has in flight at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from emulsion_runtime.ingestjobs import (
    CLUSTER_PEERINGS,
    REQUEST_TIMEOUT,
    ApiServer,
    IngestJobs,
    KubeFailure,
    configuration,
)

__all__ = ["REQUEST_TIMEOUT", "Conflict", "Kube", "KubeFailure"]


class Conflict(Exception):
    """The object changed since the resourceVersion a write was based on (or was replaced)."""


class Unwritable(Exception):
    """The apiserver refused a status as such (422, 413, 400): writing it again can
    never succeed, so the caller fails the job instead of retrying."""


# Answers to a write that say the body itself is refused, not that the server is unwell.
REFUSED_STATUSES = (400, 413, 422)


class Kube:
    def __init__(
        self,
        config: Any,
        concurrency: int,
        request_timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        self._server = ApiServer(config, concurrency, request_timeout)
        self._jobs = IngestJobs(self._server)
        # The loop the calls run on, for the readiness probe made from the health thread.
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_environment(cls, concurrency: int, kubeconfig: str | None = None) -> Kube:
        """In-cluster credentials in a pod, else the kubeconfig, as kopf does."""
        return cls(configuration(kubeconfig), concurrency)

    def _bind(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._bind()
        return await self._jobs.get(namespace, name)

    async def patch_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge `status` into the job; the job as written, or None if it is gone.

        With `resource_version`, a write by anyone else since (a job deleted and created
        again under the same name included) raises Conflict. The uid is sent but, on the
        status subresource, the apiserver does not check it (ApiServer.patch_status): a
        write without `resource_version` lands on whatever job has the name now.
        """
        self._bind()
        try:
            return await self._jobs.patch_status(
                namespace, name, status, uid=uid, resource_version=resource_version
            )
        except KubeFailure as error:
            if error.status == 409 and resource_version is not None:
                raise Conflict(f"{namespace}/{name} changed since {resource_version}") from error
            if error.status in (404, 409):
                return None
            if error.status in REFUSED_STATUSES:
                raise Unwritable(f"{namespace}/{name}: {error.status} {error.reason}") from error
            raise

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Delete exactly this job (uid precondition); False if it is already gone."""
        self._bind()
        try:
            return await self._jobs.delete(namespace, name, uid=uid)
        except KubeFailure as error:
            if error.status == 409:
                return False
            raise

    async def post_event(self, namespace: str, body: dict[str, Any]) -> None:
        """Create a core/v1 Event (see events.py)."""
        self._bind()
        await self._jobs.post_event(namespace, body)

    async def ensure_cluster_peering(self, name: str) -> None:
        """Create kopf's ClusterKopfPeering object if missing (kopf only ever patches it)."""
        self._bind()
        body = {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": name},
        }
        try:
            await self._server.create(CLUSTER_PEERINGS, None, body)
        except KubeFailure as error:
            if error.status != 409:
                raise

    async def get_cluster_peering(self, name: str) -> dict[str, Any] | None:
        """kopf's ClusterKopfPeering object (each live controller's keep-alive is in status)."""
        self._bind()
        return await self._server.get(CLUSTER_PEERINGS, None, name)

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the apiserver answers (`/version`); blocking, for the readiness thread:
        the probe runs on the controller's loop, whose session it shares."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        probe = asyncio.run_coroutine_threadsafe(self._server.version(), loop)
        try:
            probe.result(timeout)
        except FutureTimeout:
            probe.cancel()
            return False
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self._server.close()
