"""What an ingest keeps outside etcd, as the API serves it: items from the stored
list, per-item outcomes from the outcomes record, every failure at /failures, and 410 Gone
with what is still known once the job's TTL removed it — to its tenant only.

No controller runs here: the test writes the records as the controller's NATS identity
would (emulsion_contracts.jobrecords), patches the status as it would, and deletes the job
as its TTL would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emulsion_contracts import crd, natsauth, wire
from emulsion_contracts.jobrecords import FailureDetail, JobSummaryRecord, OutcomeRecord
from emulsion_devstack.stack import Endpoints
from emulsion_runtime.records_store import JobRecords

from ..conftest import (
    NAMESPACE,
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    TENANT_B_TOKEN,
    ApiProcess,
    get_job,
    new_collection,
    patch_status,
)

Stage = Callable[..., list[str]]


def controller_writes(stack: Endpoints, write: Callable[[JobRecords], Any]) -> None:
    """Run `write` on the records bucket as the controller's identity."""

    async def scenario() -> None:
        connection = await stack.nats_connect(natsauth.CONTROLLER_IDENTITY)
        try:
            kv = await connection.jetstream().key_value(wire.RECORDS_BUCKET)
            await write(JobRecords(kv))
        finally:
            await connection.drain()

    asyncio.run(scenario())


def expire(custom: Any, name: str) -> None:
    """What the TTL does: the finalizer gone (no controller here), the job deleted."""
    custom.patch_namespaced_custom_object(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name, {"metadata": {"finalizers": None}}
    )
    custom.delete_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name)


def finished_with_failures(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage, collection: str, count: int
) -> tuple[str, str]:
    """An ingest of `count` items whose odd items failed, recorded as the controller
    records it (outcomes, one failure each, the summary) with a compact status."""
    staged = stage(count, collection)
    body = {
        "collection": collection,
        "items": [{"upload_key": key, "asset": f"p<{i}>.jpg"} for i, key in enumerate(staged)],
    }
    answer = api.post("/v1/ingests", json=body, headers={"Idempotency-Key": collection})
    assert answer.status_code == 202, answer.text
    name = answer.json()["name"]
    uid = get_job(custom, name)["metadata"]["uid"]
    even = ",".join(str(i) for i in range(0, count, 2))
    odd = ",".join(str(i) for i in range(1, count, 2))

    async def write(records: JobRecords) -> None:
        outcomes = OutcomeRecord(
            uid=uid, total=count, succeeded=even, failed=odd, reasons={"NotAnImage": odd}
        )
        await records.write_outcomes(NAMESPACE, name, outcomes, None)
        for index in range(1, count, 2):
            await records.put_failure(
                NAMESPACE,
                name,
                FailureDetail(
                    uid=uid,
                    index=index,
                    asset=f"p<{index}>.jpg",
                    reason="NotAnImage",
                    message=f"item {index}: " + "x" * 900,
                ),
            )
        await records.put_summary(
            NAMESPACE,
            name,
            JobSummaryRecord(
                uid=uid,
                collection=collection,
                phase="PartiallyFailed",
                total=count,
                succeeded=len(range(0, count, 2)),
                failed=len(range(1, count, 2)),
                version=get_job(custom, name)["spec"]["version"],
                reasons={"NotAnImage": len(range(1, count, 2))},
            ),
        )

    controller_writes(stack, write)
    patch_status(
        custom,
        name,
        {
            "phase": "PartiallyFailed",
            "total": count,
            "succeeded": len(range(0, count, 2)),
            "failed": len(range(1, count, 2)),
            "progress": f"{count}/{count}",
            "failures": [{"index": 1, "asset": "p<1>.jpg", "reason": "NotAnImage"}],
            "failureReasons": [{"reason": "NotAnImage", "count": len(range(1, count, 2))}],
        },
    )
    return name, uid


