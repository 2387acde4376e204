"""Kubernetes Events on IngestJobs, as `kubectl describe ij` shows them, with the real
controller, apiserver and streams (a simulated processor reports the outcomes)."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import crd
from emulsion_contracts.messages import JobRef, WorkItem
from emulsion_controller import events
from emulsion_devstack.processes import ProcessRecord, wait_for


@dataclass(frozen=True)
class Shown:
    type: str
    reason: str
    source: str
    message: str


def described(jobs: Any, name: str) -> list[Shown]:
    """The Events section of `kubectl describe ij <name>`: its columns are two or more
    spaces apart; a message of several lines (kopf's) goes on unindented."""
    text = jobs.kubectl("describe", "ij", name, "-n", jobs.namespace)
    shown = []
    for line in text.split("\nEvents:", 1)[1].splitlines():
        if re.match(r"  (Normal|Warning|Error) {2,}", line):
            kind, reason, _age, source, message = re.split(r" {2,}", line.strip(), maxsplit=4)
            shown.append(Shown(kind, reason, source, message))
    return shown


def wait_described(jobs: Any, name: str, *reasons: str) -> list[Shown]:
    def showing() -> list[Shown] | None:
        shown = described(jobs, name)
        return shown if {e.reason for e in shown} >= set(reasons) else None

    found: list[Shown] = wait_for(f"kubectl describe ij {name} to show {reasons}", showing, 30)
    return found


def one(shown: list[Shown], reason: str) -> Shown:
    (found,) = [e for e in shown if e.reason == reason]
    return found


def test_a_job_that_succeeds_shows_dispatched_then_completed(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    async def scenario() -> None:
        async with streams.processing():
            await asyncio.to_thread(jobs.create, "fine", 3)
            await asyncio.to_thread(jobs.wait_phase, "fine", crd.Phase.SUCCEEDED)

    run(scenario())
    shown = wait_described(jobs, "fine", "Dispatched", "Completed")
    version = jobs.status("fine")["version"]
    assert one(shown, "Dispatched") == Shown(
        "Normal", "Dispatched", "emulsion-controller", f"3 work items queued as version {version}"
    )
    assert one(shown, "Completed") == Shown(
        "Normal", "Completed", "emulsion-controller", "3 of 3 items succeeded"
    )
    assert [e.reason for e in shown] == ["Dispatched", "Completed"]  # nothing of kopf's


def test_failed_items_show_as_warnings_with_their_first_reasons(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    def outcome(work: WorkItem) -> str | None:
        if work.job.name == "broken" or work.index in (1, 3):
            return "DecompressionBomb"
        return None

    async def scenario() -> None:
        async with streams.processing(outcome):
            await asyncio.to_thread(jobs.create, "some", 4)
            await asyncio.to_thread(jobs.create, "broken", 2)
            await asyncio.to_thread(jobs.wait_phase, "some", crd.Phase.PARTIALLY_FAILED)
            await asyncio.to_thread(jobs.wait_phase, "broken", crd.Phase.FAILED)

    run(scenario())
    partly = one(wait_described(jobs, "some", "PartiallyFailed"), "PartiallyFailed")
    assert partly.type == "Warning"
    assert partly.message == (
        "2 of 4 items failed (2 DecompressionBomb); first: "
        "[1] img-1.jpg: DecompressionBomb (simulated DecompressionBomb); "
        "[3] img-3.jpg: DecompressionBomb (simulated DecompressionBomb)"
    )
    failed = one(wait_described(jobs, "broken", "Failed"), "Failed")
    assert failed.type == "Warning"
    assert failed.message.startswith("2 of 2 items failed (2 DecompressionBomb); first: [0]")


def test_an_invalid_spec_shows_as_a_warning_with_its_reason(
    controller: ProcessRecord, jobs: Any
) -> None:
    manifest = jobs.manifest("invalid", 2)
    # The apiserver takes an unassigned code point; the contracts do not.
    manifest["spec"]["items"][1]["asset"] = "a\u0378.jpg"
    jobs.api.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, jobs.namespace, crd.PLURAL, manifest
    )
    jobs.wait_phase("invalid", crd.Phase.FAILED)
    shown = wait_described(jobs, "invalid", "InvalidSpec")
    invalid = one(shown, "InvalidSpec")
    assert invalid.type == "Warning"
    assert invalid.message.startswith("spec.items[1]: asset: ")
    assert "unassigned" in invalid.message
    assert "Dispatched" not in {e.reason for e in shown}


def test_deleting_a_running_job_leaves_a_cancelled_event(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    def outcome(work: WorkItem) -> str | None:
        return None if work.index == 0 else "hold"

    async def scenario() -> str:
        async with streams.processing(outcome) as processor:
            body = await asyncio.to_thread(jobs.create, "doomed", 3)
            await asyncio.to_thread(jobs.wait_phase, "doomed", crd.Phase.PROCESSING)
            await streams.wait_for_async("two items held", lambda: len(processor.held) >= 2)
        await asyncio.to_thread(jobs.delete, "doomed")
        return str(body["metadata"]["uid"])

    uid = run(scenario())

    def events_of_the_job() -> list[dict[str, Any]]:
        # The job is gone by now, so `describe` cannot show it; its Events stay.
        listed = jobs.kubectl(
            "get", "events", "-n", jobs.namespace, "-o", "json",
            "--field-selector", f"involvedObject.uid={uid}",
        )  # fmt: skip
        return list(json.loads(listed)["items"])

    found = wait_for(
        "a Cancelled event",
        lambda: [e for e in events_of_the_job() if e["reason"] == "Cancelled"],
        30,
    )
    (cancelled,) = found
    assert cancelled["type"] == "Normal"
    assert cancelled["involvedObject"]["kind"] == crd.KIND
    assert cancelled["message"] == (
        "deleted before it finished: 1 of 3 items had finished; "
        "2 queued items withdrawn, the rest change no asset"
    )


def test_a_failing_dispatch_shows_one_warning_and_then_dispatched(
    api_proxy: Any, controllers: Any, jobs: Any
) -> None:
    """The apiserver refuses the job's status writes for a while: each retry fails the
    same way, which one DispatchFailed Warning says; kopf's own error Events stay on."""
    status_path = (
        f"/apis/{crd.GROUP}/{crd.VERSION}/namespaces/{jobs.namespace}/{crd.PLURAL}/stuck/status"
    )
    api_proxy.fail_with_503(lambda method, path: method == "PATCH" and path == status_path)
    controllers.start({"KUBECONFIG": api_proxy.kubeconfig})
    jobs.create("stuck", 2)
    shown = wait_described(jobs, "stuck", "DispatchFailed")
    failing = one(shown, "DispatchFailed")
    assert failing.type == "Warning"
    assert failing.message.startswith("queueing the work failed, retried every 3 s: (503)")
    # kopf's Event of its failed handler, and no info chatter of kopf's.
    wait_for(
        "kopf's own error event",
        lambda: any(e.type == "Error" for e in described(jobs, "stuck")),
        30,
    )
    api_proxy.recover()
    jobs.wait_phase("stuck", crd.Phase.QUEUED)
    shown = wait_described(jobs, "stuck", "Dispatched")
    assert [e.reason for e in shown].count("DispatchFailed") == 1
    assert {e.type for e in shown} <= {"Normal", "Warning", "Error"}


# -- The Event bodies (pure) ------------------------------------------------------------

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?", fullmatch=True)


@given(
    st.lists(LABEL, min_size=1, max_size=12).map(".".join).filter(lambda n: len(n) <= 253),
    st.integers(min_value=0, max_value=10**9),
)
def test_event_names_are_valid_and_sort_in_time_order(job_name: str, micros: int) -> None:
    job = JobRef(namespace="ns", name=job_name, uid="u")
    event = events.JobEvent(events.Reason.DISPATCHED, "x" * 5000)
    first = datetime(2026, 1, 2, tzinfo=UTC) + timedelta(microseconds=micros)
    names = [
        events.event_body(job, event, "i", moment)["metadata"]["name"]
        for moment in (first, first + timedelta(microseconds=1))
    ]
    assert names == sorted(names) and names[0] != names[1]
    for name in names:
        assert len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name), name
    body = events.event_body(job, event, "i", first)
    assert len(body["message"]) == events.MESSAGE_MAX
