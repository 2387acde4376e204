"""A request over `crd.MAX_ITEMS` items: split into IngestJobs of one batch, read as one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from emulsion_contracts import crd
from emulsion_contracts.jobrecords import FailureDetail
from emulsion_devstack.stack import Endpoints
from emulsion_runtime.records_store import JobRecords

from ..conftest import (
    TENANT_A_PREFIX,
    TENANT_A_TOKEN,
    TENANT_B_TOKEN,
    ApiProcess,
    ItemsOf,
    list_jobs,
    new_collection,
    patch_status,
)
from .test_job_records import controller_writes


def test_oversized_request_is_split_into_one_batch_and_aggregated(
    items_of: ItemsOf, api: httpx.Client, custom: Any, stage: Callable[..., list[str]]
) -> None:
    count = crd.MAX_ITEMS + 1
    collection = new_collection()
    staged = stage(count, collection)

    response = api.post(
        "/v1/ingests",
        json={"collection": collection, "items": [{"upload_key": key} for key in staged]},
    )

    assert response.status_code == 202, response.text
    body = response.json()
    batch = body["batch"]
    assert body["name"] == batch
    assert response.headers["Location"] == body["status_url"] == f"/v1/batches/{batch}"
    parts = sorted(
        list_jobs(custom, f"{crd.LABEL_BATCH}={batch}"), key=lambda j: j["spec"]["version"]
    )
    assert [p["metadata"]["name"] for p in parts] == body["jobs"]
    assert [len(items_of(p)) for p in parts] == [crd.MAX_ITEMS, 1]
    assert [item["source"] for p in parts for item in items_of(p)] == staged
    assert all(p["metadata"]["labels"][crd.LABEL_COLLECTION] == collection for p in parts)
    # Each request item says which job and which index inside it makes it.
    last = body["items"][-1]
    assert (last["index"], last["job"], last["job_index"]) == (
        crd.MAX_ITEMS,
        parts[1]["metadata"]["name"],
        0,
    )

    patch_status(
        custom, parts[0]["metadata"]["name"], {"phase": "Succeeded", "succeeded": crd.MAX_ITEMS}
    )
    patch_status(custom, parts[1]["metadata"]["name"], {"phase": "Processing"})
    running = api.get(f"/v1/batches/{batch}").json()
    assert (running["phase"], running["finished"], running["total"]) == ("Processing", False, count)
    assert running["progress"] == f"{crd.MAX_ITEMS}/{count}"

    patch_status(custom, parts[1]["metadata"]["name"], {"phase": "Failed", "failed": 1})
    done = api.get(f"/v1/batches/{batch}").json()
    assert (done["phase"], done["finished"], done["failed"]) == ("PartiallyFailed", True, 1)
    assert [job["name"] for job in done["jobs"]] == body["jobs"]


def test_a_batchs_failures_page_across_its_parts_for_its_tenant_alone(
    api_process: ApiProcess, custom: Any, stack: Endpoints, stage: Callable[..., list[str]]
) -> None:
    collection = f"{TENANT_A_PREFIX}{new_collection()}"
    staged = stage(crd.MAX_ITEMS + 2, collection)
    with api_process.client(TENANT_A_TOKEN) as owner:
        answer = owner.post(
            "/v1/ingests",
            json={"collection": collection, "items": [{"upload_key": key} for key in staged]},
        )
    assert answer.status_code == 202, answer.text
    batch = answer.json()["batch"]
    parts = sorted(
        list_jobs(custom, f"{crd.LABEL_BATCH}={batch}"), key=lambda j: j["spec"]["version"]
    )
    failed = {0: [5, 1999], 1: [0, 1]}

    async def write(records: JobRecords) -> None:
        for position, indexes in failed.items():
            meta = parts[position]["metadata"]
            for index in indexes:
                detail = FailureDetail(
                    uid=meta["uid"], index=index, asset=f"a{index}", reason="NotAnImage"
                )
                await records.put_failure("default", meta["name"], detail)

    controller_writes(stack, write)
    seen: list[tuple[str, int]] = []
    cursor = None
    with api_process.client(TENANT_A_TOKEN) as owner:
        for _ in range(10):
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = owner.get(f"/v1/batches/{batch}/failures", params=params)
            assert page.status_code == 200, page.text
            seen += [(item["job"], item["index"]) for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
    names = [part["metadata"]["name"] for part in parts]
    assert seen == [(names[0], 5), (names[0], 1999), (names[1], 0), (names[1], 1)]
    with api_process.client(TENANT_B_TOKEN) as other:
        theirs = other.get(f"/v1/batches/{batch}/failures")
        unknown = other.get("/v1/batches/nothing/failures")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["detail"] == unknown.json()["detail"].replace("nothing", batch)
    with httpx.Client(base_url=api_process.url) as anonymous:
        assert anonymous.get(f"/v1/batches/{batch}/failures").status_code == 401


def test_unknown_batch_is_404(api: httpx.Client) -> None:
    response = api.get("/v1/batches/nothing")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
