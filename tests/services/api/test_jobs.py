"""Pure rules between requests and IngestJobs: items, splitting, labels, reading status."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_api import jobs
from emulsion_api.errors import ApiError
from emulsion_api.models import IngestItem, IngestRequest
from emulsion_contracts import crd, jobrecords, keys
from emulsion_contracts.ingestjob import IngestJobStatus, ItemsRef
from emulsion_contracts.jobrecords import OutcomeRecord
from emulsion_contracts.reasons import FailureReason


def _request(*assets: str | None, collection: str = "c") -> IngestRequest:
    return IngestRequest(
        collection=collection,
        items=[
            IngestItem(
                upload_key=keys.staging_key(collection, keys.new_ulid(), f"f{i}.jpg"), asset=asset
            )
            for i, asset in enumerate(assets)
        ],
    )


def minted(count: int) -> list[str]:
    """`count` versions in order, as the shared clock mints them."""
    return [keys.new_ulid(millis=1_700_000_000_000 + part) for part in range(count)]


def _plan(count: int) -> jobs.JobPlan:
    items = [
        jobs.PlannedItem(keys.staging_key("c", keys.new_ulid(), "a.jpg"), f"a{i}")
        for i in range(count)
    ]
    return jobs.JobPlan(
        namespace="ns",
        collection="c",
        profile="default",
        items=items,
        trace_headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
        idempotency=("label", "key", "hash"),
    )


def _build(plan: jobs.JobPlan, versions: list[str]) -> tuple[list[jobs.Part], list[jobs.Job]]:
    """The parts of `plan` and their jobs, each naming its list as `put_items` would."""
    parts = jobs.plan_parts(plan, versions)
    refs = [
        ItemsRef(
            name=jobrecords.items_object_name(plan.namespace, part.name),
            sha256=hashlib.sha256(jobrecords.encode_items(part.items)).hexdigest(),
            count=len(part.items),
        )
        for part in parts
    ]
    return parts, jobs.build_jobs(plan, parts, refs)


def test_asset_defaults_to_the_name_recorded_with_the_upload() -> None:
    request = _request(None, "other.jpg", None)
    recorded = {request.items[0].upload_key: "日本.jpg"}
    planned = jobs.plan_items(request, max_items=10, recorded=recorded)
    # An upload without a recorded name (staged by other means) gets its key's file part.
    assert [p.asset for p in planned] == ["日本.jpg", "other.jpg", "f2.jpg"]


@pytest.mark.parametrize(
    ("filename", "asset"),
    [
        ("日本.jpg", "日本.jpg"),
        ("a/b/中国.jpg", "中国.jpg"),
        ("C:\\photos\\photo 1.JPG", "photo 1.JPG"),
        ("Cafe\u0301.jpg", "Café.jpg"),
        ("..", "file"),
        ("a\x00b.jpg", "a-b.jpg"),
        ("日" * 70 + ".jpg", keys.safe_name("日" * 70 + ".jpg")),
    ],
)
def test_the_default_asset_is_the_nfc_base_name_or_else_the_safe_name(
    filename: str, asset: str
) -> None:
    assert jobs.default_asset(filename) == asset


def test_check_items_judges_explicit_names_before_any_upload_is_read() -> None:
    jobs.check_items(_request(None, None, "a.jpg"), max_items=10)
    with pytest.raises(ApiError) as refused:
        jobs.check_items(_request(None, "a.jpg", "a.jpg"), max_items=10)
    assert refused.value.code == "duplicate_asset"


def test_one_asset_twice_in_a_request_is_refused() -> None:
    with pytest.raises(ApiError) as refused:
        jobs.plan_items(_request("x.jpg", None, "x.jpg"), max_items=10, recorded={})
    assert (refused.value.status, refused.value.code) == (422, "duplicate_asset")
    assert refused.value.details[0].field == "body.items.2.asset"


def test_one_upload_twice_in_a_request_is_refused_naming_the_repeats() -> None:
    """One upload listed 50 times once rendered and copied it 50 times."""
    key = keys.staging_key("c", keys.new_ulid(), "a.jpg")
    other = keys.staging_key("c", keys.new_ulid(), "b.jpg")
    request = IngestRequest(
        collection="c",
        items=[
            IngestItem(upload_key=key, asset="one.jpg"),
            IngestItem(upload_key=other, asset="two.jpg"),
            IngestItem(upload_key=key, asset="three.jpg"),
            IngestItem(upload_key=key, asset="four.jpg"),
        ],
    )
    nothing_recorded: dict[str, str] = {}
    for recorded in (None, nothing_recorded):  # before any read, and when planning
        with pytest.raises(ApiError) as refused:
            jobs.plan_items(request, max_items=10, recorded=recorded)
        assert (refused.value.status, refused.value.code) == (422, "duplicate_upload")
        assert [d.field for d in refused.value.details] == [
            "body.items.2.upload_key",
            "body.items.3.upload_key",
        ]
        assert all("is also item 0" in d.message for d in refused.value.details)


def test_keys_of_either_layout_pass_the_form_check_others_do_not() -> None:
    """Whose upload a key is, is the route's question: the form check says nothing of it."""
    legacy = f"staging/{keys.new_ulid()}/a.jpg"
    foreign = keys.staging_key("d", keys.new_ulid(), "b.jpg")
    request = IngestRequest(
        collection="c",
        items=[IngestItem(upload_key=legacy), IngestItem(upload_key=foreign)],
    )
    jobs.check_items(request, max_items=10)


