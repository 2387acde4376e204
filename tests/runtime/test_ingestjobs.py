"""The shared apiserver client (emulsion_runtime.ingestjobs): the bearer token it sends,
the bound on every call, and every call against the stack's real apiserver."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader

from emulsion_contracts import crd, keys
from emulsion_contracts.crd import Phase
from emulsion_contracts.ingestjob import IngestJobStatus, JobOutline
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import kube as contracts_kube
from emulsion_runtime.ingestjobs import (
    CLUSTER_PEERINGS,
    ApiServer,
    IngestJobs,
    KubeFailure,
    KubeTimeout,
    WatchEvent,
    _token,
)

# -- the bearer token -------------------------------------------------------------------
# The Kubernetes client's own, wherever its loader put it (in a pod, the in-cluster
# loader keys it `BearerToken`).


def test_the_in_cluster_service_account_token_is_sent(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("service-account-token")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("not parsed by the loader")
    configuration = client.Configuration()
    InClusterConfigLoader(
        token_filename=str(token_file),
        cert_filename=str(ca_file),
        environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
    ).load_and_set(configuration)
    (header,) = _token(configuration).items()
    # The scheme is case-insensitive (RFC 9110); the loader writes "bearer".
    assert (header[0], header[1].lower()) == ("authorization", "bearer service-account-token")


def test_no_token_sends_no_header() -> None:
    assert _token(client.Configuration()) == {}


# -- every call is bounded ----------------------------------------------------------------

BOUND = (0.5, 0.5)
# Well above the read bound (nothing is retried), and far below "never".
DEADLINE_SECONDS = 10.0


async def _first(events: AsyncGenerator[WatchEvent, None]) -> WatchEvent | None:
    async with contextlib.aclosing(events):
        async for event in events:
            return event
    return None


CALLS: dict[str, Callable[[IngestJobs], Awaitable[Any]]] = {
    "create": lambda jobs: jobs.create("default", {"kind": "IngestJob"}),
    "get": lambda jobs: jobs.get("default", "job"),
    "get_as": lambda jobs: jobs.get_as(JobOutline, "default", "job"),
    "list_page": lambda jobs: jobs.list_page("default", "a=b", 10, "token"),
    "list": lambda jobs: jobs.list("default", "a=b"),
    "patch_status": lambda jobs: jobs.patch_status("default", "job", {"phase": "Queued"}),
    "delete": lambda jobs: jobs.delete("default", "job", uid="uid"),
    # A watch of an hour: the read bound, not the server's timeout, must end it.
    "watch": lambda jobs: _first(jobs.watch("default", resource_version="1", seconds=3600)),
    "post_event": lambda jobs: jobs.post_event("default", {"kind": "Event"}),
    "create_cluster_object": lambda jobs: jobs.server.create(CLUSTER_PEERINGS, None, {}),
    "get_cluster_object": lambda jobs: jobs.server.get(CLUSTER_PEERINGS, None, "peering"),
    "version": lambda jobs: jobs.server.version(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_to_an_apiserver_that_never_answers_fails_within_its_timeout(
    silent_server: str, call: str
) -> None:
    configuration = client.Configuration(host=silent_server)
    configuration.api_key = {"BearerToken": "Bearer token"}
    jobs = IngestJobs(ApiServer(configuration, 2, BOUND))

    async def attempt() -> BaseException | None:
        try:
            await asyncio.wait_for(CALLS[call](jobs), DEADLINE_SECONDS)
        except KubeTimeout as error:
            return error
        except TimeoutError:
            return None  # still waiting at the deadline: the defect
        finally:
            await jobs.server.close()
        raise AssertionError("a server that never answers cannot have answered")

    error = asyncio.run(attempt())
    assert error is not None, f"{call} still waited after {DEADLINE_SECONDS:.0f} s"
    assert "timed out" in str(error).lower()


def test_a_server_that_refuses_connections_is_no_timeout() -> None:
    """What the API maps to 503 unreachable: aiohttp's own error, raised at once."""
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    jobs = IngestJobs(ApiServer(client.Configuration(host=f"http://127.0.0.1:{port}"), 1))

    async def attempt() -> BaseException:
        try:
            await jobs.get("default", "job")
        except Exception as error:
            return error
        finally:
            await jobs.server.close()
        raise AssertionError("nothing listens there")

    error = asyncio.run(attempt())
    assert not isinstance(error, (KubeTimeout, KubeFailure))


# -- against the real apiserver -----------------------------------------------------------


