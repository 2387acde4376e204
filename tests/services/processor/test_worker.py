"""One item at a time through the real worker code, on the real NATS and MinIO.

The pull loop is left out so each test can drive an item, look at storage between
steps, and inject the interleavings (a concurrent commit, a cancellation, an outage)
that the commit protocol exists for.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from PIL import Image

from emulsion_contracts import keys, wire
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import ItemResult, StyleSpec, WorkItem
from emulsion_contracts.reasons import FailureReason
from emulsion_devstack.processes import until
from emulsion_devstack.stack import Endpoints
from emulsion_processor import imaging, outcomes, store
from emulsion_processor.cancelled import CancelledJobs
from emulsion_processor.delivery import WORK_CONSUMER, Delivery, GiveBack
from emulsion_processor.errors import ItemRejected
from emulsion_runtime import storage
from tests.proxies import OneOperation

from .conftest import (
    Bus,
    first_delivery,
    in_process_worker,
    jpeg,
    later_item,
    object_keys,
    rendered_keys,
    stage,
    work_item,
)


def manifest_of(s3: Any, bucket: str, item: WorkItem) -> AssetManifest:
    body = s3.get_object(Bucket=bucket, Key=keys.manifest_key(item.collection, item.asset))["Body"]
    return AssetManifest.from_bytes(body.read())


class Interleaving(OneOperation):
    """Wraps the S3 client to run `before` once, just ahead of the first matching call."""

    def __init__(self, s3: Any, operation: str, key_prefix: str, before: Any) -> None:
        super().__init__(s3, operation)
        self._prefix = key_prefix
        self._before = before
        self.fired = False

    def intercept(self, real: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        if not self.fired and str(arguments.get("Key", "")).startswith(self._prefix):
            self.fired = True
            self._before()
        return real(**arguments)


class CallLog:
    """Wraps the S3 client to record every call as (operation, key)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)
        if not callable(real) or name.startswith("_"):
            return real

        def call(*positional: Any, **arguments: Any) -> Any:
            self.calls.append((name, str(arguments.get("Key", ""))))
            return real(*positional, **arguments)

        return call


def test_a_new_item_reads_its_manifest_once_and_commits_on_that_read(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    # The ETag of the read that decided to do the work is the commit's condition: a
    # second GET of the same manifest before the PUT is a storage round trip for nothing.
    item = work_item(stage(s3, stack.bucket, jpeg(600, 400)))
    manifest_key = keys.manifest_key(item.collection, item.asset)
    calls = CallLog(s3)

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, calls, bus, tmp_path) as worker:
            return await worker.process(item, 1)

    result = with_bus(body)
    assert result.committed
    on_manifest = [operation for operation, key in calls.calls if key == manifest_key]
    assert on_manifest == ["get_object", "put_object"]
    assert manifest_of(s3, stack.bucket, item).version == item.version


