"""Forged work never commits: on the real stack, a client that can publish on the work
subjects (as any pod reaching NATS could before NATS had identities) sends work items
without the controller's signature, with garbage, with another key's, with a signature
made for another body or another subject. The processor must terminate each one unread:
no manifest changes, no key is written, no result is published, and each is counted.

The forged items aim at an asset that is live, with a version that sorts after the live
one (the attack: commit over another tenant's photo and let the janitor take
the real version), so a processor that trusted any of them would visibly commit it.
"""

from __future__ import annotations

import asyncio
import io
import re
import secrets
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext
from PIL import Image

from emulsion_bench.notify import stage_upload
from emulsion_contracts import keys, wire, worksigning
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import ItemResult, JobRef, WorkItem
from emulsion_devstack.processes import ProcessRecord, log_tail, stop, until
from emulsion_devstack.stack import Endpoints, LocalStack

NAMESPACE = "forgery"
REFUSED = "emulsion_processor_work_refused_total"


def jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), colour).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@dataclass(frozen=True)
class Target:
    """A live asset and what a legitimate processor made of it."""

    collection: str
    asset: str
    version: str


@pytest.fixture(scope="module")
def processor(stack: Endpoints, stack_state_dir: Path) -> Iterator[ProcessRecord]:
    record = LocalStack(stack_state_dir, say=lambda line: None).start_service("processor")
    try:
        yield record
    finally:
        stop(record)
        print(log_tail(record.log, lines=60))


def refused(record: ProcessRecord, cause: str) -> float:
    url = f"http://127.0.0.1:{record.env['EMULSION_HTTP_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^{REFUSED}\{{cause="{cause}"\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def work(source: str, collection: str, asset: str, version: str, index: int = 0) -> WorkItem:
    name = f"job-{uuid.uuid4().hex[:10]}"
    return WorkItem(
        job=JobRef(namespace=NAMESPACE, name=name, uid=str(uuid.uuid4())),
        index=index,
        source=source,
        collection=collection,
        asset=asset,
        version=keys.version_id(version, index),
    )


def subject_of(item: WorkItem) -> str:
    return wire.work_subject(item.job.namespace, item.job.name)


def headers_of(item: WorkItem) -> dict[str, str]:
    return {wire.HEADER_MSG_ID: wire.work_msg_id(item.job.uid, item.index)}


async def results_of(js: JetStreamContext, item: WorkItem) -> list[ItemResult]:
    subject = wire.events_subject(item.job.namespace, item.job.name)
    info = await js.stream_info(wire.EVENTS_STREAM, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    found = []
    for sequence in range(count):
        stored = await js.get_msg(wire.EVENTS_STREAM, sequence + 1, subject=subject, next=True)
        parsed = ItemResult.from_bytes(stored.data or b"")
        assert isinstance(parsed, ItemResult)
        found.append(parsed)
    return found


async def work_left(js: JetStreamContext) -> int:
    left = 0
    for durable in wire.WORK_CONSUMERS.values():
        info = await js.consumer_info(wire.WORK_STREAM, durable)
        left += int(info.num_pending) + int(info.num_ack_pending)
    return left


def stage(s3: Any, bucket: str, collection: str, data: bytes) -> str:
    """Put `data` where a presigned form for `collection` would, recording its collection."""
    return stage_upload(s3, bucket, collection, data, "IMG_0001.jpg")


def manifest_version(s3: Any, bucket: str, collection: str, asset: str) -> str | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=keys.manifest_key(collection, asset))["Body"]
    except s3.exceptions.NoSuchKey:
        return None
    return AssetManifest.from_bytes(body.read()).version


@pytest.fixture(scope="module")
def target(stack: Endpoints, s3: Any, processor: ProcessRecord) -> Target:
    """An asset made live by a correctly signed work item: the processor is working."""
    collection = f"tenant-b-{uuid.uuid4().hex[:8]}"
    item = work(
        stage(s3, stack.bucket, collection, jpeg((20, 160, 40))),
        collection,
        "private.jpg",
        keys.new_ulid(),
    )

    async def run() -> ItemResult:
        connection = await stack.nats_connect()
        try:
            js = connection.jetstream()
            body = item.to_bytes()
            headers = worksigning.signed_headers(
                stack.work_signing_key(), subject_of(item), body, headers_of(item)
            )
            await js.publish(subject_of(item), body, headers=headers)
            [result] = await until("the signed item's result", lambda: results_of(js, item), 90)
            return result
        finally:
            await connection.drain()

    result = asyncio.run(run())
    assert (result.outcome, result.committed) == ("succeeded", True), result
    assert manifest_version(s3, stack.bucket, collection, "private.jpg") == item.version
    return Target(collection, "private.jpg", item.version)


