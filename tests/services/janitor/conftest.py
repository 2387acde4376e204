"""Fixtures for the janitor's tests: a bucket of each test's own, objects and manifests laid
out as the processor writes them, GC requests published as producers publish them, and
the janitor's parts running in this process against the real MinIO and NATS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError
from nats.aio.client import Client
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from emulsion_contracts import keys, wire
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import Derivative, GcRequest, JobRef
from emulsion_devstack.processes import until as until
from emulsion_devstack.processes import wait_for as wait_for
from emulsion_devstack.processes import wait_for_async as wait_for_async
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.consumer import GcConsumer
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.sweep import Sweeper
from emulsion_runtime import storage, telemetry

STYLES = ("large", "medium", "thumb", "tiny")
BODY = b"\xff\xd8" + b"x" * 98  # 100 bytes: enough to tell freed bytes apart from none


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def refusals(guard: str) -> float:
    return metric("emulsion_janitor_refusals_total", guard=guard)


def version_id(when: float | None = None, index: int = 0) -> str:
    return keys.version_id(keys.new_ulid(when), index)


@dataclass(frozen=True)
class Version:
    collection: str
    asset: str
    version: str
    original: str
    derivatives: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.original, *self.derivatives)


@dataclass
class Layout:
    """Objects in one bucket, written through the key layout as the processor writes them."""

    s3: Any
    bucket: str

    def put(self, key: str, body: bytes = BODY) -> str:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return key

    def put_many(self, keys_to_put: Sequence[str], workers: int = 16) -> None:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(self.put, keys_to_put))

    def version(
        self, collection: str, asset: str, version: str | None = None, *, store: bool = True
    ) -> Version:
        version = version or version_id()
        made = Version(
            collection,
            asset,
            version,
            keys.original_key(collection, asset, version, keys.safe_name(asset)),
            tuple(keys.derivative_key(collection, asset, version, s, "jpg") for s in STYLES),
        )
        if store:
            self.put_many(made.keys)
        return made

    def commit(self, version: Version) -> AssetManifest:
        manifest = AssetManifest(
            collection=version.collection,
            asset=version.asset,
            version=version.version,
            job=JobRef(namespace="default", name="job", uid=str(uuid.uuid4())),
            index=0,
            original=Original(
                key=version.original,
                filename=version.asset,
                content_type="image/jpeg",
                bytes=len(BODY),
                width=10,
                height=10,
            ),
            derivatives=tuple(
                Derivative(
                    style=key.rsplit("/", 1)[1].split(".")[0],
                    key=key,
                    width=5,
                    height=5,
                    bytes=len(BODY),
                    content_type="image/jpeg",
                )
                for key in version.derivatives
            ),
            committed_at=datetime.now(UTC),
        )
        self.put(keys.manifest_key(version.collection, version.asset), manifest.to_bytes())
        return manifest

    def tombstone(self, collection: str, asset: str) -> AssetManifest:
        """Replace the manifest by a tombstone, as the API does when an asset is deleted."""
        tombstone = AssetManifest.tombstone(collection, asset, datetime.now(UTC))
        self.put(keys.manifest_key(collection, asset), tombstone.to_bytes())
        return tombstone

    def forget(self, collection: str, asset: str) -> None:
        """Delete the manifest, as the API does when an asset is deleted."""
        self.s3.delete_object(Bucket=self.bucket, Key=keys.manifest_key(collection, asset))

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if storage.is_missing(error):
                return False
            raise
        return True

    def present(self, keys_to_check: Sequence[str]) -> set[str]:
        return {key for key in keys_to_check if self.exists(key)}

    def count(self, prefix: str = "") -> int:
        total = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            total += len(page.get("Contents", ()))
        return total


def make_bucket(s3: Any) -> str:
    name = f"janitor-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def bucket(s3: Any) -> str:
    """A bucket of this test's own: sweeps see the whole bucket, and no other test's keys."""
    return make_bucket(s3)


@pytest.fixture
def layout(s3: Any, bucket: str) -> Layout:
    return Layout(s3, bucket)


@pytest.fixture
def collection() -> str:
    return f"gallery-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings_for(stack: Endpoints, bucket: str) -> Callable[..., JanitorSettings]:
    """Janitor settings for this test's bucket; grace 0 unless the test is about grace."""

    def make(**overrides: Any) -> JanitorSettings:
        values: dict[str, Any] = {
            **stack.nats_fields("janitor"),
            "bucket": bucket,
            "s3_endpoint_url": stack.s3_endpoint_url,
            "gc_grace_seconds": 0.0,
            "upload_ttl": 0.0,
            "orphan_age": 0.0,
            **overrides,
        }
        return JanitorSettings(**values)

    return make


