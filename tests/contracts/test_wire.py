"""The wire's grammar: what one service builds, another parses back to the same job and
item, whatever the names, indexes and copies (a re-dispatch, hand-backs of either)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import wire
from emulsion_contracts.messages import JobRef

# Kubernetes object names (DNS subdomains): lowercase alphanumerics, '-' and '.'.
names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?", fullmatch=True)
uids = st.uuids().map(str)
indexes = st.integers(min_value=0, max_value=1999)
suffixes = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)


def test_subjects_and_message_ids_have_their_documented_forms() -> None:
    uid = "8c5e0c1e-5b39-4b8f-9d0e-1f2a3b4c5d6e"
    assert wire.work_subject("photos", "gallery.42") == "emulsion.work.bulk.photos.gallery_42"
    assert (
        wire.work_subject("photos", "g", wire.Lane.INTERACTIVE)
        == "emulsion.work.interactive.photos.g"
    )
    assert wire.parse_work_subject("emulsion.work.photos.g") == ("photos", "g"), "legacy form"
    assert wire.work_lane("emulsion.work.photos.g") is wire.Lane.BULK
    assert wire.events_subject("photos", "g") == "emulsion.events.photos.g"
    assert wire.gc_subject("superseded") == "emulsion.gc.superseded"
    assert wire.work_msg_id(uid, 12) == f"{uid}/12"
    assert wire.work_msg_id(uid, 12, redispatch="r1") == f"{uid}/12/r1"
    assert wire.result_msg_id(uid, 12) == f"{uid}/12/result"
    assert wire.gc_msg_id("superseded", "v1") == "gc/superseded/v1"
    with pytest.raises(ValueError, match="subject token"):
        wire.work_subject("photos", "a*b")


@given(
    namespace=names,
    job=names,
    uid=uids,
    index=indexes,
    redispatch=st.none() | suffixes,
    lane=st.sampled_from(wire.Lane),
)
def test_a_work_message_is_addressed_back_to_its_job_and_item(
    namespace: str, job: str, uid: str, index: int, redispatch: str | None, lane: wire.Lane
) -> None:
    subject = wire.work_subject(namespace, job, lane)
    assert wire.work_lane(subject) is lane
    msg_id = wire.work_msg_id(uid, index, redispatch=redispatch)
    address = wire.work_address(subject, msg_id)
    assert address == wire.WorkAddress(JobRef(namespace=namespace, name=job, uid=uid), index)
    assert wire.parse_work_msg_id(msg_id) == wire.WorkId(uid, index, redispatch or "")


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` is one token, a final `>` one or more."""
    wanted, given_ = pattern.split("."), subject.split(".")
    for position, token in enumerate(wanted):
        if token == ">":
            return len(given_) > position
        if position >= len(given_) or token not in ("*", given_[position]):
            return False
    return len(wanted) == len(given_)


@given(namespace=names, job=names, lane=st.sampled_from(wire.Lane))
def test_each_lanes_work_reaches_exactly_its_own_consumer(
    namespace: str, job: str, lane: wire.Lane
) -> None:
    subject = wire.work_subject(namespace, job, lane)
    taken_by = {
        other
        for other, filters in wire.WORK_CONSUMER_FILTERS.items()
        if any(matches(f, subject) for f in filters)
    }
    assert taken_by == {lane}
    assert matches(wire.WORK_SUBJECTS, subject)
    assert matches(wire.job_work_subjects(namespace, job), subject)
    # Work published before the lanes is the bulk lane's, and a cancel still finds it.
    legacy = wire.legacy_work_subject(namespace, job)
    assert wire.parse_work_subject(legacy) == (namespace, job)
    assert {
        other
        for other, filters in wire.WORK_CONSUMER_FILTERS.items()
        if any(matches(f, legacy) for f in filters)
    } == {wire.Lane.BULK}
    assert not matches(wire.job_work_subjects(namespace, job), legacy)


def overlap(first: str, second: str) -> bool:
    """Whether some subject matches both patterns (neither ends in `>` here)."""
    a, b = first.split("."), second.split(".")
    assert ">" not in a + b
    return len(a) == len(b) and all(x == y or "*" in (x, y) for x, y in zip(a, b, strict=True))


def test_no_two_work_filters_overlap() -> None:
    """A work-queue stream refuses consumers whose filters overlap, and one consumer's
    own filters may not overlap either."""
    filters = [f for lane in wire.Lane for f in wire.WORK_CONSUMER_FILTERS[lane]]
    for position, first in enumerate(filters):
        for second in filters[position + 1 :]:
            assert not overlap(first, second), (first, second)


def test_each_work_consumers_exhausted_work_is_captured() -> None:
    # Bulk first: it keeps the single consumer's name and is narrowed before the
    # interactive durable is created (a work-queue stream refuses overlapping filters).
    assert list(wire.WORK_CONSUMERS) == [wire.Lane.BULK, wire.Lane.INTERACTIVE]
    assert wire.WORK_CONSUMERS[wire.Lane.BULK] == wire.PROCESSORS
    assert wire.MAX_DELIVERIES_ADVISORIES == (
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EMULSION_WORK.processors",
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EMULSION_WORK.processors-interactive",
    )


@given(uid=uids, index=indexes, handbacks=st.integers(min_value=1, max_value=4))
def test_every_hand_back_is_a_new_id_of_the_same_item(uid: str, index: int, handbacks: int) -> None:
    ids = [wire.work_msg_id(uid, index)]
    for _ in range(handbacks):
        ids.append(wire.handback_msg_id(ids[-1]))
    assert len(set(ids)) == len(ids), "a copy sharing an id would be deduplicated away"
    for msg_id in ids:
        parsed = wire.parse_work_msg_id(msg_id)
        assert parsed is not None and (parsed.job_uid, parsed.index) == (uid, index)


@pytest.mark.parametrize(
    ("subject", "msg_id"),
    [
        ("emulsion.events.ns.job", f"{uuid.UUID(int=1)}/3"),
        ("emulsion.work.ns", f"{uuid.UUID(int=1)}/3"),
        ("emulsion.work.ns.job.extra", f"{uuid.UUID(int=1)}/3"),
        ("emulsion.work..job", f"{uuid.UUID(int=1)}/3"),
        ("emulsion.work.ns.job", None),
        ("emulsion.work.ns.job", ""),
        ("emulsion.work.ns.job", f"{uuid.UUID(int=1)}"),
        ("emulsion.work.ns.job", f"{uuid.UUID(int=1)}/x"),
        ("emulsion.work.ns.job", "/3"),
    ],
)
def test_an_unreadable_address_is_none(subject: str, msg_id: str | None) -> None:
    assert wire.work_address(subject, msg_id) is None