def test_an_item_is_stored_committed_and_its_upload_sent_to_gc(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    data = jpeg(1200, 900)
    source = stage(s3, stack.bucket, data)
    item = work_item(source)

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            result = await worker.process(item, 1)
        promoted = await bus.gc_request("promoted", wire.gc_msg_id("promoted", item.version))
        assert promoted is not None
        assert promoted.keys == (source,)
        assert promoted.collection == item.collection
        return result

    result = with_bus(body)
    assert (result.outcome, result.committed, result.width, result.height) == (
        "succeeded",
        True,
        1200,
        900,
    )
    original = keys.original_key(item.collection, item.asset, item.version, "IMG_0001.jpg")
    assert result.original == original
    assert s3.get_object(Bucket=stack.bucket, Key=original)["Body"].read() == data
    sizes = {d.style: (d.width, d.height) for d in result.outputs}
    assert sizes == {
        "large": (800, 600),
        "medium": (300, 225),
        "thumb": (100, 100),
        "tiny": (50, 50),
        "really_tiny": (25, 25),
    }
    for derivative in result.outputs:
        assert derivative.key == keys.derivative_key(
            item.collection, item.asset, item.version, derivative.style, "jpg"
        )
        stored = s3.get_object(Bucket=stack.bucket, Key=derivative.key)
        assert stored["ContentType"] == "image/jpeg"
        assert stored["ContentLength"] == derivative.bytes
        assert Image.open(stored["Body"]).size == (derivative.width, derivative.height)
    manifest = manifest_of(s3, stack.bucket, item)
    assert manifest.version == item.version
    assert manifest.live_keys() == {original, *(d.key for d in result.outputs)}
    assert s3.head_object(Bucket=stack.bucket, Key=source)  # deleting is the janitor's
    assert list(tmp_path.iterdir()) == []  # the item's temp files are gone


def test_a_later_version_supersedes_and_sends_the_previous_keys_to_gc(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    first = work_item(stage(s3, stack.bucket, jpeg(1000, 1000)))
    second = later_item(first, stage(s3, stack.bucket, jpeg(600, 400), collection=first.collection))

    async def body(bus: Bus) -> None:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            await worker.process(first, 1)
            old = manifest_of(s3, stack.bucket, first)
            result = await worker.process(second, 1)
        assert result.committed
        new = manifest_of(s3, stack.bucket, second)
        superseded = await bus.gc_request(
            "superseded", wire.gc_msg_id("superseded", second.version)
        )
        assert superseded is not None
        # The old version's files and its capture-order index entry; the new one has its own.
        assert set(superseded.keys) == old.stored_keys()
        assert old.taken_key() in superseded.keys
        new_entry = new.taken_key()
        assert new_entry is not None and new_entry not in superseded.keys
        assert s3.head_object(Bucket=stack.bucket, Key=new_entry)["ContentLength"] == 0
        assert superseded.reason == "superseded"

    with_bus(body)
    assert manifest_of(s3, stack.bucket, first).version == second.version


def test_a_redelivered_item_is_answered_from_the_manifest_without_rewriting(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(900, 600)))
    prefix = f"derivatives/{item.collection}/"

    async def body(bus: Bus) -> tuple[ItemResult, ItemResult]:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            first = await worker.process(item, 1)
            before = {
                k: s3.head_object(Bucket=stack.bucket, Key=k)["ETag"]
                for k in object_keys(s3, stack.bucket, prefix)
            }
            manifest_etag = s3.head_object(
                Bucket=stack.bucket, Key=keys.manifest_key(item.collection, item.asset)
            )["ETag"]
            watcher = Interleaving(s3, "put_object", "", lambda: None)
            worker.clients = type(worker.clients)(s3=watcher, js=bus.js, cancelled=bus.cancelled)
            second = await worker.process(item, 2)
            assert not watcher.fired  # nothing was written the second time
            after = {
                k: s3.head_object(Bucket=stack.bucket, Key=k)["ETag"]
                for k in object_keys(s3, stack.bucket, prefix)
            }
            assert after == before
            assert (
                s3.head_object(
                    Bucket=stack.bucket, Key=keys.manifest_key(item.collection, item.asset)
                )["ETag"]
                == manifest_etag
            )
            return first, second

    first, second = with_bus(body)
    assert second.committed and second.outputs == first.outputs
    assert second.attempts == 2


def test_an_older_job_loses_to_a_newer_one_that_already_committed(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    older = work_item(stage(s3, stack.bucket, jpeg(800, 800)))
    newer = later_item(older, stage(s3, stack.bucket, jpeg(700, 700), collection=older.collection))

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            await worker.process(newer, 1)
            result = await worker.process(older, 1)
        # Whatever an earlier, crashed delivery of the older item may have written.
        stale = await bus.gc_request("stale", wire.gc_msg_id("stale", older.version))
        assert stale is not None
        assert set(stale.keys) == rendered_keys(older)
        promoted = await bus.gc_request("promoted", wire.gc_msg_id("promoted", older.version))
        assert promoted is not None and promoted.keys == (older.source,)
        return result

    result = with_bus(body)
    assert (result.outcome, result.committed) == ("succeeded", False)
    assert newer.version in (result.message or "")
    assert manifest_of(s3, stack.bucket, older).version == newer.version
    assert (
        object_keys(
            s3, stack.bucket, f"derivatives/{older.collection}/{older.asset}/{older.version}/"
        )
        == []
    )


def test_a_commit_that_loses_the_race_sends_its_own_keys_to_gc(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    older = work_item(stage(s3, stack.bucket, jpeg(800, 800)))
    newer = later_item(older, stage(s3, stack.bucket, jpeg(700, 700), collection=older.collection))
    manifest_key = keys.manifest_key(older.collection, older.asset)

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, s3, bus, tmp_path / "newer") as newer_worker:
            loop = asyncio.get_running_loop()

            def newer_commits_first() -> None:
                asyncio.run_coroutine_threadsafe(newer_worker.process(newer, 1), loop).result()

            # The newer job commits between the older item's manifest check and its commit.
            racing = Interleaving(
                s3, "put_object", f"derivatives/{older.collection}/", newer_commits_first
            )
            with in_process_worker(stack, racing, bus, tmp_path / "older") as older_worker:
                result = await older_worker.process(older, 1)
            assert racing.fired
        stale = await bus.gc_request("stale", wire.gc_msg_id("stale", older.version))
        assert stale is not None
        own = set(
            object_keys(
                s3, stack.bucket, f"derivatives/{older.collection}/{older.asset}/{older.version}/"
            )
        )
        own |= set(
            object_keys(
                s3, stack.bucket, f"originals/{older.collection}/{older.asset}/{older.version}/"
            )
        )
        assert len(own) == 6
        # And its capture-order index entry, written before the commit it lost.
        entries = object_keys(s3, stack.bucket, keys.taken_prefix(older.collection))
        own |= {key for key in entries if key.endswith(f"/{older.version}")}
        assert len(own) == 7
        assert set(stale.keys) == own
        return result

    result = with_bus(body)
    assert (result.outcome, result.committed) == ("succeeded", False)
    current = store.read_manifest(s3, stack.bucket, manifest_key)
    assert current is not None and current.manifest is not None
    assert current.manifest.version == newer.version


def manifest_for(item: WorkItem, job: str, index: int) -> AssetManifest:
    """The manifest an item of job `job` at `index` commits for `item`'s asset."""
    version = keys.version_id(job, index)
    return AssetManifest(
        collection=item.collection,
        asset=item.asset,
        version=version,
        job=item.job,
        index=index,
        original={  # type: ignore[arg-type]
            "key": keys.original_key(item.collection, item.asset, version, "a.jpg"),
            "filename": "a.jpg",
            "content_type": "image/jpeg",
            "bytes": 1,
            "width": 1,
            "height": 1,
        },
        derivatives=(),
        committed_at="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
    )


def test_conditional_commit_decides_by_version_and_retries_a_lost_race(
    stack: Endpoints, s3: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(10, 10)))
    key = keys.manifest_key(item.collection, item.asset)
    job = keys.new_ulid()

    def manifest(index: int) -> AssetManifest:
        return manifest_for(item, job, index)

    first = store.commit_manifest(s3, stack.bucket, key, manifest(1))
    assert (first.outcome, first.other) == (store.Outcome.COMMITTED, None)
    third = store.commit_manifest(s3, stack.bucket, key, manifest(3))
    assert third.outcome is store.Outcome.COMMITTED
    assert third.other is not None and third.other.version == manifest(1).version
    assert store.commit_manifest(s3, stack.bucket, key, manifest(2)).outcome is store.Outcome.STALE
    assert (
        store.commit_manifest(s3, stack.bucket, key, manifest(3)).outcome is store.Outcome.ALREADY
    )

    # Another writer slips in between our read and our conditional write: MinIO refuses
    # the write (412), the commit re-reads, and the later version wins.
    def slip_in() -> None:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=manifest(5).to_bytes())

    racing = Interleaving(s3, "put_object", key, slip_in)
    lost = store.commit_manifest(racing, stack.bucket, key, manifest(4))
    assert racing.fired
    assert lost.outcome is store.Outcome.STALE
    assert lost.other is not None and lost.other.version == manifest(5).version