def test_more_items_than_the_request_maximum_are_refused() -> None:
    with pytest.raises(ApiError) as refused:
        jobs.plan_items(_request(None, None, None), max_items=2, recorded={})
    assert refused.value.code == "too_many_items"


def test_a_request_within_max_items_is_one_job_without_a_batch() -> None:
    _, [job] = _build(_plan(crd.MAX_ITEMS), [keys.new_ulid()])
    # The items are stored apart: the job names them, and stays a frame of a few KB.
    assert "items" not in job["spec"] and job["spec"]["itemsRef"]["count"] == crd.MAX_ITEMS
    assert jobs.stored_size(job) < 4 * 1024
    assert crd.LABEL_BATCH not in job["metadata"]["labels"]
    assert job["metadata"]["name"] == job["spec"]["version"].lower()
    assert job["metadata"]["annotations"][crd.ANNOTATION_TRACEPARENT].startswith("00-111")
    assert job["metadata"]["labels"][jobs.LABEL_IDEMPOTENCY] == "label"
    assert job["metadata"]["finalizers"] == [crd.FINALIZER]


def test_a_larger_request_is_split_into_ordered_parts_of_one_batch() -> None:
    minted = [keys.new_ulid(millis=1_700_000_000_000 + part) for part in range(3)]
    assert jobs.part_count(_plan(2 * crd.MAX_ITEMS + 1).items) == 3
    planned, parts = _build(_plan(2 * crd.MAX_ITEMS + 1), minted)
    assert [p["spec"]["itemsRef"]["count"] for p in parts] == [crd.MAX_ITEMS, crd.MAX_ITEMS, 1]
    assert [len(p.items) for p in planned] == [crd.MAX_ITEMS, crd.MAX_ITEMS, 1]
    assert [p["spec"]["version"] for p in parts] == minted
    batches = {p["metadata"]["labels"][crd.LABEL_BATCH] for p in parts}
    assert batches == {parts[0]["metadata"]["name"]}
    made = [(job, part.items) for job, part in zip(parts, planned, strict=True)]
    accepted = jobs.accepted(list(reversed(made)))
    assert [item.index for item in accepted.items] == list(range(2 * crd.MAX_ITEMS + 1))
    assert accepted.items[crd.MAX_ITEMS].job_index == 0


@pytest.mark.parametrize(
    ("collection", "label"),
    [("gallery-42", "gallery-42"), ("a.b_", "a.b"), ("x--", "x"), ("A" * 63, "A" * 63)],
)
def test_collection_becomes_a_valid_label_value(collection: str, label: str) -> None:
    assert jobs.collection_label(collection) == label


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (["Succeeded", "Processing"], "Processing"),
        (["Succeeded", "Pending"], "Pending"),
        (["Succeeded", "Succeeded"], "Succeeded"),
        (["Failed", "Failed"], "Failed"),
        (["Succeeded", "Failed"], "PartiallyFailed"),
    ],
)
def test_batch_phase(phases: list[str], expected: str) -> None:
    assert jobs.batch_phase([crd.Phase(p) for p in phases]) is crd.Phase(expected)


def test_item_states_from_index_ranges_and_a_malformed_range_is_pending() -> None:
    status = IngestJobStatus.model_validate(
        {
            "succeededIndexes": "0-2,5",
            "failedIndexes": "3,4",
            "failures": [
                {"index": 3, "reason": "DecompressionBomb"},
                # A reason from a newer processor than this API: shown as Unknown.
                {"index": 4, "reason": "SomethingNew"},
            ],
        }
    )
    states = jobs.item_states(status)
    assert [states.state(i) for i in range(6)] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "failed",
        "failed",
        "succeeded",
    ]
    assert states.reasons == {3: FailureReason.DECOMPRESSION_BOMB, 4: FailureReason.UNKNOWN}
    broken = jobs.item_states(IngestJobStatus(succeeded_indexes="3-1"))
    assert broken.state(2) == "pending"