@dataclass
class Bus:
    """The stack's JetStream as producers (and the controller's leases) use it."""

    js: JetStreamContext
    connection: Client

    async def publish(
        self,
        reason: str,
        keys_to_delete: Sequence[str],
        *,
        not_before: datetime | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        request = GcRequest.model_validate(
            {
                "reason": reason,
                "keys": list(keys_to_delete),
                "not_before": not_before or datetime.now(UTC) - timedelta(seconds=1),
            }
        )
        await self.publish_raw(wire.gc_subject(reason), request.to_bytes(), headers)

    async def publish_raw(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await self.js.publish(subject, payload, headers=telemetry.inject(headers))

    async def lease(self, upload_id: str, job_uid: str = "job-uid") -> None:
        kv = await self.js.key_value(wire.STAGING_LEASES_BUCKET)
        await kv.put(wire.staging_lease_key(upload_id, job_uid), job_uid.encode())

    async def release(self, upload_id: str, job_uid: str = "job-uid") -> None:
        kv = await self.js.key_value(wire.STAGING_LEASES_BUCKET)
        await kv.delete(wire.staging_lease_key(upload_id, job_uid))

    async def gc_backlog(self) -> tuple[int, int]:
        """GC messages not yet delivered, and delivered but not yet acknowledged."""
        info = await self.js.consumer_info(wire.GC_STREAM, wire.JANITOR)
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    async def settled(self) -> bool:
        """Every GC message acknowledged (or terminated): none waits or will come again."""
        return await self.gc_backlog() == (0, 0)


@asynccontextmanager
async def connected(stack: Endpoints) -> AsyncIterator[Bus]:
    connection = await stack.nats_connect()
    try:
        yield Bus(connection.jetstream(), connection)
    finally:
        await connection.drain()


@dataclass
class Parts:
    """The janitor's consumer and sweeper, wired as the service wires them."""

    consumer: GcConsumer
    sweeper: Sweeper


@asynccontextmanager
async def janitor(stack: Endpoints, s3: Any, settings: JanitorSettings) -> AsyncIterator[Parts]:
    """The GC consumer running in the background (as in the service) for the block."""
    async with connected(stack) as bus:
        leases = await KvLeases.bind(bus.js)
        parts = Parts(
            GcConsumer(bus.js, s3, Deleter(s3, leases, settings, "gc")),
            Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings),
        )
        stopping = asyncio.Event()
        task = asyncio.create_task(parts.consumer.run(stopping))
        try:
            await wait_for_async("the consumer to bind", lambda: parts.consumer.bound)
            yield parts
        finally:
            stopping.set()
            await task


async def sweep_once(stack: Endpoints, s3: Any, settings: JanitorSettings) -> Any:
    """One sweep, as `emulsion-janitor --sweep-once` runs it (no consumer running)."""
    async with connected(stack) as bus:
        leases = await KvLeases.bind(bus.js)
        return await Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings).sweep()


@pytest.fixture
def empty_gc_queue(stack: Endpoints, run: Any) -> None:
    """The GC stream is shared by the session's tests; each fast-path test starts empty."""

    async def purge() -> None:
        async with connected(stack) as bus:
            await bus.js.purge_stream(wire.GC_STREAM)

    run(purge())


@pytest.fixture(scope="session")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