@pytest.mark.parametrize(
    ("created_meanwhile", "outcome", "live"),
    [(2, store.Outcome.STALE, 2), (0, store.Outcome.COMMITTED, 1)],
    ids=["by-a-later-version", "by-an-earlier-version"],
)
def test_a_new_asset_commit_never_overwrites_a_manifest_created_meanwhile_unread(
    stack: Endpoints, s3: Any, created_meanwhile: int, outcome: store.Outcome, live: int
) -> None:
    # The commit read no manifest, so it writes with If-None-Match; a manifest created
    # between that read and the write makes the write fail, and the commit decides again
    # on what is there now instead of overwriting it.
    item = work_item(stage(s3, stack.bucket, jpeg(10, 10)))
    key = keys.manifest_key(item.collection, item.asset)
    job = keys.new_ulid()
    meanwhile = manifest_for(item, job, created_meanwhile)

    def create_meanwhile() -> None:
        s3.put_object(Bucket=stack.bucket, Key=key, Body=meanwhile.to_bytes())

    racing = Interleaving(s3, "put_object", key, create_meanwhile)
    committed = store.commit_manifest(racing, stack.bucket, key, manifest_for(item, job, 1))

    assert racing.fired
    assert committed.outcome is outcome
    assert committed.other is not None and committed.other.version == meanwhile.version
    current = store.read_manifest(s3, stack.bucket, key)
    assert current is not None and current.manifest is not None
    assert current.manifest.version == keys.version_id(job, live)