def forgeries(
    stack: Endpoints, s3: Any, target: Target
) -> list[tuple[str, WorkItem, bytes, dict[str, str]]]:
    """(cause, the item a processor would act on, the bytes sent, the headers sent) of each
    forgery: every one names the live asset with a version after the live one."""
    key = stack.work_signing_key()
    made = []

    def item() -> WorkItem:
        # A version minted now sorts after the target's: it would win a commit.
        source = stage(s3, stack.bucket, target.collection, jpeg((200, 0, 0)))
        return work(source, target.collection, target.asset, keys.new_ulid())

    unsigned = item()
    made.append(("missing", unsigned, unsigned.to_bytes(), headers_of(unsigned)))

    garbage = item()
    made.append(
        (
            "invalid",
            garbage,
            garbage.to_bytes(),
            {**headers_of(garbage), worksigning.HEADER: "v1=" + "A" * 44},
        )
    )

    other_key = item()
    made.append(
        (
            "invalid",
            other_key,
            other_key.to_bytes(),
            worksigning.signed_headers(
                secrets.token_bytes(32),
                subject_of(other_key),
                other_key.to_bytes(),
                headers_of(other_key),
            ),
        )
    )

    # A body the controller really signed (an innocent item of a throwaway collection),
    # sent with that signature but the attacker's body: the version and target changed.
    innocent = work(
        stage(s3, stack.bucket, "scratch-x", jpeg((0, 0, 200))),
        "scratch-x",
        "x.jpg",
        keys.new_ulid(),
    )
    swapped = item().model_copy(update={"job": innocent.job, "index": innocent.index})
    signature = worksigning.sign(key, subject_of(innocent), innocent.to_bytes())
    made.append(
        (
            "invalid",
            swapped,
            swapped.to_bytes(),
            {**headers_of(swapped), worksigning.HEADER: signature},
        )
    )

    # Signed with the right key, for another job's subject: replayed onto this one.
    elsewhere = item()
    other_subject = wire.work_subject(NAMESPACE, "someone-else")
    made.append(
        (
            "invalid",
            elsewhere,
            elsewhere.to_bytes(),
            worksigning.signed_headers(
                key, other_subject, elsewhere.to_bytes(), headers_of(elsewhere)
            ),
        )
    )
    return made


def test_forged_work_is_terminated_unread_and_never_commits(
    stack: Endpoints, s3: Any, processor: ProcessRecord, target: Target
) -> None:
    forged = forgeries(stack, s3, target)
    before = {cause: refused(processor, cause) for cause in ("missing", "invalid")}
    expected = {
        cause: before[cause] + sum(1 for c, *_ in forged if c == cause)
        for cause in ("missing", "invalid")
    }

    async def run() -> list[list[ItemResult]]:
        connection = await stack.nats_connect()
        try:
            js = connection.jetstream()
            for _, item, body, headers in forged:
                await js.publish(subject_of(item), body, headers=headers)

            async def all_refused() -> bool:
                counted = {cause: refused(processor, cause) for cause in expected}
                return counted == expected and await work_left(js) == 0

            await until("every forged item refused and gone from the stream", all_refused, 90)
            return [await results_of(js, item) for _, item, *_ in forged]
        finally:
            await connection.drain()

    results = asyncio.run(run())
    # No result: a forged "succeeded" or "failed" could have ended a real job's item.
    assert results == [[] for _ in forged]
    # The live version is still the one the signed item made, and nothing of any forged
    # version was written.
    assert manifest_version(s3, stack.bucket, target.collection, target.asset) == target.version
    for _, item, *_ in forged:
        for area in ("originals", "derivatives"):
            prefix = keys.version_prefix(area, item.collection, item.asset, item.version)
            listed = s3.list_objects_v2(Bucket=stack.bucket, Prefix=prefix)
            assert listed.get("KeyCount", 0) == 0, prefix
        # The source was not read, promoted or handed to the janitor: it is still there.
        assert s3.head_object(Bucket=stack.bucket, Key=item.source)
    assert "refused a work message whose signature is" in log_tail(processor.log, lines=400)
