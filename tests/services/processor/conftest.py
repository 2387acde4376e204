"""Fixtures for the processor's tests: the processor as a real process or in-process on the
real stack, work items published as the controller publishes them, and readers for the
events and GC streams.
"""

from __future__ import annotations

import asyncio
import io
import re
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue
from PIL import Image

from emulsion_bench.notify import stage_upload
from emulsion_contracts import keys, wire, worksigning
from emulsion_contracts.messages import (
    GcReason,
    GcRequest,
    ItemResult,
    JobRef,
    StyleSpec,
    WorkItem,
)
from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_devstack.processes import ProcessRecord, log_tail, stop, until
from emulsion_devstack.processes import wait_for as wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_processor.delivery import Delivery
from emulsion_processor.settings import ProcessorSettings
from emulsion_processor.worker import Clients, ItemWorker
from emulsion_runtime import telemetry

T = TypeVar("T")
NAMESPACE = "photos"


def jpeg(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def noise_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((width, height), 80).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def work_item(
    source: str,
    *,
    asset: str = "IMG_0001.jpg",
    collection: str | None = None,
    job_version: str | None = None,
    index: int = 0,
    styles: tuple[StyleSpec, ...] | None = None,
    profile: str = "default",
) -> WorkItem:
    name = f"job-{uuid.uuid4().hex[:10]}"
    return WorkItem(
        job=JobRef(namespace=NAMESPACE, name=name, uid=str(uuid.uuid4())),
        index=index,
        source=source,
        # An upload's key names its collection; the item is for that one unless told.
        collection=collection or keys.staging_collection(source) or f"c-{uuid.uuid4().hex[:8]}",
        asset=asset,
        version=keys.version_id(job_version or keys.new_ulid(), index),
        profile=profile,
        styles=styles,
    )


def stage(
    s3: Any,
    bucket: str,
    data: bytes,
    filename: str = "IMG_0001.jpg",
    collection: str | None = None,
) -> str:
    """Put `data` where a presigned form for `collection` (a fresh one unless given) would,
    with the collection its form records."""
    return stage_upload(s3, bucket, collection or f"c-{uuid.uuid4().hex[:8]}", data, filename)


def later_item(item: WorkItem, source: str) -> WorkItem:
    """The same asset from a job created after `item`'s."""
    newer = work_item(source, asset=item.asset, collection=item.collection)
    assert newer.version > item.version
    return newer


def rendered_keys(item: WorkItem) -> set[str]:
    """The keys a render of `item` (staged as IMG_0001.jpg) writes with the default profile."""
    prefix = f"{item.collection}/{item.asset}/{item.version}"
    return {
        f"originals/{prefix}/IMG_0001.jpg",
        *(f"derivatives/{prefix}/{s.name}.jpg" for s in DEFAULT_PROFILE.styles),
    }


def object_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(entry["Key"] for entry in listed.get("Contents", []))


class Bus:
    """A JetStream connection used as the controller uses it: publish work, read results."""

    def __init__(
        self, connection: Client, js: JetStreamContext, cancelled: KeyValue, signing_key: bytes
    ) -> None:
        self.connection = connection
        self.js = js
        self.cancelled = cancelled
        self.signing_key = signing_key

    async def publish_work(
        self, item: WorkItem, msg_id: str | None = None, lane: wire.Lane = wire.Lane.BULK
    ) -> None:
        """Publish `item` signed with the stack's key, as the controller does."""
        headers = telemetry.inject(
            {wire.HEADER_MSG_ID: msg_id or wire.work_msg_id(item.job.uid, item.index)}
        )
        subject = wire.work_subject(item.job.namespace, item.job.name, lane)
        await self.publish_signed(subject, item.to_bytes(), headers)

    async def publish_signed(
        self, subject: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Publish any bytes as a work message the controller signed (the processors then
        trust it and read it: how odd bodies reach the parsing they test)."""
        await self.js.publish(
            subject,
            body,
            headers=worksigning.signed_headers(self.signing_key, subject, body, headers),
        )

    async def results(self, item: WorkItem) -> list[ItemResult]:
        """Every result stored for `item`'s job, read without disturbing any durable."""
        subject = wire.events_subject(item.job.namespace, item.job.name)
        info = await self.js.stream_info(wire.EVENTS_STREAM, subjects_filter=subject)
        count = (info.state.subjects or {}).get(subject, 0)
        if not count:
            return []
        subscription = await self.js.subscribe(subject, ordered_consumer=True)
        try:
            found = []
            for _ in range(count):
                message = await subscription.next_msg(timeout=5)
                parsed = ItemResult.from_bytes(message.data)
                assert isinstance(parsed, ItemResult)
                found.append(parsed)
            return found
        finally:
            await subscription.unsubscribe()

    async def result(self, item: WorkItem, within: float = 60.0) -> ItemResult:
        found = await until(
            f"a result for {item.job.name}/{item.index}", lambda: self.results(item), within
        )
        return found[0]

    async def gc_request(self, reason: str, msg_id: str) -> GcRequest | None:
        """The last GC request published for `reason`, if it carries `msg_id`."""
        try:
            stored = await self.js.get_last_msg(wire.GC_STREAM, wire.gc_subject(reason))
        except NotFoundError:
            return None
        if (stored.headers or {}).get(wire.HEADER_MSG_ID) != msg_id:
            return None
        parsed = GcRequest.from_bytes(stored.data or b"")
        assert isinstance(parsed, GcRequest)
        return parsed

    async def pending_work(self) -> int:
        """Work not yet acknowledged, in either lane."""
        pending = 0
        for durable in wire.WORK_CONSUMERS.values():
            info = await self.js.consumer_info(wire.WORK_STREAM, durable)
            pending += int(info.num_pending) + int(info.num_ack_pending)
        return pending


@pytest.fixture
def with_bus(stack: Endpoints) -> Callable[[Callable[[Bus], Awaitable[T]]], T]:
    """Run an async test body with a connected Bus."""

    def runner(body: Callable[[Bus], Awaitable[T]]) -> T:
        async def main() -> T:
            connection = await stack.nats_connect()
            try:
                js = connection.jetstream()
                cancelled = await js.key_value(wire.CANCELLED_BUCKET)
                return await body(Bus(connection, js, cancelled, stack.work_signing_key()))
            finally:
                await connection.drain()

        return asyncio.run(main())

    return runner


@pytest.fixture(scope="session")
def local_stack(stack: Endpoints, stack_state_dir: Path) -> LocalStack:
    # The same state directory as the session's `stack`, so `start_service` joins it and
    # the session's `down` stops what these tests start.
    return LocalStack(stack_state_dir, say=lambda line: None)


@contextmanager
def running_processor(local_stack: LocalStack, **environment: str) -> Iterator[ProcessRecord]:
    record = local_stack.start_service("processor", environment)
    try:
        yield record
    finally:
        stop(record)
        # Captured by pytest and shown only when a test fails: the processor's own story.
        print(f"--- processor {record.pid} log (shared by every processor of the stack):")
        print(log_tail(record.log, lines=80))


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            total += float(match.group(2))
    return total


def settings_for(stack: Endpoints, scratch: Path, **overrides: Any) -> ProcessorSettings:
    values: dict[str, Any] = {
        **stack.nats_fields("processor"),
        "bucket": stack.bucket,
        "s3_endpoint_url": stack.s3_endpoint_url,
        "scratch_dir": scratch,
        "gc_grace_seconds": 60.0,
        "work_signing_key_file": stack.work_signing_key_file,
        **overrides,
    }
    return ProcessorSettings(**values)


@contextmanager
def in_process_worker(
    stack: Endpoints, s3: Any, bus: Bus, scratch: Path, **overrides: Any
) -> Iterator[ItemWorker]:
    """An ItemWorker on the real stack, driven by the test instead of the pull loop."""
    scratch.mkdir(parents=True, exist_ok=True)
    settings = settings_for(stack, scratch, **overrides)
    cpu = ThreadPoolExecutor(max_workers=2)
    io_pool = ThreadPoolExecutor(max_workers=8)
    try:
        yield ItemWorker(
            settings,
            Clients(s3=s3, js=bus.js, cancelled=bus.cancelled),
            {DEFAULT_PROFILE.name: DEFAULT_PROFILE},
            cpu,
            io_pool,
            scratch,
        )
    finally:
        cpu.shutdown()
        io_pool.shutdown()


def first_delivery(
    with_bus: Any, stack: Endpoints, s3: Any, scratch: Path, item: WorkItem, **overrides: Any
) -> Any:
    """`item`'s first delivery through an in-process worker (settings `overrides`) on the
    S3 client `s3`: its result, or the worker's give-back."""

    async def body(bus: Bus) -> Any:
        with in_process_worker(stack, s3, bus, scratch, **overrides) as worker:
            return await Delivery(worker).result_or_give_back(item, 1)

    return with_bus(body)


def first_delivery_and_gc(
    with_bus: Any, stack: Endpoints, s3: Any, scratch: Path, item: WorkItem, kind: GcReason
) -> tuple[Any, GcRequest | None]:
    """`item`'s first delivery as `first_delivery` makes it, and the GC request of `kind`
    its version published (None: none)."""

    async def body(bus: Bus) -> tuple[Any, GcRequest | None]:
        with in_process_worker(stack, s3, bus, scratch) as worker:
            result = await Delivery(worker).result_or_give_back(item, 1)
        return result, await bus.gc_request(kind, wire.gc_msg_id(kind, item.version))

    delivered: tuple[Any, GcRequest | None] = with_bus(body)
    return delivered