def test_a_cancelled_job_commits_nothing(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    before = work_item(stage(s3, stack.bucket, jpeg(500, 500)))
    during = work_item(stage(s3, stack.bucket, jpeg(500, 500)))

    async def body(bus: Bus) -> None:
        await bus.cancelled.put(before.job.uid, b"deleted")
        loop = asyncio.get_running_loop()

        def cancel_during_upload() -> None:
            asyncio.run_coroutine_threadsafe(
                bus.cancelled.put(during.job.uid, b"deleted"), loop
            ).result()

        racing = Interleaving(s3, "put_object", "derivatives/", cancel_during_upload)
        with in_process_worker(stack, racing, bus, tmp_path) as worker:
            for item in (before, during):
                with pytest.raises(ItemRejected) as rejected:
                    await worker.process(item, 1)
                assert rejected.value.reason is FailureReason.CANCELLED
        stale = await bus.gc_request("stale", wire.gc_msg_id("stale", during.version))
        # Its five renderings, its original and its capture-order index entry.
        assert stale is not None and len(stale.keys) == 7
        assert any(key.startswith(keys.TAKEN) for key in stale.keys)

    with_bus(body)
    for item in (before, during):
        assert (
            store.read_manifest(s3, stack.bucket, keys.manifest_key(item.collection, item.asset))
            is None
        )
    assert object_keys(s3, stack.bucket, f"originals/{before.collection}/") == []
    assert list(tmp_path.iterdir()) == []


class CountingBucket:
    """Wraps a KeyValue bucket to count the reads made through it."""

    def __init__(self, bucket: Any) -> None:
        self._bucket = bucket
        self.gets = 0

    async def get(self, key: str) -> Any:
        self.gets += 1
        return await self._bucket.get(key)


def test_the_watch_answers_the_check_before_the_work_and_the_commit_check_reads(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    # One read of the cancelled bucket per item, not two: the watch answers the check
    # before the work (no source is even fetched for a cancelled job's item), and the
    # check that guards the commit still reads the bucket itself.
    live = work_item(stage(s3, stack.bucket, jpeg(500, 500)))
    gone = work_item(stage(s3, stack.bucket, jpeg(500, 500)))
    calls = CallLog(s3)

    async def body(bus: Bus) -> None:
        watch = CancelledJobs(bus.cancelled)
        watch.start()
        try:
            await asyncio.wait_for(watch.caught_up.wait(), 30)
            counted = CountingBucket(bus.cancelled)
            with in_process_worker(stack, calls, bus, tmp_path) as worker:
                worker.clients = type(worker.clients)(s3=calls, js=bus.js, cancelled=counted)  # type: ignore[arg-type]
                worker.cancelled_jobs = watch
                result = await worker.process(live, 1)
                assert result.committed
                assert counted.gets == 1
                await bus.cancelled.put(gone.job.uid, b"deleted")

                async def seen() -> bool:
                    return gone.job.uid in watch

                await until("the watch to see the cancellation", seen, 30)
                with pytest.raises(ItemRejected) as rejected:
                    await worker.process(gone, 1)
                assert rejected.value.reason is FailureReason.CANCELLED
                assert counted.gets == 1  # the watch said so: no read
        finally:
            await watch.stop()

    with_bus(body)
    assert ("get_object", gone.source) not in calls.calls
    assert object_keys(s3, stack.bucket, f"originals/{gone.collection}/") == []


def test_a_missing_source_fails_the_item_permanently(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(keys.staging_key("c1", keys.new_ulid(), "never-uploaded.jpg"))

    result = first_delivery(with_bus, stack, s3, tmp_path, item)
    assert isinstance(result, ItemResult)
    assert (result.outcome, result.reason) == ("failed", "SourceMissing")


def test_bad_bytes_fail_with_their_reason_and_leave_no_temp_files(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    text = work_item(stage(s3, stack.bucket, b"just text\n" * 10, "notes.jpg"))
    empty = work_item(stage(s3, stack.bucket, b"", "empty.jpg"))
    unknown = work_item(stage(s3, stack.bucket, jpeg(10, 10)), profile="no-such-profile")
    twice = (StyleSpec(name="a", width=1, height=1), StyleSpec(name="a", width=2, height=2))
    repeated = work_item(stage(s3, stack.bucket, jpeg(10, 10)), styles=twice)

    async def body(bus: Bus) -> list[Any]:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            delivery = Delivery(worker)
            return [
                await delivery.result_or_give_back(i, 1) for i in (text, empty, unknown, repeated)
            ]

    reasons = [r.reason for r in with_bus(body)]
    assert reasons == ["NotAnImage", "EmptyFile", "UnknownProfile", "InvalidStyles"]
    assert list(tmp_path.iterdir()) == []


class Refusing(OneOperation):
    """Wraps the S3 client so its first `failures` calls of `operation` are refused."""

    def __init__(self, s3: Any, operation: str, failures: int, endpoint: str) -> None:
        super().__init__(s3, operation)
        self._endpoint = endpoint
        self.left = failures

    def intercept(self, real: Callable[..., Any], arguments: dict[str, Any]) -> Any:
        if self.left > 0:
            self.left -= 1
            raise EndpointConnectionError(endpoint_url=self._endpoint)
        return real(**arguments)


def test_storage_trouble_is_waited_out_in_process_without_spending_a_delivery(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(100, 100)))
    refusing = Refusing(s3, "get_object", 6, stack.s3_endpoint_url)

    result = first_delivery(
        with_bus,
        stack,
        refusing,
        tmp_path,
        item,
        retry_delay_seconds=0.01,
        retry_max_delay_seconds=0.05,
    )
    assert refusing.left == 0
    assert isinstance(result, ItemResult)  # not a GiveBack: no nak, no delivery spent
    assert (result.outcome, result.committed, result.attempts) == ("succeeded", True, 1)


def test_storage_trouble_beyond_the_outage_budget_fails_the_item(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(100, 100)))
    refusing = Refusing(s3, "get_object", 10**6, stack.s3_endpoint_url)

    result = first_delivery(
        with_bus,
        stack,
        refusing,
        tmp_path,
        item,
        retry_delay_seconds=0.01,
        retry_max_delay_seconds=0.05,
        outage_budget_seconds=0.5,
    )
    assert isinstance(result, ItemResult)
    assert (result.outcome, result.reason, result.attempts) == ("failed", "RetriesExhausted", 1)
    assert "EndpointConnectionError" in (result.message or "")
    assert "outage budget" in (result.message or "")


def test_short_scratch_space_is_waited_for_until_the_budget_ends(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(100, 100)))

    result = first_delivery(
        with_bus,
        stack,
        s3,
        tmp_path,
        item,
        min_free_scratch_bytes=10**18,
        retry_delay_seconds=0.01,
        outage_budget_seconds=0.2,
    )
    assert isinstance(result, ItemResult)
    assert result.reason == "RetriesExhausted" and "scratch space short" in (result.message or "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("module", "name", "error", "told"),
    [
        (imaging, "plan", ValueError("box offset can't be negative"), "box offset can't be"),
        (outcomes, "build_manifest", KeyError("a defect"), "KeyError"),
    ],
    ids=["a deterministic render error", "an unexpected error outside rendering"],
)
def test_an_error_waiting_cannot_cure_fails_the_item_at_once(
    stack: Endpoints,
    s3: Any,
    with_bus: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    name: str,
    error: Exception,
    told: str,
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(300, 200)))

    def failing(*arguments: object) -> None:
        raise error

    monkeypatch.setattr(module, name, failing)

    result = first_delivery(with_bus, stack, s3, tmp_path, item)
    assert isinstance(result, ItemResult)
    assert (result.outcome, result.reason, result.attempts) == ("failed", "RenderFailed", 1)
    assert told in (result.message or "")


