from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from emulsion_contracts import keys
from emulsion_contracts.messages import GcRequest, ItemResult, JobRef, WorkItem
from emulsion_contracts.reasons import FailureReason

JOB = JobRef(namespace="photos", name="gallery-42-abc", uid="8c5e0c1e-5b39-4b8f-9d0e-1f2a3b4c5d6e")
VERSION = keys.version_id("01JDZ8Q6W1B2C3D4E5F6G7H8J9", 0)


def work_item(**overrides: object) -> WorkItem:
    fields: dict[str, object] = {
        "job": JOB,
        "index": 0,
        "source": "staging/gallery-42/01JDZ8Q6W1B2C3D4E5F6G7H8J9/IMG_0001.jpg",
        "collection": "gallery-42",
        "asset": "IMG_0001.jpg",
        "version": VERSION,
    }
    return WorkItem.model_validate({**fields, **overrides})


def test_messages_round_trip_through_json() -> None:
    item = work_item()
    assert WorkItem.from_bytes(item.to_bytes()) == item
    result = ItemResult(
        job=JOB,
        index=0,
        outcome="failed",
        reason=FailureReason.DECOMPRESSION_BOMB,
        message="too many pixels",
        collection="gallery-42",
        asset="IMG_0001.jpg",
        version=VERSION,
        finished_at=datetime.now(UTC),
    )
    assert ItemResult.from_bytes(result.to_bytes()) == result
    request = GcRequest(reason="superseded", keys=("originals/x",), not_before=datetime.now(UTC))
    assert GcRequest.from_bytes(request.to_bytes()) == request


def test_unknown_fields_are_ignored_but_unknown_versions_refused() -> None:
    data = work_item().model_dump(mode="json")
    assert WorkItem.model_validate({**data, "added_later": 1}) == work_item()
    with pytest.raises(ValidationError):
        WorkItem.model_validate({**data, "v": 2})


@pytest.mark.parametrize(
    "override",
    [
        {"source": "originals/gallery-42/x"},
        {"asset": "../x"},
        {"collection": "a/b"},
        {"version": "latest"},
        {"index": -1},
    ],
)
def test_work_items_refuse_keys_outside_the_layout(override: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        work_item(**override)


def test_a_failed_result_carries_its_work_items_address() -> None:
    work = work_item(index=3, version=keys.version_id("01JDZ8Q6W1B2C3D4E5F6G7H8J9", 3))
    result = ItemResult.failed(work, FailureReason.RETRIES_EXHAUSTED, "gave up", 5)
    assert (result.job, result.index, result.outcome) == (work.job, 3, "failed")
    assert (result.collection, result.asset, result.version) == (
        work.collection,
        work.asset,
        work.version,
    )
    assert (result.reason, result.message, result.attempts) == ("RetriesExhausted", "gave up", 5)
    assert ItemResult.from_bytes(result.to_bytes()) == result


def test_a_result_with_a_reason_this_reader_does_not_know_is_kept_as_unknown() -> None:
    work = work_item()
    wire = ItemResult.failed(work, FailureReason.CORRUPT_IMAGE, "x", 1).to_bytes()
    newer = wire.replace(b'"CorruptImage"', b'"SomeNewReason"')
    assert ItemResult.model_validate_json(newer).reason is FailureReason.UNKNOWN
