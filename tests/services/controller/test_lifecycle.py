"""A job's life beyond the happy path: a controller crash mid-dispatch, TTL, cancelling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from emulsion_contracts import crd, keys, wire
from emulsion_contracts.messages import WorkItem
from emulsion_devstack.processes import ProcessRecord

HOLD_LABEL = "test.emulsion.dev/hold-status"
# Jobs of up to 50 items are interactive: published whole at dispatch, before the status
# write (a bulk job's items go out only after it, through the feeder: test_feeder.py).
WHOLE = {"EMULSION_INTERACTIVE_MAX_ITEMS": "50"}


def _upload_id(source: str) -> str:
    """The upload id a staging key holds: what the controller's lease is keyed on."""
    parsed = keys.parse_key(source)
    assert parsed is not None and parsed.upload_id is not None
    return parsed.upload_id


@pytest.fixture
def status_hold(jobs: Any) -> Iterator[str]:
    """An admission policy refusing to record any phase on jobs labelled HOLD_LABEL.

    It makes "published, then crashed before the status patch" deterministic: the
    controller's patch after publishing is denied, so it is still owed when we kill it.
    """
    name = f"hold-status-{jobs.namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [crd.GROUP],
                        "apiVersions": [crd.VERSION],
                        "operations": ["UPDATE"],
                        "resources": [f"{crd.PLURAL}/status"],
                    }
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.status) || !has(object.status.phase)",
                    "message": "held by the test: no phase may be recorded yet",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": jobs.namespace}
                },
                "objectSelector": {"matchLabels": {HOLD_LABEL: "true"}},
            },
        },
    }
    jobs.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy, binding]}),
    )
    try:
        yield HOLD_LABEL
    finally:
        jobs.kubectl(
            "delete",
            "--ignore-not-found",
            f"validatingadmissionpolicybinding/{name}",
            f"validatingadmissionpolicy/{name}",
        )


def status_write_denied(jobs: Any, name: str) -> bool:
    """Whether a dry-run status patch recording a phase is refused (the policy is active)."""
    try:
        jobs.api.patch_namespaced_custom_object_status(
            crd.GROUP,
            crd.VERSION,
            jobs.namespace,
            crd.PLURAL,
            name,
            {"status": {"phase": str(crd.Phase.QUEUED)}},
            dry_run="All",
        )
    except ApiException as error:
        if error.status in (403, 422):
            return True
        raise
    return False


def test_a_controller_killed_between_publishing_and_recording_duplicates_nothing(
    controllers: Any, jobs: Any, streams: Any, status_hold: str, run: Any
) -> None:
    items = 50
    manifest = jobs.manifest("crash", items, version=False)
    manifest["metadata"]["labels"] = {status_hold: "true"}
    jobs.api.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, jobs.namespace, crd.PLURAL, manifest
    )
    streams.wait_for("the policy to hold", lambda: status_write_denied(jobs, "crash"))

    first = controllers.start(WHOLE)

    def denied_status_writes() -> list[dict[str, Any]]:
        return [
            entry
            for entry in jobs.audit_status_writes("crash")
            if (entry.get("responseStatus") or {}).get("code", 200) >= 400
        ]

    async def queued_messages() -> list[Any]:
        async with streams.session() as js:
            return list(await streams.read_queue(js, jobs.namespace, "crash"))

    # Every item is published and the controller has tried (and failed) to record it.
    streams.wait_for("the controller's denied status patch", denied_status_writes)
    streams.wait_for(f"{items} work messages", lambda: len(run(queued_messages())) == items or None)
    before = run(queued_messages())
    status = jobs.status("crash")
    assert "phase" not in status
    version = status["version"]  # recorded before publishing, so a restart reuses it
    controllers.kill(first)

    # The obstacle goes; a new controller resumes the unfinished dispatch.
    jobs.api.patch_namespaced_custom_object(
        crd.GROUP,
        crd.VERSION,
        jobs.namespace,
        crd.PLURAL,
        "crash",
        {"metadata": {"labels": {status_hold: None}}},
    )
    controllers.start(WHOLE)
    status = jobs.wait_phase("crash", crd.Phase.QUEUED, timeout=60)
    assert status["version"] == version
    after = run(queued_messages())
    # The stream deduplicated the second publication: the very same messages, once each.
    assert [m.seq for m in after] == [m.seq for m in before]
    assert [m.data for m in after] == [m.data for m in before]

    async def process() -> dict[str, Any]:
        async with streams.processing() as processor:
            done: dict[str, Any] = await asyncio.to_thread(
                jobs.wait_phase, "crash", crd.Phase.SUCCEEDED
            )
            uid = jobs.get("crash")["metadata"]["uid"]
            assert processor.processed == {(uid, index): 1 for index in range(items)}
            async with streams.session() as js:
                assert await streams.queued_on(js, jobs.namespace, "crash") == 0
            return done

    done = run(process())
    assert done["succeeded"] == items
    assert jobs.outcomes("crash").succeeded == f"0-{items - 1}"