def _job(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The smallest job the CRD takes today; the only part of this file shaped by it."""
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "collection": "c1",
            "profile": "default",
            "items": [
                {"source": keys.staging_key("c1", keys.new_ulid(), "a.jpg"), "asset": "a.jpg"}
            ],
        },
    }


@pytest.fixture
def namespace(kube: Any) -> Iterator[str]:
    name = f"ij-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _failure(call: Awaitable[Any]) -> Awaitable[KubeFailure]:
    async def caught() -> KubeFailure:
        try:
            await call
        except KubeFailure as failure:
            return failure
        raise AssertionError("the apiserver took it")

    return caught()


def test_every_call_against_the_real_apiserver(stack: Endpoints, namespace: str) -> None:
    configuration = contracts_kube.api_client(stack.kubeconfig).configuration
    # The devstack's kubeconfig authenticates with a client certificate over TLS.
    assert configuration.host.startswith("https") and configuration.cert_file
    batch = uuid.uuid4().hex[:8]

    async def scenario() -> None:
        jobs = IngestJobs(ApiServer(configuration, 4))
        try:
            names = [f"job-{index}" for index in range(3)]
            created = [
                await jobs.create(namespace, _job(name, {crd.LABEL_BATCH: batch})) for name in names
            ]
            await jobs.create(namespace, _job("other", {crd.LABEL_BATCH: "other"}))
            assert [body["metadata"]["name"] for body in created] == names
            again = await _failure(jobs.create(namespace, _job(names[0], {})))
            assert again.status == 409

            # get: the body, the model, and None for no such job.
            read = await jobs.get(namespace, names[0])
            assert read is not None
            assert read["metadata"]["uid"] == created[0]["metadata"]["uid"]
            typed = await jobs.get_as(JobOutline, namespace, names[0])
            assert typed is not None and typed.metadata.name == names[0]
            assert await jobs.get(namespace, "missing") is None
            assert await jobs.get_as(JobOutline, namespace, "missing") is None

            # list: by label, page by page with the continue token, in name order.
            selector = f"{crd.LABEL_BATCH}={batch}"
            seen: list[str] = []
            token: str | None = None
            while True:
                page, token = await jobs.list_page(namespace, selector, 2, token)
                assert len(page) <= 2
                seen += [body["metadata"]["name"] for body in page]
                if token is None:
                    break
            assert seen == names
            assert sorted(b["metadata"]["name"] for b in await jobs.list(namespace, selector)) == (
                names
            )
            bad_token = await _failure(jobs.list_page(namespace, selector, 2, "not-a-token"))
            assert bad_token.status in (400, 410)

            # watch from the version in hand: a change after it arrives, nothing is missed.
            first = created[0]
            meta = first["metadata"]
            watched = asyncio.create_task(
                _first(
                    jobs.watch(
                        namespace,
                        name=meta["name"],
                        resource_version=meta["resourceVersion"],
                        seconds=20,
                    )
                )
            )
            # patch status: a typed status, on uid and resourceVersion preconditions.
            written = await jobs.patch_status(
                namespace,
                meta["name"],
                IngestJobStatus(phase=Phase.QUEUED, total=1),
                uid=meta["uid"],
                resource_version=meta["resourceVersion"],
            )
            assert written["status"]["phase"] == "Queued" and written["status"]["total"] == 1
            # Only what was set is written: no empty lists for the unset fields.
            assert "failures" not in written["status"]
            event = await asyncio.wait_for(watched, 20)
            assert event is not None and event.kind == "MODIFIED"
            assert event.object["status"]["phase"] == "Queued"

            stale = await _failure(
                jobs.patch_status(
                    namespace,
                    meta["name"],
                    {"phase": "Processing"},
                    resource_version=meta["resourceVersion"],
                )
            )
            assert stale.status == 409
            # A uid is no precondition on the status subresource: the apiserver resets
            # metadata there and takes the patch (so only resourceVersion guards a
            # status write against a job deleted and created again under its name).
            replaced = await jobs.patch_status(
                namespace, meta["name"], {"phase": "Queued"}, uid="other"
            )
            assert replaced["metadata"]["uid"] == meta["uid"]
            invalid = await _failure(
                jobs.patch_status(namespace, meta["name"], {"phase": "Running"})
            )
            assert invalid.status == 422

            # an event about the job.
            posted = await jobs.post_event(
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"generateName": "ij-"},
                    "involvedObject": {
                        "apiVersion": crd.API_VERSION,
                        "kind": crd.KIND,
                        "name": meta["name"],
                        "namespace": namespace,
                        "uid": meta["uid"],
                    },
                    "reason": "Tested",
                    "message": "the shared client posts events",
                    "type": "Normal",
                },
            )
            assert posted["reason"] == "Tested"

            # delete on a uid precondition: refused for another uid, then done, then gone.
            wrong = await _failure(jobs.delete(namespace, meta["name"], uid="other"))
            assert wrong.status == 409
            deleted_at = time.monotonic()
            assert await jobs.delete(namespace, meta["name"], uid=meta["uid"]) is True
            assert await jobs.delete(namespace, meta["name"], uid=meta["uid"]) is False
            assert await jobs.get(namespace, meta["name"]) is None, time.monotonic() - deleted_at

            # a cluster-scoped object (kopf's peering) and the version.
            peering = f"peering-{batch}"
            await jobs.server.create(
                CLUSTER_PEERINGS,
                None,
                {
                    "apiVersion": "kopf.dev/v1",
                    "kind": "ClusterKopfPeering",
                    "metadata": {"name": peering},
                },
            )
            assert (await jobs.server.get(CLUSTER_PEERINGS, None, peering)) is not None
            assert await jobs.server.delete(CLUSTER_PEERINGS, None, peering) is True
            assert "gitVersion" in await jobs.server.version()
        finally:
            await jobs.server.close()

    asyncio.run(scenario())


def test_a_watch_from_a_compacted_version_says_so(stack: Endpoints, namespace: str) -> None:
    """An ERROR event (410 Gone) is handed to the caller, who re-reads."""
    configuration = contracts_kube.api_client(stack.kubeconfig).configuration

    async def scenario() -> WatchEvent | None:
        jobs = IngestJobs(ApiServer(configuration, 1))
        try:
            return await asyncio.wait_for(
                _first(jobs.watch(namespace, resource_version="1", seconds=5)), 20
            )
        finally:
            await jobs.server.close()

    event = asyncio.run(scenario())
    assert event is not None and event.kind == "ERROR"
    assert event.object.get("code") == 410