def test_items_and_their_states_come_from_the_stored_list_and_the_outcomes_record(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    name, _ = finished_with_failures(api, custom, stack, stage, collection, 7)

    body = api.get(f"/v1/ingests/{name}", params={"urls": "false", "item_offset": 2}).json()

    # No index ranges in the status: every state and reason is the outcomes record's.
    assert "succeededIndexes" not in get_job(custom, name)["status"]
    assert [(i["index"], i["asset"], i["state"], i["reason"]) for i in body["items"]] == [
        (2, "p<2>.jpg", "succeeded", None),
        (3, "p<3>.jpg", "failed", "NotAnImage"),
        (4, "p<4>.jpg", "succeeded", None),
        (5, "p<5>.jpg", "failed", "NotAnImage"),
        (6, "p<6>.jpg", "succeeded", None),
    ]
    assert (body["total"], body["succeeded"], body["failed"]) == (7, 4, 3)


def test_the_replay_of_an_idempotent_request_reads_its_items_back(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    staged = stage(3, collection)
    body = {"collection": collection, "items": [{"upload_key": key} for key in staged]}
    first = api.post("/v1/ingests", json=body, headers={"Idempotency-Key": collection})
    again = api.post("/v1/ingests", json=body, headers={"Idempotency-Key": collection})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_failures_page_in_index_order_with_whole_messages(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    name, _ = finished_with_failures(api, custom, stack, stage, collection, 11)

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        answer = api.get(f"/v1/ingests/{name}/failures", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages.append([item["index"] for item in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == [[1, 3], [5, 7], [9]]
    whole = api.get(f"/v1/ingests/{name}/failures", params={"limit": 500}).json()
    assert whole["items"][0] == {
        "index": 1,
        "asset": "p<1>.jpg",
        "reason": "NotAnImage",
        "message": "item 1: " + "x" * 900,
        "attempts": None,  # not recorded here
    }
    for bad in ({"limit": 501}, {"limit": 0}, {"cursor": "-1"}, {"cursor": "x"}):
        refused = api.get(f"/v1/ingests/{name}/failures", params=bad)
        assert (refused.status_code, refused.json()["code"]) == (422, "invalid_request"), bad


def test_an_expired_ingest_answers_410_with_its_summary_and_the_assets_it_made(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    name, _ = finished_with_failures(api, custom, stack, stage, collection, 5)
    expire(custom, name)

    gone = api.get(f"/v1/ingests/{name}")

    assert gone.status_code == 410, gone.text
    assert gone.headers["content-type"] == "application/problem+json"
    problem = gone.json()
    assert problem["code"] == "ingest_expired"
    ingest = problem["ingest"]
    assert (ingest["name"], ingest["collection"], ingest["phase"]) == (
        name,
        collection,
        "PartiallyFailed",
    )
    assert (ingest["total"], ingest["succeeded"], ingest["failed"]) == (5, 3, 2)
    assert ingest["reasons"] == {"NotAnImage": 2}
    assert ingest["failures_url"] == f"/v1/ingests/{name}/failures"
    assert ingest["assets_total"] == 3
    assert ingest["assets"] == [
        {"index": 0, "asset": "p<0>.jpg"},
        {"index": 2, "asset": "p<2>.jpg"},
        {"index": 4, "asset": "p<4>.jpg"},
    ]
    # Paged like items.
    page = api.get(f"/v1/ingests/{name}", params={"item_offset": 1, "item_limit": 1}).json()
    assert (page["ingest"]["asset_offset"], page["ingest"]["assets"]) == (
        1,
        [{"index": 2, "asset": "p<2>.jpg"}],
    )
    # The event stream and the long poll answer alike, before any stream starts.
    assert api.get(f"/v1/ingests/{name}/events").status_code == 410
    assert api.get(f"/v1/ingests/{name}", params={"wait": 5}).status_code == 410
    # Its failures are still listed, while the records are kept.
    failures = api.get(f"/v1/ingests/{name}/failures").json()
    assert [item["index"] for item in failures["items"]] == [1, 3]


def test_a_job_removed_before_its_summary_is_410_from_its_item_list(
    api: httpx.Client, custom: Any, stage: Stage
) -> None:
    collection = new_collection()
    staged = stage(2, collection)
    answer = api.post(
        "/v1/ingests",
        json={"collection": collection, "items": [{"upload_key": key} for key in staged]},
        headers={"Idempotency-Key": collection},
    )
    name = answer.json()["name"]
    expire(custom, name)

    gone = api.get(f"/v1/ingests/{name}")

    assert gone.status_code == 410, gone.text
    ingest = gone.json()["ingest"]
    assert (ingest["collection"], ingest["phase"], ingest["total"]) == (collection, None, 2)
    assert ingest["assets"] == []


def _same_as_unknown(answer: httpx.Response, unknown: httpx.Response, name: str) -> None:
    """Status, code, title and detail of an unknown name: nothing else to learn."""
    assert answer.status_code == unknown.status_code == 404
    mine, theirs = answer.json(), unknown.json()
    for problem in (mine, theirs):
        problem.pop("trace_id", None)
        problem.pop("instance", None)
    assert mine == {**theirs, "detail": theirs["detail"].replace("01unknownjob00000", name)}


@pytest.mark.parametrize("path", ["", "/failures", "/events"])
def test_another_tenant_learns_nothing_of_an_ingest_live_or_expired(
    api_process: ApiProcess,
    api: httpx.Client,
    custom: Any,
    stack: Endpoints,
    stage: Stage,
    path: str,
) -> None:
    collection = f"{TENANT_A_PREFIX}{new_collection()}"
    name, _ = finished_with_failures(api, custom, stack, stage, collection, 3)
    with (
        api_process.client(TENANT_A_TOKEN) as owner,
        api_process.client(TENANT_B_TOKEN) as other,
        httpx.Client(base_url=api_process.url, timeout=60) as anonymous,
    ):
        for expired in (False, True):
            if expired:
                expire(custom, name)
            unknown = other.get(f"/v1/ingests/01unknownjob00000{path}")
            _same_as_unknown(other.get(f"/v1/ingests/{name}{path}"), unknown, name)
            refused = anonymous.get(f"/v1/ingests/{name}{path}")
            assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
            assert (
                refused.json()["detail"]
                == anonymous.get(f"/v1/ingests/01unknownjob00000{path}").json()["detail"]
            )
            assert owner.get(f"/v1/ingests/{name}/failures").status_code == 200
        assert owner.get(f"/v1/ingests/{name}").status_code == 410


def test_an_unknown_name_is_404_as_before(api: httpx.Client) -> None:
    for path in ("", "/failures"):
        answer = api.get(f"/v1/ingests/01unknownjob00000{path}")
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