def test_the_stored_original_has_the_detected_content_type_not_the_clients(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), (1, 2, 3)).save(buffer, "PNG")
    key = keys.staging_key("c1", keys.new_ulid(), "drawing.svg")
    s3.put_object(
        Bucket=stack.bucket,
        Key=key,
        Body=buffer.getvalue(),
        ContentType="image/svg+xml",
        Metadata={storage.UPLOAD_COLLECTION_METADATA: "c1"},
    )
    item = work_item(key)

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            return await worker.process(item, 1)

    result = with_bus(body)
    assert result.original is not None
    stored = s3.head_object(Bucket=stack.bucket, Key=result.original)
    assert stored["ContentType"] == "image/png"
    assert manifest_of(s3, stack.bucket, item).original.content_type == "image/png"


def test_a_dead_render_process_is_replaced_and_the_item_retried(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(400, 300)))
    broken = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    with pytest.raises(BrokenProcessPool):
        broken.submit(os._exit, 1).result()  # the render process dies, as under the OOM killer
    healthy = ThreadPoolExecutor(1)

    async def body(bus: Bus) -> tuple[Any, Any]:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            worker.cpu, worker.renew_cpu = broken, lambda: healthy
            first = await Delivery(worker).result_or_give_back(item, 1)
            assert worker.cpu is not broken  # renewed
            return first, await Delivery(worker).result_or_give_back(item, 2)

    try:
        first, second = with_bus(body)
    finally:
        healthy.shutdown()
    assert isinstance(first, GiveBack)
    assert isinstance(second, ItemResult)
    assert (second.outcome, second.committed) == ("succeeded", True)