def test_item_states_from_the_outcomes_record() -> None:
    record = OutcomeRecord(
        uid="u", total=6, succeeded="0-2,5", failed="3,4", reasons={"NotAnImage": "3", "New": "4"}
    )
    states = jobs.outcome_states(record)
    assert [states.state(i) for i in range(7)] == [
        *["succeeded"] * 3,
        "failed",
        "failed",
        "succeeded",
        "pending",
    ]
    assert states.reasons == {3: FailureReason.NOT_AN_IMAGE, 4: FailureReason.UNKNOWN}
    assert jobs.outcome_states(OutcomeRecord(uid="u", total=3, succeeded="3-1")).state(2) == (
        "pending"
    )


def test_idempotency_key_is_printable_ascii_and_bounded() -> None:
    assert jobs.check_idempotency_key("abc-123") == "abc-123"
    for bad in ("", "a b", "é", "x" * 256):
        with pytest.raises(ApiError):
            jobs.check_idempotency_key(bad)
    assert jobs.idempotency_label("p1", "k") != jobs.idempotency_label("p2", "k")


def test_each_part_needs_its_own_minted_version() -> None:
    with pytest.raises(ValueError, match="versions"):
        jobs.plan_parts(_plan(crd.MAX_ITEMS + 1), [keys.new_ulid()])
    assert [jobs.part_count(_plan(n).items) for n in (0, 1, crd.MAX_ITEMS, crd.MAX_ITEMS + 1)] == [
        1,
        1,
        1,
        2,
    ]


# Names by what a character costs as the apiserver stores it: 1, 6 ('<' '>' '&' are
# escaped by Go's JSON), 2 ('"' as \"), 3 (CJK), 4 (emoji).
_stored_characters = st.sampled_from(["a", "<", ">", "&", '"', "日", "😀"])


def _names(count: int, stem: str) -> list[str]:
    tail_room = keys.ASSET_NAME_MAX - 6
    while len(stem.encode()) > tail_room:
        stem = stem[:-1]
    return [f"{stem}-{index:05d}" for index in range(count)]


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=3 * crd.MAX_ITEMS),
    stem=st.text(_stored_characters, min_size=0, max_size=keys.ASSET_NAME_MAX),
)
def test_every_part_fits_by_count_and_stored_size_and_keeps_the_order(
    count: int, stem: str
) -> None:
    items = [
        jobs.PlannedItem(keys.staging_key("c1", keys.new_ulid(), "a.jpg"), name)
        for name in _names(count, stem)
    ]
    plan = jobs.JobPlan("default", "c1", "default", items, {"traceparent": "00-" + "1" * 52})
    parts, bodies = _build(plan, minted(jobs.part_count(items)))
    assert all(len(part.items) <= crd.MAX_ITEMS for part in parts)
    # The stored list, exactly as put_items writes it, within the limit; the jobs tiny.
    stored = [len(jobrecords.encode_items(part.items)) for part in parts]
    assert all(size <= jobs.MAX_ITEMS_BYTES for size in stored)
    assert all(jobs.stored_size(body) < 4 * 1024 for body in bodies)
    flat = [item.asset for part in parts for item in part.items]
    assert flat == [item.asset for item in items]
    # The estimate is the stored size (these names hold no control characters).
    for part, size in zip(parts, stored, strict=True):
        estimate = sum(jobs.item_bytes(jobs.PlannedItem(i.source, i.asset)) for i in part.items)
        assert estimate - 1 + jobs.ITEMS_FRAME_BYTES == size
    # Greedy: a part is cut only when the next item would not fit in it.
    for (part, size), (following, _) in itertools.pairwise(zip(parts, stored, strict=True)):
        first = following.items[0]
        next_size = jobs.item_bytes(jobs.PlannedItem(first.source, first.asset))
        assert len(part.items) == crd.MAX_ITEMS or size + 1 + next_size > jobs.MAX_ITEMS_BYTES


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("a", 3),  # "a" with its quotes
        ("<", 8),  # "\u003c": Go escapes it, Python does not
        ("a&b>", 2 + 1 + 6 + 1 + 6),
        ("日", 5),  # UTF-8 as it is
        ('"', 4),  # \"
        ("\u2028", 8),  # \u2028 (6 bytes), not its 3 bytes of UTF-8
    ],
)
def test_stored_json_is_measured_as_go_writes_it(value: str, size: int) -> None:
    assert jobs.stored_json_size(value) == size
