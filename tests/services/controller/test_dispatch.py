"""Dispatch against the real apiserver and NATS: a job's items become work messages."""

from __future__ import annotations

import json
import re
from typing import Any

from emulsion_contracts import crd, keys, wire
from emulsion_contracts.messages import WorkItem
from emulsion_devstack.processes import ProcessRecord

TRACEPARENT = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}$")


def _upload_id(source: str) -> str:
    """The upload id a staging key holds: what the controller's lease is keyed on."""
    parsed = keys.parse_key(source)
    assert parsed is not None and parsed.upload_id is not None
    return parsed.upload_id


def test_a_job_made_with_kubectl_gets_one_message_per_item(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    manifest = jobs.manifest("from-kubectl", 5, version=False)
    jobs.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    status = jobs.wait_phase("from-kubectl", crd.Phase.QUEUED)
    body = jobs.get("from-kubectl")
    uid = body["metadata"]["uid"]

    # Without spec.version the controller picked one and recorded it.
    version = status["version"]
    assert re.fullmatch(keys.ULID_PATTERN, version)
    assert status["total"] == 5
    assert status["progress"] == "0/5"
    dispatched = {c["type"]: c for c in status["conditions"]}[crd.ConditionType.DISPATCHED]
    assert dispatched["status"] == "True"
    assert dispatched["observedGeneration"] == body["metadata"]["generation"]

    async def queued() -> tuple[list[Any], list[bytes | None]]:
        async with streams.session() as js:
            messages = await streams.read_queue(js, jobs.namespace, "from-kubectl")
            leases = await js.key_value(wire.STAGING_LEASES_BUCKET)
            upload = _upload_id(body["spec"]["items"][0]["source"])
            lease = await leases.get(wire.staging_lease_key(upload, uid))
            return messages, [lease.value]

    messages, lease_values = run(queued())
    assert len(messages) == 5
    for index, msg in enumerate(messages):
        work = WorkItem.model_validate_json(msg.data)
        assert work.index == index
        assert work.job.uid == uid
        assert work.version == keys.version_id(version, index)
        assert work.source == body["spec"]["items"][index]["source"]
        assert msg.headers[wire.HEADER_MSG_ID] == wire.work_msg_id(uid, index)
        assert TRACEPARENT.match(msg.headers["traceparent"])
    assert lease_values == [uid.encode()]
    # Five items: a small job, in the interactive lane.
    assert {msg.subject for msg in messages} == {
        wire.work_subject(jobs.namespace, "from-kubectl", wire.Lane.INTERACTIVE)
    }


def test_a_job_goes_to_the_lane_it_asks_for_else_by_its_size(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    """Up to EMULSION_INTERACTIVE_MAX_ITEMS (20) items: interactive; more: bulk; a job's
    spec.priority overrides its size either way."""
    cases = {
        "lane-small": (20, None, wire.Lane.INTERACTIVE),
        "lane-large": (21, None, wire.Lane.BULK),
        "lane-small-bulk": (1, "bulk", wire.Lane.BULK),
        "lane-large-interactive": (21, "interactive", wire.Lane.INTERACTIVE),
    }
    for name, (items, priority, _) in cases.items():
        manifest = jobs.manifest(name, items)
        if priority is not None:
            manifest["spec"]["priority"] = priority
        jobs.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    for name in cases:
        jobs.wait_phase(name, crd.Phase.QUEUED)

    async def subjects(name: str) -> list[str]:
        async with streams.session() as js:
            return [msg.subject for msg in await streams.read_queue(js, jobs.namespace, name)]

    for name, (items, _, lane) in cases.items():
        assert run(subjects(name)) == [wire.work_subject(jobs.namespace, name, lane)] * items


def test_work_messages_continue_the_trace_in_the_job_annotation(
    controller: ProcessRecord, jobs: Any, streams: Any, run: Any
) -> None:
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    manifest = jobs.manifest("traced", 2)
    manifest["metadata"]["annotations"] = {
        crd.ANNOTATION_TRACEPARENT: f"00-{trace_id}-{parent_span}-01"
    }
    jobs.api.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, jobs.namespace, crd.PLURAL, manifest
    )
    jobs.wait_phase("traced", crd.Phase.QUEUED)

    async def queued() -> list[Any]:
        async with streams.session() as js:
            return list(await streams.read_queue(js, jobs.namespace, "traced"))

    headers = [TRACEPARENT.match(msg.headers["traceparent"]) for msg in run(queued())]
    assert len(headers) == 2
    for match in headers:
        assert match is not None
        assert match["trace"] == trace_id  # the API's trace goes on
        assert match["span"] != parent_span  # under the controller's dispatch span


def test_an_invalid_job_is_failed_with_its_reason_and_forgotten(
    stack: Any, kube: Any, jobs: Any, streams: Any, run: Any
) -> None:
    """A spec the apiserver took but no work message can carry (here: an asset name the
    contracts refuse, as the controller sees it) fails the job for good, with the reason,
    and the controller keeps nothing of it."""
    import pytest

    from emulsion_contracts.ingestjob import InvalidSpec
    from emulsion_controller.apiserver import Kube
    from emulsion_controller.dispatch import dispatch
    from emulsion_controller.jetstream import Bus
    from emulsion_controller.status_writer import StatusWriter

    body = jobs.create("invalid", 3)
    body["spec"]["items"][1]["asset"] = "../escape"
    uid = body["metadata"]["uid"]

    async def scenario() -> tuple[bool, int]:
        bus = await Bus.connect(stack.nats_settings("controller"), stack.work_signing_key())
        client = Kube(kube.configuration, 2)
        writer = StatusWriter(client, bus, 1.0)
        try:
            with pytest.raises(InvalidSpec, match=r"spec\.items\[1\]"):
                await dispatch(body, bus, writer)
            tracked = writer.progress_of(uid) is not None
            queued = await streams.queued_on(bus.js, jobs.namespace, "invalid")
        finally:
            await writer.close()
            await bus.close()
            await client.close()
        return tracked, queued

    tracked, queued = run(scenario())
    assert not tracked  # its tracker is freed
    assert queued == 0  # no item of it was published
    status = jobs.status("invalid")
    assert status["phase"] == crd.Phase.FAILED
    assert status["completedAt"]
    found = {c["type"]: c for c in status["conditions"]}
    assert found[crd.ConditionType.FAILED]["status"] == "True"
    assert found[crd.ConditionType.FAILED]["reason"] == "InvalidSpec"
    assert "spec.items[1]" in found[crd.ConditionType.FAILED]["message"]
    assert found[crd.ConditionType.COMPLETE]["status"] == "False"
    assert crd.ConditionType.DISPATCHED not in found
