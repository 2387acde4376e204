"""The processor promotes only an upload of the item's collection, once, and
only the bytes it checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from emulsion_contracts import keys, wire
from emulsion_contracts.messages import ItemResult
from emulsion_devstack.stack import Endpoints
from emulsion_processor import uploads
from emulsion_processor.reasons import ItemRejected
from emulsion_runtime import storage

from .conftest import Bus, in_process_worker, jpeg, object_keys, stage, work_item
from .test_worker import CallLog, Interleaving


def _result(with_bus: Any, stack: Endpoints, s3: Any, tmp_path: Path, item: Any) -> ItemResult:
    async def body(bus: Bus) -> Any:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            return await worker.result_or_give_back(item, 1)

    result = with_bus(body)
    assert isinstance(result, ItemResult)
    return result


def test_an_upload_of_another_collection_is_refused_unread_and_never_sent_to_gc(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    """A work item (a job made with kubectl, say) naming tenant B's upload for tenant A."""
    theirs = stage(s3, stack.bucket, jpeg(300, 200), collection="tenant-b")
    # A key of the old layout (no collection) is no work item at all: the CRD refuses it,
    # and the contracts fail a job stored before the upgrade as InvalidSpec.
    with pytest.raises(ValidationError):
        work_item(f"staging/{keys.new_ulid()}/IMG_0001.jpg", collection="tenant-a")
    calls = CallLog(s3)
    item = work_item(theirs, collection="tenant-a")

    async def body(bus: Bus) -> tuple[Any, Any]:
        with in_process_worker(stack, calls, bus, tmp_path) as worker:
            result = await worker.result_or_give_back(item, 1)
        gc = await bus.gc_request("promoted", wire.gc_msg_id("promoted", item.version))
        return result, gc

    result, gc = with_bus(body)
    assert isinstance(result, ItemResult)
    assert (result.outcome, result.reason) == ("failed", "UploadNotInCollection")
    assert "tenant-a" in (result.message or "")
    assert gc is None  # B's upload is not handed to the janitor
    assert [call for call in calls.calls if call[1] == theirs] == []  # nor read
    assert object_keys(s3, stack.bucket, "originals/tenant-a/") == []
    assert s3.head_object(Bucket=stack.bucket, Key=theirs)


def test_an_upload_whose_form_recorded_another_collection_is_refused(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    # Under c1's prefix, yet recorded for c2 (or for none): not a form c1 presigned.
    for metadata in ({storage.UPLOAD_COLLECTION_METADATA: "c2"}, {}):
        key = keys.staging_key("c1", keys.new_ulid(), "IMG_0001.jpg")
        s3.put_object(Bucket=stack.bucket, Key=key, Body=jpeg(50, 50), Metadata=metadata)
        item = work_item(key)
        assert item.collection == "c1"

        result = _result(with_bus, stack, s3, tmp_path, item)

        assert (result.outcome, result.reason) == ("failed", "UploadNotInCollection")
        assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=keys.claim_key(key))["KeyCount"] == 0
        prefix = f"originals/{item.collection}/{keys.asset_segment(item.asset)}/{item.version}/"
        assert object_keys(s3, stack.bucket, prefix) == []


def test_an_upload_is_promoted_once_and_a_second_job_is_refused(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    data = jpeg(400, 300)
    source = stage(s3, stack.bucket, data)
    first = work_item(source, asset="first.jpg")
    second = work_item(source, asset="second.jpg")  # another job, the same upload

    done = _result(with_bus, stack, s3, tmp_path, first)
    assert done.committed
    claim = json.loads(
        s3.get_object(Bucket=stack.bucket, Key=keys.claim_key(source))["Body"].read()
    )
    assert (claim["job"], claim["index"], claim["version"]) == (
        first.job.uid,
        first.index,
        first.version,
    )
    # The same item delivered again (its result was lost) finds its own claim: no refusal.
    uploads.claim(s3, stack.bucket, first)

    refused = _result(with_bus, stack, s3, tmp_path, second)

    assert (refused.outcome, refused.reason) == ("failed", "UploadAlreadyIngested")
    second_prefix = f"originals/{second.collection}/second.jpg/"
    assert object_keys(s3, stack.bucket, second_prefix) == []
    assert s3.get_object(Bucket=stack.bucket, Key=done.original)["Body"].read() == data


def test_a_marker_this_processor_did_not_write_refuses_the_claim(stack: Endpoints, s3: Any) -> None:
    source = stage(s3, stack.bucket, b"x")
    s3.put_object(Bucket=stack.bucket, Key=keys.claim_key(source), Body=b"not json")
    with pytest.raises(ItemRejected) as rejected:
        uploads.claim(s3, stack.bucket, work_item(source))
    assert rejected.value.reason == "UploadAlreadyIngested"


def test_a_source_replaced_after_its_check_is_never_promoted(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    """A presigned form replayed while the item renders put other
    bytes under the same key; the copy must not store them."""
    checked = jpeg(640, 480)
    source = stage(s3, stack.bucket, checked)
    item = work_item(source)
    replayed = jpeg(32, 32)

    def replay() -> None:
        s3.put_object(
            Bucket=stack.bucket,
            Key=source,
            Body=replayed,
            Metadata={storage.UPLOAD_COLLECTION_METADATA: item.collection},
        )

    replaying = Interleaving(s3, "copy_object", "originals/", replay)

    async def body(bus: Bus) -> tuple[Any, Any]:
        with in_process_worker(stack, replaying, bus, tmp_path) as worker:
            result = await worker.result_or_give_back(item, 1)
        stale = await bus.gc_request("stale", wire.gc_msg_id("stale", item.version))
        return result, stale

    result, stale = with_bus(body)

    assert replaying.fired
    assert isinstance(result, ItemResult)
    assert (result.outcome, result.reason) == ("failed", "SourceChanged")
    original = keys.original_key(item.collection, item.asset, item.version, "IMG_0001.jpg")
    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=original)["KeyCount"] == 0
    missing = s3.list_objects_v2(
        Bucket=stack.bucket, Prefix=keys.manifest_key(item.collection, item.asset)
    )
    assert missing["KeyCount"] == 0  # nothing went live
    assert stale is not None and original in stale.keys  # what was written is the janitor's
