"""The controller's pure logic: folding results, conditions, durations, TTL expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from emulsion_contracts import crd, keys
from emulsion_contracts.crd import ConditionType, Phase
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.census import Census
from emulsion_controller.conditions import set_condition
from emulsion_controller.progress import JobProgress, format_duration

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
VERSION = keys.new_ulid()


def result(index: int, outcome: Literal["succeeded", "failed"] = "succeeded") -> ItemResult:
    return ItemResult(
        job=JobRef(namespace="ns", name="job", uid="uid-1"),
        index=index,
        outcome=outcome,
        reason=FailureReason.DECOMPRESSION_BOMB if outcome == "failed" else None,
        collection="gallery",
        asset=f"img-{index}.jpg",
        version=keys.version_id(VERSION, index),
        finished_at=T0,
    )


def body(items: int, status: dict[str, Any] | None = None, ttl: int | None = None) -> Any:
    spec: dict[str, Any] = {
        "collection": "gallery",
        "items": [{"source": f"staging/u/{i}.jpg", "asset": f"{i}.jpg"} for i in range(items)],
    }
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {
        "metadata": {"namespace": "ns", "name": "job", "uid": "uid-1", "generation": 1},
        "spec": spec,
        "status": status or {},
    }


def test_a_result_folded_twice_counts_once_and_the_first_outcome_stays() -> None:
    progress = JobProgress.from_object(body(3))
    progress.mark_dispatched(VERSION, T0)
    assert progress.record(result(0))
    assert not progress.record(result(0))
    assert not progress.record(result(0, "failed"))
    assert not progress.record(result(7))  # no such item
    status = progress.to_status(T0)
    assert (status["succeeded"], status["failed"], status["progress"]) == (1, 0, "1/3")
    assert status["phase"] == Phase.PROCESSING


def test_the_phase_follows_the_outcomes() -> None:
    def finished_with(failed: set[int]) -> Phase:
        progress = JobProgress.from_object(body(3))
        progress.mark_dispatched(VERSION, T0)
        for index in range(3):
            progress.record(result(index, "failed" if index in failed else "succeeded"))
        return progress.phase

    assert finished_with(set()) == Phase.SUCCEEDED
    assert finished_with({1}) == Phase.PARTIALLY_FAILED
    assert finished_with({0, 1, 2}) == Phase.FAILED


def test_status_written_and_read_back_is_the_same_progress() -> None:
    progress = JobProgress.from_object(body(5))
    progress.mark_dispatched(VERSION, T0)
    for index, outcome in ((0, "succeeded"), (1, "failed"), (3, "succeeded")):
        progress.record(result(index, outcome))  # type: ignore[arg-type]
    status = progress.to_status(T0)
    # Which items finished is in the outcome record; the status keeps the rest.
    assert "succeededIndexes" not in status and "failedIndexes" not in status
    again = JobProgress.from_object(body(5, status))
    again.merge_record(progress.outcome_record("uid-1"))
    assert again.to_status(T0) == status
    assert (again.succeeded, again.failed) == ({0, 3}, {1})


def test_merging_keeps_what_each_writer_folded() -> None:
    ours = JobProgress.from_object(body(4))
    ours.mark_dispatched(VERSION, T0)
    ours.record(result(0))
    ours.record(result(1, "failed"))
    theirs = JobProgress.from_object(body(4))
    theirs.mark_dispatched(VERSION, T0 - timedelta(seconds=5))
    theirs.record(result(1))  # recorded first, so it stays a success
    theirs.record(result(2, "failed"))
    # Their outcomes come from their record, their examples and times from their status.
    ours.merge(JobProgress.from_object(body(4, theirs.to_status(T0))))
    ours.merge_record(theirs.outcome_record("uid-1"))
    assert ours.succeeded == {0, 1}
    assert ours.failed == {2}
    assert [f.index for f in ours.failures] == [2]
    assert ours.started_at == datetime(2026, 1, 2, 3, 4, 0, tzinfo=UTC)


def test_a_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    complete = ConditionType.COMPLETE
    first = set_condition(
        [], type=complete, status="False", reason="A", message="", generation=1, now=T0
    )
    later = T0 + timedelta(minutes=1)
    same = set_condition(
        first, type=complete, status="False", reason="B", message="m", generation=2, now=later
    )
    assert same[0].last_transition_time == first[0].last_transition_time
    assert (same[0].reason, same[0].observed_generation) == ("B", 2)
    flipped = set_condition(
        same, type=complete, status="True", reason="C", message="", generation=2, now=later
    )
    assert flipped[0].to_body()["lastTransitionTime"] == "2026-01-02T03:05:05Z"


def test_conditions_of_a_finished_job_say_how_it_ended() -> None:
    progress = JobProgress.from_object(body(2))
    progress.mark_dispatched(VERSION, T0)
    progress.record(result(0))
    progress.record(result(1, "failed"))
    status = progress.to_status(T0 + timedelta(seconds=72))
    found = {c["type"]: c for c in status["conditions"]}
    assert found[ConditionType.DISPATCHED]["status"] == "True"
    assert found[ConditionType.COMPLETE]["status"] == "True"
    assert found[ConditionType.FAILED]["status"] == "False"  # see conditions.py
    assert found[ConditionType.FAILED]["reason"] == "PartiallyFailed"
    assert found[ConditionType.FAILED]["message"] == "1 of 2 items failed (1 DecompressionBomb)"
    assert status["duration"] == "1m12s"
    assert status["completedAt"] == "2026-01-02T03:05:17Z"


def test_durations_print_as_kubectl_does() -> None:
    assert format_duration(timedelta(seconds=4)) == "4s"
    assert format_duration(timedelta(minutes=1, seconds=12)) == "1m12s"
    assert format_duration(timedelta(hours=1, minutes=2, seconds=3)) == "1h2m3s"


def test_only_finished_jobs_past_their_ttl_expire() -> None:
    census = Census()
    done = {"phase": str(crd.Phase.SUCCEEDED), "completedAt": "2026-01-02T03:04:05Z"}
    census.observe(body(1, done, ttl=60))
    running = {"phase": str(crd.Phase.PROCESSING)}
    other = body(1, running, ttl=0)
    other["metadata"] = {**other["metadata"], "name": "other", "uid": "uid-2"}
    census.observe(other)
    assert census.expired(T0 + timedelta(seconds=59)) == []
    assert [key.name for key in census.expired(T0 + timedelta(seconds=60))] == ["job"]
    assert census.by_phase() == {Phase.SUCCEEDED: 1, Phase.PROCESSING: 1}


def test_an_unknown_phase_is_counted_as_pending_and_logged(caplog: Any) -> None:
    census = Census()
    census.observe(body(1, {"phase": "Hibernating"}, ttl=0))
    assert census.by_phase() == {Phase.PENDING: 1}
    assert census.expired(T0) == []  # not finished, so never deleted for its TTL
    assert "unknown job phase 'Hibernating' read as Pending" in caplog.text


def test_a_failed_result_without_a_known_reason_is_listed_as_unknown() -> None:
    progress = JobProgress.from_object(body(2))
    progress.mark_dispatched(VERSION, T0)
    newer = result(0, "failed").model_copy(update={"reason": None})
    progress.record(newer)
    status = progress.to_status(T0)
    assert status["failures"] == [{"index": 0, "asset": "img-0.jpg", "reason": "Unknown"}]
