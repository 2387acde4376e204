"""`DELETE /v1/ingests/{name}` (cancel) and `POST /v1/ingests/{name}/retry`, through the
API on the real stack: what each answers and writes, their repeats, and the tenancy
boundary.

No controller runs here: a cancel is seen as the annotation the controller honours, and a
finished job's failures are written as the controller records them (as in
test_job_records.py). The whole pipeline's cancel and retry, with the fault oracle, is in
tests/clients/cli/test_cancel_and_retry.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from emulsion_contracts import crd
from emulsion_contracts.jobrecords import FailureDetail, OutcomeRecord
from emulsion_devstack.stack import Endpoints
from emulsion_runtime.records_store import JobRecords

from ..conftest import (
    NAMESPACE,
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    TENANT_B_TOKEN,
    ApiProcess,
    get_job,
    list_jobs,
    new_collection,
    patch_status,
)
from .test_job_records import _same_as_unknown, controller_writes

Stage = Callable[..., list[str]]
UNKNOWN = "01unknownjob00000"


def ingest(api: httpx.Client, stage: Stage, collection: str, count: int) -> tuple[str, list[str]]:
    staged = stage(count, collection)
    body = {
        "collection": collection,
        "items": [{"upload_key": key, "asset": f"p{i}.jpg"} for i, key in enumerate(staged)],
    }
    answer = api.post("/v1/ingests", json=body, headers={"Idempotency-Key": collection})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["name"]), staged


def finish(
    custom: Any, stack: Endpoints, name: str, count: int, failures: dict[int, tuple[str, int]]
) -> None:
    """End the job as the controller would: `failures` maps an index to (reason,
    attempts); every other item succeeded."""
    uid = get_job(custom, name)["metadata"]["uid"]
    succeeded = [i for i in range(count) if i not in failures]
    reasons: dict[str, list[int]] = {}
    for index, (reason, _) in sorted(failures.items()):
        reasons.setdefault(reason, []).append(index)

    def listed(indexes: list[int]) -> str:
        return ",".join(map(str, indexes))

    async def write(records: JobRecords) -> None:
        outcomes = OutcomeRecord(
            uid=uid,
            total=count,
            succeeded=listed(succeeded),
            failed=listed(sorted(failures)),
            reasons={reason: listed(found) for reason, found in reasons.items()},
        )
        await records.write_outcomes(NAMESPACE, name, outcomes, None)
        for index, (reason, attempts) in failures.items():
            detail = FailureDetail(
                uid=uid,
                index=index,
                asset=f"p{index}.jpg",
                reason=reason,
                message="x",
                attempts=attempts,
            )
            await records.put_failure(NAMESPACE, name, detail)

    controller_writes(stack, write)
    patch_status(
        custom,
        name,
        {
            "phase": "PartiallyFailed" if succeeded else "Failed",
            "total": count,
            "succeeded": len(succeeded),
            "failed": len(failures),
            "progress": f"{count}/{count}",
            "failureReasons": [
                {"reason": reason, "count": len(found), "indexes": listed(found)}
                for reason, found in reasons.items()
            ],
        },
    )


def test_a_cancel_marks_the_job_keeps_it_and_repeats_change_nothing(
    api: httpx.Client, custom: Any, stage: Stage
) -> None:
    name, _ = ingest(api, stage, new_collection(), 3)

    first = api.delete(f"/v1/ingests/{name}")

    assert first.status_code == 202, first.text
    body = first.json()
    assert body["name"] == name and body["cancelled_at"]
    assert (body["finished"], body["succeeded"], body["failed"]) == (False, 0, 0)
    assert (body["cancelled"], body["stopping"], body["total"]) == (0, 3, 3)
    job = get_job(custom, name)  # kept, with the mark the controller honours
    assert job["metadata"]["annotations"][crd.ANNOTATION_CANCELLED] == body["cancelled_at"]
    again = api.delete(f"/v1/ingests/{name}")
    assert (again.status_code, again.json()) == (202, body)
    status = api.get(f"/v1/ingests/{name}").json()
    assert status["cancelled_at"] == body["cancelled_at"]


def test_a_cancelled_job_that_finished_answers_its_final_counts(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    name, _ = ingest(api, stage, new_collection(), 4)
    asked = api.delete(f"/v1/ingests/{name}").json()
    finish(custom, stack, name, 4, {2: ("Cancelled", 1), 3: ("Cancelled", 1)})

    final = api.delete(f"/v1/ingests/{name}")

    assert final.status_code == 200
    body = final.json()
    assert body["cancelled_at"] == asked["cancelled_at"]
    assert (body["finished"], body["succeeded"], body["failed"]) == (True, 2, 0)
    assert (body["cancelled"], body["stopping"]) == (2, 0)
    assert api.get(f"/v1/ingests/{name}").json()["cancelled"] == 2


def test_cancelling_a_finished_job_changes_nothing(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    name, _ = ingest(api, stage, new_collection(), 2)
    finish(custom, stack, name, 2, {})

    answer = api.delete(f"/v1/ingests/{name}")

    assert answer.status_code == 200
    assert answer.json()["cancelled_at"] is None
    assert crd.ANNOTATION_CANCELLED not in (get_job(custom, name)["metadata"]["annotations"] or {})


def test_a_retry_reruns_only_retryable_failures_whose_uploads_exist(
    api: httpx.Client, custom: Any, s3: Any, stack: Endpoints, stage: Stage
) -> None:
    collection = new_collection()
    name, staged = ingest(api, stage, collection, 6)
    failures = {
        1: ("RetriesExhausted", 3),
        2: ("Cancelled", 1),
        3: ("NotAnImage", 1),
        4: ("ResultLost", 4),
        5: ("RetriesExhausted", 2),
    }
    finish(custom, stack, name, 6, failures)
    s3.delete_object(Bucket=stack.bucket, Key=staged[5])  # its upload is gone

    answer = api.post(f"/v1/ingests/{name}/retry")

    assert answer.status_code == 202, answer.text
    body = answer.json()
    retry = body["name"]
    assert answer.headers["Location"] == body["status_url"] == f"/v1/ingests/{retry}"
    assert [(i["original_index"], i["upload_key"], i["attempts"]) for i in body["items"]] == [
        (1, staged[1], 3),
        (2, staged[2], 1),
        (4, staged[4], 4),
    ]
    assert [(s["index"], s["skipped"]) for s in body["skipped"]] == [
        (3, "deterministic"),
        (5, "upload_gone"),
    ]
    job = get_job(custom, retry)
    assert job["metadata"]["labels"][crd.LABEL_RETRY_OF] == name
    assert job["spec"]["collection"] == collection
    status = api.get(f"/v1/ingests/{retry}").json()
    assert status["retry_of"] == name
    assert [item["asset"] for item in status["items"]] == ["p1.jpg", "p2.jpg", "p4.jpg"]
    # Attempts are shown with each failure, and in the item's status.
    page = api.get(f"/v1/ingests/{name}/failures").json()["items"]
    assert [(f["index"], f["attempts"]) for f in page] == [(1, 3), (2, 1), (3, 1), (4, 4), (5, 2)]
    shown = api.get(f"/v1/ingests/{name}", params={"urls": "false", "item_offset": 1}).json()
    assert [(i["index"], i["state"], i["attempts"]) for i in shown["items"]] == [
        (1, "failed", 3),
        (2, "failed", 1),
        (3, "failed", 1),
        (4, "failed", 4),
        (5, "failed", 2),
    ]
    assert api.get(f"/v1/ingests/{name}").json()["items"][0]["attempts"] is None

    repeat = api.post(f"/v1/ingests/{name}/retry")

    assert repeat.status_code == 202
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert repeat.json() == body
    assert len(list_jobs(custom, f"{crd.LABEL_RETRY_OF}={name}")) == 1


def test_deterministic_failures_are_retried_only_when_asked(
    api: httpx.Client, custom: Any, stack: Endpoints, stage: Stage
) -> None:
    name, staged = ingest(api, stage, new_collection(), 2)
    finish(custom, stack, name, 2, {0: ("NotAnImage", 1)})

    nothing = api.post(f"/v1/ingests/{name}/retry", json={})

    assert nothing.status_code == 200
    assert nothing.json()["name"] is None
    assert [s["skipped"] for s in nothing.json()["skipped"]] == ["deterministic"]

    asked = api.post(f"/v1/ingests/{name}/retry", json={"include_deterministic": True})

    assert asked.status_code == 202
    assert [i["upload_key"] for i in asked.json()["items"]] == [staged[0]]


def test_a_running_job_is_not_retried(api: httpx.Client, stage: Stage) -> None:
    name, _ = ingest(api, stage, new_collection(), 1)

    answer = api.post(f"/v1/ingests/{name}/retry")

    assert (answer.status_code, answer.json()["code"]) == (409, "ingest_running")


@pytest.mark.parametrize(("method", "path"), [("DELETE", ""), ("POST", "/retry")])
def test_another_tenant_and_no_token_learn_nothing_and_change_nothing(
    api_process: ApiProcess,
    api: httpx.Client,
    custom: Any,
    stack: Endpoints,
    stage: Stage,
    method: str,
    path: str,
) -> None:
    collection = f"{TENANT_A_PREFIX}{new_collection()}"
    name, _ = ingest(api, stage, collection, 2)
    if path:
        finish(custom, stack, name, 2, {0: ("RetriesExhausted", 2)})
    with (
        api_process.client(TENANT_A_TOKEN) as owner,
        api_process.client(TENANT_B_TOKEN) as other,
        httpx.Client(base_url=api_process.url, timeout=60) as anonymous,
    ):
        unknown = other.request(method, f"/v1/ingests/{UNKNOWN}{path}")
        _same_as_unknown(other.request(method, f"/v1/ingests/{name}{path}"), unknown, name)
        refused = anonymous.request(method, f"/v1/ingests/{name}{path}")
        assert (refused.status_code, refused.json()["code"]) == (401, "unauthorized")
        assert (
            refused.json()["detail"]
            == anonymous.request(method, f"/v1/ingests/{UNKNOWN}{path}").json()["detail"]
        )
        # Neither changed anything.
        annotations = get_job(custom, name)["metadata"].get("annotations") or {}
        assert crd.ANNOTATION_CANCELLED not in annotations
        assert list_jobs(custom, f"{crd.LABEL_RETRY_OF}={name}") == []
        assert owner.request(method, f"/v1/ingests/{name}{path}").status_code == 202
