"""A job's conditions by phase, and how kstatus and Argo CD read them (pure logic).

`argo_health` is the Lua health check of docs/ingestjob.md ("Health in Argo CD"), line for
line, and `kstatus` is how sigs.k8s.io/cli-utils' kstatus reads any resource's conditions;
the table says what each phase must read as to both.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import keys
from emulsion_contracts.crd import ConditionType, Phase
from emulsion_contracts.messages import ItemResult, JobRef
from emulsion_contracts.reasons import FailureReason
from emulsion_controller.progress import JobProgress

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
VERSION = keys.new_ulid()
Outcome = Literal["succeeded", "failed"]


def job(items: int) -> JobProgress:
    return JobProgress.from_object(
        {
            "metadata": {"namespace": "ns", "name": "job", "uid": "uid-1", "generation": 1},
            "spec": {
                "collection": "gallery",
                "items": [
                    {"source": f"staging/u/{i}.jpg", "asset": f"{i}.jpg"} for i in range(items)
                ],
            },
        }
    )


def result(index: int, outcome: Outcome) -> ItemResult:
    return ItemResult(
        job=JobRef(namespace="ns", name="job", uid="uid-1"),
        index=index,
        outcome=outcome,
        reason=FailureReason.NOT_AN_IMAGE if outcome == "failed" else None,
        collection="gallery",
        asset=f"{index}.jpg",
        version=keys.version_id(VERSION, index),
        finished_at=T0,
    )


def progress_in(phase: str) -> JobProgress:
    """A four-item job in `phase` ("InvalidSpec": refused as a whole)."""
    progress = job(4)
    if phase == "InvalidSpec":
        progress.reject("spec.items[1].asset: not NFC")
        return progress
    if phase == Phase.PENDING:
        return progress
    progress.mark_dispatched(VERSION, T0)
    outcomes: dict[str, list[Outcome]] = {
        Phase.QUEUED: [],
        Phase.PROCESSING: ["succeeded", "failed"],
        Phase.SUCCEEDED: ["succeeded"] * 4,
        Phase.PARTIALLY_FAILED: ["succeeded", "failed", "succeeded", "failed"],
        Phase.FAILED: ["failed"] * 4,
    }
    for index, outcome in enumerate(outcomes[phase]):
        progress.record(result(index, outcome))
    assert progress.phase == (Phase.FAILED if phase == "InvalidSpec" else phase)
    return progress


def argo_health(status: dict[str, Any]) -> tuple[str, str]:
    """docs/ingestjob.md's Lua health check for emulsion.dev/IngestJob, in Python."""
    health, message = "Progressing", "Waiting for the controller"
    conditions = status.get("conditions")
    if conditions is None:
        return health, message
    by_type = {c["type"]: c for c in conditions}
    stalled = by_type.get("Stalled")
    if stalled is not None and stalled["status"] == "True":
        return "Degraded", stalled["message"]
    ready = by_type.get("Ready")
    if ready is not None and ready["status"] == "True":
        return "Healthy", ready["message"]
    latest = by_type.get("Reconciling") or ready
    if latest is not None:
        message = latest["message"]
    return health, message


def kstatus(status: dict[str, Any]) -> str:
    """kstatus' generic rule: Reconciling=True is InProgress, Stalled=True is Failed."""
    by_type = {c["type"]: c["status"] for c in status.get("conditions", ())}
    if by_type.get("Reconciling") == "True":
        return "InProgress"
    if by_type.get("Stalled") == "True":
        return "Failed"
    return "Current"


# phase: (Dispatched, Complete, Failed, Ready, Reconciling, Stalled), Argo CD, kstatus
TABLE: dict[str, tuple[tuple[str | None, ...], str, str]] = {
    Phase.QUEUED: (("True", None, None, "False", "True", "False"), "Progressing", "InProgress"),
    Phase.PROCESSING: (("True", None, None, "False", "True", "False"), "Progressing", "InProgress"),
    Phase.SUCCEEDED: (("True", "True", "False", "True", "False", "False"), "Healthy", "Current"),
    Phase.PARTIALLY_FAILED: (
        ("True", "True", "False", "False", "False", "True"),
        "Degraded",
        "Failed",
    ),
    Phase.FAILED: (("True", "False", "True", "False", "False", "True"), "Degraded", "Failed"),
    "InvalidSpec": ((None, "False", "True", "False", "False", "True"), "Degraded", "Failed"),
}
TYPES = ("Dispatched", "Complete", "Failed", "Ready", "Reconciling", "Stalled")


