"""The controller's own apiserver calls (kopf makes its own): IngestJob reads and writes,
and the Events it posts about them.

The official client is synchronous; calls run on a small dedicated thread pool, which
also bounds how many requests the controller has in flight at once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from emulsion_contracts import crd, kube
from emulsion_contracts.blocking import run_blocking

T = TypeVar("T")

MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds for every call. Without one, urllib3 waits for ever: a request
# sent to an apiserver that accepted the connection and never answers (restarting,
# partitioned, a dropped NAT entry) would hold its job's status writer, and so every
# result of that job, until the process was restarted.
REQUEST_TIMEOUT = (10.0, 30.0)


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
        api_client: Any,
        concurrency: int,
        request_timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        self._api_client = api_client
        self._request_timeout = request_timeout
        self._custom = client.CustomObjectsApi(api_client)
        # No CoreV1Api: building it costs ~72 MB of RSS (its validated methods) for the
        # one core call made here, posting an Event; see post_event.
        self._version = client.VersionApi(api_client)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kube")

    @classmethod
    def from_environment(cls, concurrency: int, kubeconfig: str | None = None) -> Kube:
        """In-cluster credentials in a pod, else the kubeconfig, as kopf does."""
        # One connection per thread, so no call waits for a pooled connection.
        return cls(kube.api_client(kubeconfig, connections=concurrency), concurrency)

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_blocking(
            function,
            *args,
            executor=self._pool,
            _request_timeout=self._request_timeout,
            **kwargs,
        )

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = await self._call(
                self._custom.get_namespaced_custom_object,
                crd.GROUP,
                crd.VERSION,
                namespace,
                crd.PLURAL,
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], body)

    async def patch_status(
        self,
        namespace: str,
        name: str,
        uid: str,
        status: dict[str, Any],
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """Merge `status` into the job; the job as written, or None if it is gone.

        The uid in the patch is a precondition: a job deleted and created again under
        the same name answers 409 instead of receiving its predecessor's progress. With
        `resource_version`, so is that: a write by anyone else since raises Conflict.
        """
        metadata = {"uid": uid}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        try:
            body = await self._call(
                self._custom.patch_namespaced_custom_object_status,
                crd.GROUP,
                crd.VERSION,
                namespace,
                crd.PLURAL,
                name,
                {"metadata": metadata, "status": status},
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if error.status == 409 and resource_version is not None:
                raise Conflict(f"{namespace}/{name} changed since {resource_version}") from error
            if error.status in (404, 409):
                return None
            if error.status in REFUSED_STATUSES:
                raise Unwritable(f"{namespace}/{name}: {error.status} {error.reason}") from error
            raise
        return cast(dict[str, Any], body)

    async def delete_job(self, namespace: str, name: str, uid: str) -> bool:
        """Delete exactly this job (uid precondition); False if it is already gone."""
        try:
            await self._call(
                self._custom.delete_namespaced_custom_object,
                crd.GROUP,
                crd.VERSION,
                namespace,
                crd.PLURAL,
                name,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid=uid),
                    propagation_policy="Background",
                ),
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    async def post_event(self, namespace: str, body: dict[str, Any]) -> None:
        """Create a core/v1 Event (see events.py).

        Sent through the ApiClient itself (same auth, same pool): see __init__.
        """
        await self._call(self._create_event, namespace, body)

    def _create_event(
        self, namespace: str, body: dict[str, Any], _request_timeout: tuple[float, float]
    ) -> None:
        request = self._api_client.param_serialize(
            method="POST",
            resource_path="/api/v1/namespaces/{namespace}/events",
            path_params={"namespace": namespace},
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api_client.call_api(*request, _request_timeout=_request_timeout)
        response.read()
        # Raises ApiException for any status outside 2xx, as the generated method does.
        self._api_client.response_deserialize(response, {"2XX": "object"})

    async def ensure_cluster_peering(self, name: str) -> None:
        """Create kopf's ClusterKopfPeering object if missing (kopf only ever patches it)."""
        body = {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": name},
        }
        try:
            await self._call(
                self._custom.create_cluster_custom_object,
                "kopf.dev",
                "v1",
                "clusterkopfpeerings",
                body,
            )
        except ApiException as error:
            if error.status != 409:
                raise

    async def get_cluster_peering(self, name: str) -> dict[str, Any] | None:
        """kopf's ClusterKopfPeering object (each live controller's keep-alive is in status)."""
        try:
            body = await self._call(
                self._custom.get_cluster_custom_object,
                "kopf.dev",
                "v1",
                "clusterkopfpeerings",
                name,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return cast(dict[str, Any], body)

    def reachable(self, timeout: float = 2.0) -> bool:
        """Whether the apiserver answers (`/version`); blocking, for the readiness thread."""
        try:
            self._version.get_code(_request_timeout=timeout)
        except Exception:
            return False
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