class DeadRenderer(Executor):
    """A render pool whose process has died, as under the OOM killer, on every item."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(BrokenProcessPool("a render process died"))
        return future


def test_a_poison_item_that_kills_its_renderer_every_time_fails_after_its_deliveries(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    item = work_item(stage(s3, stack.bucket, jpeg(200, 100)))

    # The work durable's backoff spaces its redeliveries 30 s to 5 min apart (a nak's delay
    # does not shorten them); the same limit on a stream of the test's own, without the
    # backoff, delivers the same way at once.
    stream, subject = f"POISON_{uuid.uuid4().hex}", f"poison-test.{uuid.uuid4().hex}"

    async def body(bus: Bus) -> tuple[list[int], ItemResult]:
        await bus.js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        await bus.js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name="poison",
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=WORK_CONSUMER.max_deliver,
            ),
        )
        await bus.publish_signed(subject, item.to_bytes())
        subscription = await bus.js.pull_subscribe_bind(durable="poison", stream=stream)
        deliveries = []
        with in_process_worker(stack, s3, bus, tmp_path, retry_delay_seconds=0.01) as worker:
            worker.cpu, worker.renew_cpu = DeadRenderer(), DeadRenderer
            while not await bus.results(item):
                try:
                    fetched = await subscription.fetch(1, timeout=2)
                except TimeoutError:
                    continue
                for message in fetched:
                    deliveries.append(message.metadata.num_delivered)
                    await Delivery(worker).handle(message)
        await subscription.unsubscribe()
        await bus.js.delete_stream(stream)
        return deliveries, await bus.result(item)

    deliveries, result = with_bus(body)
    assert deliveries == list(range(1, WORK_CONSUMER.max_deliver + 1))
    assert (result.outcome, result.reason, result.attempts) == (
        "failed",
        "RetriesExhausted",
        WORK_CONSUMER.max_deliver,
    )
    assert "render worker died" in (result.message or "")
