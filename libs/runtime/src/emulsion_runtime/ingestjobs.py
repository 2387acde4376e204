"""The one async client the API and the controller read and write IngestJobs with (and
the few other objects they touch: core Events, kopf's ClusterKopfPeering).

REST over one aiohttp session, not a Kubernetes library: see docs/architecture.md
("The apiserver client") for the comparison with kubernetes_asyncio, lightkube and kr8s
and its figures. In short: kubernetes_asyncio costs ~84 MB of RSS on import (the
controller runs in ~90 MB), lightkube has no preconditioned delete, no single list page
with its continue token and no read bound on a watch, and kr8s is untyped and the
slowest on a get; the calls below are few and each is a plain HTTP request.

Credentials come from the official client's loaders (in-cluster, else a kubeconfig with a
token or a client certificate), which kopf also uses; its projected service-account token
is read per request, so a rotated token is picked up.

Every call is bounded: 10 s to connect, 30 s between reads (a watch: its server-side
timeout plus a grace). A server that accepts and never answers raises `KubeTimeout`.
Answers of 400 and above raise `KubeFailure` with the apiserver's message; what a status
means is the caller's to decide (the API maps it to problems, the controller to retries).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

import aiohttp
from pydantic import BaseModel

from emulsion_contracts import crd

Body = dict[str, Any]
M = TypeVar("M", bound=BaseModel)

# (connect, read) seconds for every call. Without a read bound a request sent to an
# apiserver that accepted the connection and never answers (restarting, partitioned, a
# dropped NAT entry) would wait for ever, and hold whatever waits on it.
REQUEST_TIMEOUT: Final = (10.0, 30.0)
# A watch ends on the server after its `timeoutSeconds`; this covers a server that hangs.
WATCH_GRACE_SECONDS: Final = 5.0
MERGE_PATCH: Final = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the apiserver's REST paths."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None, name: str = "") -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        where = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{root}{where}/{self.plural}" + (f"/{name}" if name else "")


INGESTJOBS: Final = Resource(crd.GROUP, crd.VERSION, crd.PLURAL)
EVENTS: Final = Resource("", "v1", "events")
CLUSTER_PEERINGS: Final = Resource("kopf.dev", "v1", "clusterkopfpeerings", namespaced=False)


class KubeFailure(Exception):
    """An apiserver answer that is an error: its status, headers and reason."""

    def __init__(self, status: int, headers: Mapping[str, str], reason: str) -> None:
        # "(503) ..." as the official client's ApiException began: Events and logs that
        # quote a failure read the same, without its headers and body.
        super().__init__(f"({status}) {reason}")
        self.status = status
        self.headers = headers
        self.reason = reason


class KubeTimeout(TimeoutError):
    """The apiserver did not connect or answer within the call's bound."""


@dataclass(frozen=True)
class WatchEvent:
    kind: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
    object: Body


def read(model: type[M], body: Mapping[str, Any]) -> M:
    """An object as its model (IngestJob, JobOutline...): the typed view of a body. A model
    with its own `read` (the IngestJob models: InvalidSpec for what the contracts refuse)
    reads it that way."""
    reader = getattr(model, "read", None)
    return cast(M, reader(body)) if callable(reader) else model.model_validate(dict(body))


def _body(value: Body | BaseModel, *, patch: bool = False) -> Body:
    """A model as the apiserver takes it. A model's own `to_body` for an object; for a
    merge patch only the fields the caller set, so a patch touches nothing else."""
    if not isinstance(value, BaseModel):
        return value
    if patch:
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    to_body = getattr(value, "to_body", None)
    if callable(to_body):
        return cast(Body, to_body())
    return value.model_dump(mode="json", by_alias=True, exclude_none=True)


def _token(configuration: Any) -> dict[str, str]:
    """The configuration's bearer token, read per request: in a pod the Kubernetes
    client refreshes the projected service-account token through a hook this calls.
    auth_settings() finds the token under either key the loaders use (the in-cluster
    loader's `BearerToken`, a kubeconfig's `authorization`)."""
    return {
        setting["key"]: setting["value"]
        for setting in configuration.auth_settings().values()
        if setting.get("in") == "header" and setting.get("value")
    }