@pytest.mark.parametrize("phase", list(TABLE))
def test_each_phase_has_its_conditions_and_reads_right_to_argo_cd_and_kstatus(
    phase: str,
) -> None:
    status = progress_in(phase).to_status(T0)
    found = {c["type"]: c for c in status["conditions"]}
    expected, health, summary = TABLE[phase]
    assert tuple(found[t]["status"] if t in found else None for t in TYPES) == expected
    assert argo_health(status)[0] == health
    assert kstatus(status) == summary
    assert {c["observedGeneration"] for c in found.values()} == {1}


def test_a_job_not_yet_written_reads_as_progressing() -> None:
    assert argo_health({}) == ("Progressing", "Waiting for the controller")
    status = progress_in(Phase.PENDING).to_status(T0)
    assert kstatus(status) == "InProgress"
    assert argo_health(status)[0] == "Progressing"


def test_the_messages_say_how_many_items_failed_and_why() -> None:
    status = progress_in(Phase.PARTIALLY_FAILED).to_status(T0)
    found = {c["type"]: c for c in status["conditions"]}
    said = "2 of 4 items failed (2 NotAnImage)"
    for kind in (ConditionType.COMPLETE, ConditionType.FAILED, ConditionType.STALLED):
        assert (found[kind]["reason"], found[kind]["message"]) == ("PartiallyFailed", said)
    assert argo_health(status) == ("Degraded", said)
    running = progress_in(Phase.PROCESSING).to_status(T0)
    assert argo_health(running) == ("Progressing", "2 of 4 items finished, 1 failed")
    refused = progress_in("InvalidSpec").to_status(T0)
    assert argo_health(refused) == ("Degraded", "spec.items[1].asset: not NFC")
    assert {c["reason"] for c in refused["conditions"]} == {"InvalidSpec"}


def test_transition_times_move_only_when_a_status_changes() -> None:
    progress = job(2)
    progress.mark_dispatched(VERSION, T0)
    queued = progress.to_status(T0)
    progress.record(result(0, "succeeded"))
    processing = progress.to_status(T0 + timedelta(seconds=10))
    progress.record(result(1, "succeeded"))
    done = progress.to_status(T0 + timedelta(seconds=20))

    def since(status: dict[str, Any], kind: str) -> str:
        return str(next(c for c in status["conditions"] if c["type"] == kind)["lastTransitionTime"])

    for kind in ("Ready", "Reconciling", "Stalled"):
        assert since(queued, kind) == since(processing, kind) == "2026-01-02T03:04:05Z"
    assert since(done, "Ready") == since(done, "Reconciling") == "2026-01-02T03:04:25Z"
    assert since(done, "Stalled") == "2026-01-02T03:04:05Z"  # False all along


@given(st.lists(st.sampled_from(["succeeded", "failed", None]), min_size=1, max_size=12))
def test_complete_and_failed_are_never_both_true(outcomes: list[Outcome | None]) -> None:
    progress = job(len(outcomes))
    progress.mark_dispatched(VERSION, T0)
    for index, outcome in enumerate(outcomes):
        if outcome is not None:
            progress.record(result(index, outcome))
    found = {c["type"]: c["status"] for c in progress.to_status(T0)["conditions"]}
    assert not (found.get("Complete") == "True" and found.get("Failed") == "True")
    assert (found["Ready"] == "True") == (progress.phase == Phase.SUCCEEDED)
    assert (found["Reconciling"] == "True") == (not progress.phase.finished)
    assert (found["Stalled"] == "True") == (progress.phase.finished and bool(progress.failed))


def test_the_documented_check_is_the_one_tested_here() -> None:
    """The Lua in docs/ingestjob.md reads the conditions in argo_health's order and words."""
    document = (Path(__file__).resolve().parents[3] / "docs" / "ingestjob.md").read_text()
    lua = document.split("resource.customizations.health.emulsion.dev_IngestJob: |", 1)[1]
    lua = lua.split("```", 1)[0]
    steps = [
        'hs = {status = "Progressing", message = "Waiting for the controller"}',
        'byType["Stalled"]',
        'hs.status = "Degraded"',
        'byType["Ready"]',
        'hs.status = "Healthy"',
        'byType["Reconciling"] or ready',
    ]
    found = [lua.find(step) for step in steps]
    assert -1 not in found and found == sorted(found), dict(zip(steps, found, strict=True))