def test_a_finished_job_is_deleted_after_its_ttl(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    async def scenario() -> None:
        async with streams.processing():
            for name, ttl in (("short", 1), ("long", 3600), ("forever", None)):
                await asyncio.to_thread(jobs.create, name, 2, ttl=ttl)
            for name in ("short", "long", "forever"):
                await asyncio.to_thread(jobs.wait_phase, name, crd.Phase.SUCCEEDED)

    run(scenario())
    streams.wait_for("the short-lived job to be deleted", lambda: jobs.get("short") is None, 30)
    # The sweep that deleted it has seen the others too, and left them alone.
    assert jobs.get("long") is not None
    assert jobs.get("forever") is not None


# The API creates jobs with the controller's finalizer in place (one write fewer per
# job); jobs created by hand get it from kopf. Both must be cancelled on deletion.
@pytest.mark.parametrize(
    "finalizer", [True, False], ids=["created-with-finalizer", "added-by-kopf"]
)
def test_deleting_a_running_job_cancels_its_remaining_items(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any, finalizer: bool
) -> None:
    items, finished = 6, 2

    def outcome(work: WorkItem) -> str | None:
        return None if work.index < finished else "hold"

    async def scenario() -> tuple[str, str]:
        async with streams.processing(outcome) as processor:
            body = await asyncio.to_thread(jobs.create, "doomed", items, finalizer=finalizer)
            status = await asyncio.to_thread(
                jobs.wait_phase, "doomed", crd.Phase.PROCESSING, timeout=60
            )
            # Before the deletion the controller writes only the status, unless it had
            # to add its finalizer itself.
            metadata_writes = await asyncio.to_thread(jobs.audit_writes, "doomed", None)
            assert len(metadata_writes) == (0 if finalizer else 1)
            await streams.wait_for_async(
                "the other items to be held", lambda: len(processor.held) >= items - finished
            )
            assert status["progress"] in {f"{n}/{items}" for n in range(1, finished + 1)}
        async with streams.session() as js:
            assert await streams.queued_on(js, jobs.namespace, "doomed") == items - finished
        await asyncio.to_thread(jobs.delete, "doomed")
        await streams.wait_for_async("the job to be gone", lambda: jobs.get("doomed") is None)
        return str(body["metadata"]["uid"]), str(body["spec"]["items"][0]["source"])

    uid, source = run(scenario())

    async def after() -> tuple[int, bytes, bool]:
        async with streams.session() as js:
            queued = await streams.queued_on(js, jobs.namespace, "doomed")
            cancelled = await js.key_value(wire.CANCELLED_BUCKET)
            mark = (await cancelled.get(uid)).value or b""
            leases = await js.key_value(wire.STAGING_LEASES_BUCKET)
            try:
                await leases.get(wire.staging_lease_key(_upload_id(source), uid))
            except (KeyNotFoundError, KeyDeletedError):
                released = True
            else:
                released = False
            return queued, mark, released

    queued, mark, released = run(after())
    assert queued == 0  # the remaining items were purged from the work queue
    assert mark  # processors holding one of them now skip it
    assert released  # the janitor may sweep its staging uploads again


def test_deleting_a_finished_job_cancels_nothing(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    async def scenario() -> str:
        async with streams.processing():
            body = await asyncio.to_thread(jobs.create, "complete", 2)
            await asyncio.to_thread(jobs.wait_phase, "complete", crd.Phase.SUCCEEDED)
        await asyncio.to_thread(jobs.delete, "complete")
        await streams.wait_for_async("the job to be gone", lambda: jobs.get("complete") is None)
        return str(body["metadata"]["uid"])

    uid = run(scenario())

    assert not run(marked(streams, uid))


def test_annotating_a_running_job_cancelled_marks_it_and_keeps_its_work(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    """A cancel asked through its annotation (the API's DELETE): the job is marked for the
    processors, which end each remaining item as Cancelled; its queued work is left, so
    every item still gets a result; the job is kept."""
    items, finished = 5, 1

    def outcome(work: WorkItem) -> str | None:
        return None if work.index < finished else "hold"

    async def scenario() -> str:
        async with streams.processing(outcome) as processor:
            body = await asyncio.to_thread(jobs.create, "annotated", items)
            await asyncio.to_thread(jobs.wait_phase, "annotated", crd.Phase.PROCESSING)
            await streams.wait_for_async(
                "the other items to be held", lambda: len(processor.held) >= items - finished
            )
        await asyncio.to_thread(
            jobs.api.patch_namespaced_custom_object,
            crd.GROUP,
            crd.VERSION,
            jobs.namespace,
            crd.PLURAL,
            "annotated",
            {"metadata": {"annotations": {crd.ANNOTATION_CANCELLED: "2026-12-07T14:00:00Z"}}},
        )
        return str(body["metadata"]["uid"])

    uid = run(scenario())

    streams.wait_for("the job to be marked cancelled", lambda: run(marked(streams, uid)), 30)

    async def queued() -> int:
        async with streams.session() as js:
            return int(await streams.queued_on(js, jobs.namespace, "annotated"))

    assert run(queued()) == items - finished  # not purged: each still gets its result
    assert jobs.get("annotated") is not None


async def marked(streams: Any, uid: str) -> bool:
    """Whether the job `uid` is marked cancelled for the processors."""
    async with streams.session() as js:
        cancelled = await js.key_value(wire.CANCELLED_BUCKET)
        try:
            await cancelled.get(uid)
        except (KeyNotFoundError, KeyDeletedError):
            return False
        return True