def _ssl_context(configuration: Any) -> ssl.SSLContext | bool:
    if not configuration.host.startswith("https"):
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def configuration(kubeconfig: str | None = None) -> Any:
    """In-cluster credentials in a pod, else `kubeconfig` (None: KUBECONFIG or
    ~/.kube/config), as kopf finds them. Imported here so that a process that never
    talks to the apiserver never loads the Kubernetes client."""
    from emulsion_runtime import kube

    return kube.api_client(kubeconfig).configuration


class ApiServer:
    """Calls to one apiserver over one pool of keep-alive connections: no thread and no
    new TLS handshake per call. aiohttp, for its C HTTP parser: on the API's bench a
    create cost about 0.6 ms of CPU this way, 1.1 ms through the official client on a
    thread and 2.7 ms with httpx."""

    def __init__(
        self,
        configuration: Any,
        connections: int,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
    ) -> None:
        self._configuration = configuration
        self._connections = connections
        self._connect, self._read = timeout
        # Made on first use: an aiohttp session belongs to the running event loop.
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self._configuration.host,
                connector=aiohttp.TCPConnector(
                    limit=self._connections, ssl=_ssl_context(self._configuration)
                ),
                raise_for_status=False,
            )
        return self._session

    def _bound(self, total: float | None = None) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total, connect=self._connect, sock_read=self._read)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        """The answer's JSON if it is a success; else KubeFailure, or KubeTimeout."""
        headers = _token(self._configuration)
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        try:
            async with self._open().request(
                method,
                path,
                params=dict(params or {}),
                data=data,
                headers=headers,
                timeout=self._bound(),
            ) as response:
                if response.status >= 400:
                    raise await _failure(response)
                return json.loads(await response.read())
        except TimeoutError as error:
            raise KubeTimeout(f"{method} {path} timed out") from error

    # -- objects -----------------------------------------------------------------------

    async def create(self, resource: Resource, namespace: str | None, body: Body) -> Body:
        return cast(Body, await self.request("POST", resource.path(namespace), body=body))

    async def get(self, resource: Resource, namespace: str | None, name: str) -> Body | None:
        """The object, or None if there is none by that name."""
        try:
            return cast(Body, await self.request("GET", resource.path(namespace, name)))
        except KubeFailure as error:
            if error.status == 404:
                return None
            raise

    async def list_page(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[list[Body], str | None]:
        """One page (the apiserver's order: by name) and the token for the next."""
        params: dict[str, Any] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if limit is not None:
            params["limit"] = limit
        if continue_token:
            params["continue"] = continue_token
        listed = cast(Body, await self.request("GET", resource.path(namespace), params=params))
        token = (listed.get("metadata") or {}).get("continue") or None
        return cast(list[Body], listed["items"]), token

    async def list(
        self, resource: Resource, namespace: str | None, *, label_selector: str | None = None
    ) -> list[Body]:
        items, _ = await self.list_page(resource, namespace, label_selector=label_selector)
        return items

    async def patch_status(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch: Body,
    ) -> Body:
        """A JSON merge patch of the status subresource. A `metadata.resourceVersion` in
        the patch is a precondition (409 if it differs); a `metadata.uid` is not: the
        status strategy resets metadata to the stored object's, so a uid that differs
        is ignored (tests/runtime/test_ingestjobs.py shows both)."""
        path = resource.path(namespace, name) + "/status"
        return cast(Body, await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH))

    async def patch(
        self, resource: Resource, namespace: str | None, name: str, patch: Body
    ) -> Body:
        """A JSON merge patch of the object itself (not its status)."""
        path = resource.path(namespace, name)
        return cast(Body, await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH))

    async def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> bool:
        """Delete in the background; False if it is already gone. `uid` and
        `resource_version` are preconditions (409 if they differ)."""
        preconditions = {
            key: value
            for key, value in (("uid", uid), ("resourceVersion", resource_version))
            if value is not None
        }
        options: Body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if preconditions:
            options["preconditions"] = preconditions
        try:
            await self.request("DELETE", resource.path(namespace, name), body=options)
        except KubeFailure as error:
            if error.status == 404:
                return False
            raise
        return True

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        resource_version: str,
        seconds: int,
        field_selector: str | None = None,
        label_selector: str | None = None,
        bookmarks: bool = False,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Changes after `resource_version` until the server ends the watch after
        `seconds`; bounded here too, by `seconds` plus a grace. An ERROR event (usually
        410 Gone: the version was compacted) is yielded for the caller to re-read."""
        params: dict[str, Any] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": seconds,
        }
        if field_selector:
            params["fieldSelector"] = field_selector
        if label_selector:
            params["labelSelector"] = label_selector
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        path = resource.path(namespace)
        try:
            async with self._open().get(
                path,
                params=params,
                headers=_token(self._configuration),
                timeout=self._bound(total=seconds + WATCH_GRACE_SECONDS),
            ) as response:
                if response.status >= 400:
                    raise await _failure(response)
                async for line in _lines(response):
                    event = json.loads(line)
                    yield WatchEvent(event.get("type"), event.get("object") or {})
        except TimeoutError as error:
            raise KubeTimeout(f"watch {path} timed out") from error

    async def version(self) -> Body:
        return cast(Body, await self.request("GET", "/version"))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class IngestJobs:
    """IngestJobs, as bodies or as the contracts' models; the model is the caller's, so
    the spec's and status's shape can change without this client changing."""

    def __init__(self, server: ApiServer) -> None:
        self.server = server

    async def create(self, namespace: str, job: Body | BaseModel) -> Body:
        return await self.server.create(INGESTJOBS, namespace, _body(job))

    async def get(self, namespace: str, name: str) -> Body | None:
        return await self.server.get(INGESTJOBS, namespace, name)

    async def get_as(self, model: type[M], namespace: str, name: str) -> M | None:
        body = await self.get(namespace, name)
        return None if body is None else read(model, body)

    async def list_page(
        self,
        namespace: str,
        label_selector: str | None,
        limit: int | None,
        continue_token: str | None,
    ) -> tuple[list[Body], str | None]:
        return await self.server.list_page(
            INGESTJOBS,
            namespace,
            label_selector=label_selector,
            limit=limit,
            continue_token=continue_token,
        )

    async def list(self, namespace: str, label_selector: str | None = None) -> list[Body]:
        return await self.server.list(INGESTJOBS, namespace, label_selector=label_selector)

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Body | BaseModel,
        *,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> Body:
        """Merge `status` into the job; 409 if `resource_version` is no longer the job's.
        `uid` is sent but the apiserver does not check it here (see ApiServer.patch_status)."""
        metadata = {
            key: value
            for key, value in (("uid", uid), ("resourceVersion", resource_version))
            if value is not None
        }
        patch: Body = {"status": _body(status, patch=True)}
        if metadata:
            patch["metadata"] = metadata
        return await self.server.patch_status(INGESTJOBS, namespace, name, patch)

    async def annotate(self, namespace: str, name: str, uid: str, annotations: Body) -> Body:
        """Merge `annotations` into the job named `name` whose uid is `uid` (409 if that
        job was replaced; the spec is immutable, so nothing else can change this way)."""
        patch: Body = {"metadata": {"uid": uid, "annotations": annotations}}
        return await self.server.patch(INGESTJOBS, namespace, name, patch)

    async def delete(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        return await self.server.delete(INGESTJOBS, namespace, name, uid=uid)

    def watch(
        self, namespace: str, *, resource_version: str, seconds: int, name: str | None = None
    ) -> AsyncGenerator[WatchEvent, None]:
        """See ApiServer.watch; close it (contextlib.aclosing) when leaving it early."""
        return self.server.watch(
            INGESTJOBS,
            namespace,
            resource_version=resource_version,
            seconds=seconds,
            field_selector=f"metadata.name={name}" if name else None,
        )

    async def post_event(self, namespace: str, body: Body) -> Body:
        """A core/v1 Event about a job (the controller's events.py builds it)."""
        return await self.server.create(EVENTS, namespace, body)


async def _failure(response: aiohttp.ClientResponse) -> KubeFailure:
    """The apiserver's Status `message` when it sent one, else the reason phrase."""
    reason = response.reason or str(response.status)
    try:
        body = json.loads(await response.read())
        reason = str(body.get("message") or reason)
    except (TimeoutError, ValueError, AttributeError, aiohttp.ClientError):
        pass
    return KubeFailure(response.status, dict(response.headers), reason)


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """A watch's events, one JSON document a line; a line may be far longer than
    aiohttp's readline limit (a job of a thousand items), so chunks are split here."""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending
