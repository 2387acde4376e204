"""Fixtures for the API's tests: the API as a real process on the real stack (started by
`LocalStack.start_service`, as `make up` starts it), an authenticated HTTP client, staged
uploads, and the controller's part played by patching IngestJob status directly.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from emulsion_api.scopes import token_digest
from emulsion_contracts import crd, keys, natsauth
from emulsion_contracts.ingestjob import IngestJob
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import Derivative, JobRef
from emulsion_devstack.processes import ProcessRecord, log_tail
from emulsion_devstack.processes import wait_for as wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_runtime import records_store

NAMESPACE = "default"


# Two tenants' tokens besides the stack's (admin) token, scoped by EMULSION_API_TOKEN_SCOPES.
TENANT_A_TOKEN = secrets.token_urlsafe(24)
TENANT_B_TOKEN = secrets.token_urlsafe(24)
TENANT_A_PREFIX = "tenant-a-"
TENANT_B_COLLECTION = "tenant-b"
# A browser page on this origin may call the API (CORS).
GALLERY_ORIGIN = "https://gallery.example.com"


def metrics_url_of(record: ProcessRecord) -> str:
    """Where a started API serves /metrics: its ops port, from its environment."""
    environment = Path(f"/proc/{record.pid}/environ").read_bytes().split(b"\0")
    port = next(v for v in environment if v.startswith(b"EMULSION_METRICS_PORT="))
    return f"http://127.0.0.1:{port.split(b'=', 1)[1].decode()}/metrics"


@dataclass(frozen=True)
class ApiProcess:
    url: str
    token: str
    record: ProcessRecord
    metrics_url: str

    def client(self, token: str | None = None, **arguments: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token if token is None else token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0, **arguments)

    def log(self) -> str:
        return log_tail(self.record.log, 60)


@pytest.fixture(scope="session")
def api_process(stack: Endpoints, stack_state_dir: Path) -> ApiProcess:
    local = LocalStack(stack_state_dir, say=lambda line: None)
    # A short grace period so a GC request's not_before is checkable; the stack's `down`
    # stops the process with the servers.
    scopes = {
        token_digest(stack.api_token): ["*"],
        token_digest(TENANT_A_TOKEN): [f"{TENANT_A_PREFIX}*"],
        token_digest(TENANT_B_TOKEN): [TENANT_B_COLLECTION, "other-*"],
    }
    record = local.start_service(
        "api",
        {
            "EMULSION_GC_GRACE_SECONDS": "120",
            "EMULSION_API_TOKENS": ",".join((stack.api_token, TENANT_A_TOKEN, TENANT_B_TOKEN)),
            "EMULSION_API_TOKEN_SCOPES": json.dumps(scopes),
            "EMULSION_CORS_ALLOWED_ORIGINS": f"{GALLERY_ORIGIN}, https://admin.example.com/",
        },
    )
    return ApiProcess(
        LocalStack.service_url(record), stack.api_token, record, metrics_url_of(record)
    )


@pytest.fixture
def api(api_process: ApiProcess) -> Iterator[httpx.Client]:
    with api_process.client() as session:
        yield session


@pytest.fixture(scope="session")
def custom(kube: Any) -> Any:
    return client.CustomObjectsApi(kube)


def list_jobs(custom: Any, selector: str | None = None) -> list[dict[str, Any]]:
    listed = custom.list_namespaced_custom_object(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, label_selector=selector or ""
    )
    return list(listed["items"])


def get_job(custom: Any, name: str) -> dict[str, Any]:
    job: dict[str, Any] = custom.get_namespaced_custom_object(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name
    )
    return job


def patch_status(custom: Any, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Write status as the controller does (the status subresource, a merge patch)."""
    patched: dict[str, Any] = custom.patch_namespaced_custom_object_status(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name, {"status": status}
    )
    return patched


ItemsOf = Callable[[dict[str, Any]], list[dict[str, str]]]


@pytest.fixture(scope="session")
def items_of(stack: Endpoints) -> ItemsOf:
    """A job's items as the controller reads them: inline (kubectl), or the list its
    itemsRef names, read as the controller and checked against the sha256."""

    def read(job: dict[str, Any]) -> list[dict[str, str]]:
        spec = IngestJob.read(job).spec
        if spec.items is not None:
            return [{"source": i.source, "asset": i.asset} for i in spec.items]
        ref = spec.items_ref
        assert ref is not None

        async def get() -> list[dict[str, str]]:
            connection = await stack.nats_connect(natsauth.CONTROLLER_IDENTITY)
            try:
                found = await records_store.get_items(connection.jetstream(), ref)
            finally:
                await connection.drain()
            return [{"source": i.source, "asset": i.asset} for i in found]

        return asyncio.run(get())

    return read


@pytest.fixture
def stage(s3: Any, stack: Endpoints) -> Callable[..., list[str]]:
    """Put `count` small objects into `collection`'s staging area (IMG_00000.jpg, ...), as
    uploads presigned for it; returns their keys."""

    def put(count: int, collection: str) -> list[str]:
        staged = [
            keys.staging_key(collection, keys.new_ulid(), f"IMG_{i:05d}.jpg") for i in range(count)
        ]

        def one(key: str) -> None:
            s3.put_object(Bucket=stack.bucket, Key=key, Body=b"\xff\xd8 not decoded by the API")

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(one, staged))
        return staged

    return put


def new_collection() -> str:
    return f"gallery-{keys.new_ulid().lower()[-10:]}"


def commit_manifest(
    s3: Any, bucket: str, collection: str, asset: str, version: str | None = None, job: str = "job"
) -> AssetManifest:
    """What a processor leaves behind for one item: the files and the live manifest (of
    `version`; a new version, index 0, unless given)."""
    version = version or keys.version_id(keys.new_ulid(), 0)
    derivatives = tuple(
        Derivative(
            style=style,
            key=keys.derivative_key(collection, asset, version, style, "jpg"),
            width=size,
            height=size,
            bytes=3,
            content_type="image/jpeg",
        )
        for style, size in (("large", 800), ("thumb", 100))
    )
    for derivative in derivatives:
        s3.put_object(Bucket=bucket, Key=derivative.key, Body=b"jpg", ContentType="image/jpeg")
    return commit_original(s3, bucket, collection, asset, version, derivatives, job=job)


def live_collection(s3: Any, bucket: str, *assets: str) -> str:
    """A new collection whose `assets` are live (committed in this order)."""
    collection = new_collection()
    for asset in assets:
        commit_manifest(s3, bucket, collection, asset)
    return collection


def commit_original(
    s3: Any,
    bucket: str,
    collection: str,
    asset: str,
    version: str,
    derivatives: tuple[Derivative, ...],
    *,
    job: str = "job",
    height: int = 1600,
) -> AssetManifest:
    """The original (1600 wide) and the live manifest naming it and `derivatives` (whose
    files the caller puts)."""
    original = keys.original_key(collection, asset, version, keys.safe_name(asset))
    s3.put_object(Bucket=bucket, Key=original, Body=b"jpg", ContentType="image/jpeg")
    manifest = AssetManifest(
        collection=collection,
        asset=asset,
        version=version,
        job=JobRef(namespace=NAMESPACE, name=job, uid="uid"),
        index=int(version.rsplit("-", 1)[1]),
        original=Original(
            key=original,
            filename=asset,
            content_type="image/jpeg",
            bytes=3,
            width=1600,
            height=height,
        ),
        derivatives=derivatives,
        committed_at=datetime.now(UTC),
    )
    s3.put_object(Bucket=bucket, Key=keys.manifest_key(collection, asset), Body=manifest.to_bytes())
    return manifest
